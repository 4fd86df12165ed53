// kernel-profiles: stock-6.1-kvm
// Pausing vCPUs on the real kernel while the guest spins without ever exiting:
// immediate_exit plus the kick signal must get KVM_RUN out within a bound. The
// bound is a generous wait that fails with a message, not a timing assertion.
import assert from "node:assert/strict";
import { bootGuest, within as boundedBy } from "./_kvm.ts";

const BOUND_MS = 10_000;

function within<T>(what: string, p: Promise<T>): Promise<T> {
  return boundedBy(what, p, BOUND_MS);
}

/** Resolves once `done()` holds, checking at every timer turn (guest RAM has no event). */
function until(done: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => done() ? resolve() : setTimeout(check, 1);
    check();
  });
}

Deno.test("Vcpu.pause() stops a guest that writes without exiting, and resume() lets it go on", async () => {
  await using g = await bootGuest({ ramBytes: 16n << 20n });
  const exitsBefore = g.vcpu.exitCounts.io ?? 0;
  const kicksBefore = g.vcpu.runCounts.interrupted;
  // RUN without a heartbeat or a write limit: the guest never exits again.
  const run = g.guest.command("run", { pattern: "random", maxWrites: 0 });
  const latencies: number[] = [];
  for (let round = 0; round < 5; round++) {
    const c = g.guest.mailbox().counter;
    await within(
      `guest progress before pause ${round}`,
      until(() => g.guest.mailbox().counter > c),
    );
    const t0 = performance.now();
    await within(`pause ${round} of a spinning guest`, g.vcpu.pause());
    latencies.push(performance.now() - t0);
    assert.equal(g.vcpu.state, "paused");
    g.vcpu.resume();
  }
  assert.equal(
    g.vcpu.exitCounts.io ?? 0,
    exitsBefore,
    "the guest made no exit: each pause was a kick",
  );
  assert.ok(
    g.vcpu.runCounts.interrupted >= kicksBefore + 5,
    "KVM_RUN returned EINTR for each pause",
  );
  console.log(`pause latencies (ms): ${latencies.map((l) => l.toFixed(2)).join(" ")}`);
  // The guest went on: a bounded RUN after all this finishes and is acknowledged.
  const counter = g.guest.mailbox().counter;
  assert.equal(
    await within("a RUN of 200 writes", g.guest.command("run", { maxWrites: 200 })),
    undefined,
  );
  assert.equal(await run, undefined, "the unbounded RUN was superseded, not lost");
  assert.ok(g.guest.mailbox().counter >= counter + 200n);
});

Deno.test("Vm.pause() stops every vCPU, even one that never started running a guest", async () => {
  await using g = await bootGuest();
  void g.guest.command("run", { maxWrites: 0 });
  const idle = g.vm.createVcpu();
  await within("Vm.pause()", g.vm.pause());
  assert.equal(g.vcpu.state, "paused");
  assert.equal(idle.state, "created");
  const state = g.vm.saveState();
  assert.equal(state.vcpus.length, 2);
  g.vm.resume();
  await within("Vm.stop()", g.vm.stop());
});

Deno.test("Vm.close() stops vCPU threads that are running the guest", async () => {
  const g = await bootGuest();
  void g.guest.command("run", { maxWrites: 0 });
  const c = g.guest.mailbox().counter;
  await within("guest progress", until(() => g.guest.mailbox().counter > c));
  g.guest.close();
  g.vm.close(); // synchronous: kicks the thread and waits for it to end
  assert.equal(g.vcpu.state, "stopped");
  assert.equal(g.vcpu.unsafeFd, -1);
  assert.deepEqual(await g.vcpu.stopped, {});
  g.memory.close();
  g.kvm.close();
});
