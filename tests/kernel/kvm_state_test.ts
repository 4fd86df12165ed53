// kernel-profiles: stock-6.1-kvm
// vCPU state saved from one VM and restored into a second VM of this process,
// with the guest's RAM copied over: the guest must go on as if nothing
// happened — its counter continues, its checksum and page sum still match.
import assert from "node:assert/strict";
import { GuestProgram } from "../../kvm/guest/program.ts";
import { decodeVmState, encodeVmState } from "../../kvm/state_codec.ts";
import { Kvm } from "../../kvm/kvm.ts";
import { GuestMemory } from "../../memory/guest_memory.ts";
import { guestAddress } from "../../sys/address.ts";
import { bootGuest } from "./_kvm.ts";

const RAM = 16n << 20n;

Deno.test("Vm.restoreState() into a second VM: the guest goes on where it was", async () => {
  const lines: string[] = [];
  let saved: Uint8Array;
  let counter: bigint;
  using memory2 = GuestMemory.create([{ gpa: guestAddress(0n), size: RAM }]);
  {
    // A paced, heartbeating RUN, paused mid-flight after its second heartbeat.
    const beats = Promise.withResolvers<void>();
    const onLine = (l: string) => {
      lines.push(l);
      if (l.startsWith("heartbeat 2 ")) beats.resolve();
    };
    await using g = await bootGuest({ ramBytes: RAM, seed: 0xabcd, onLine });
    void g.guest.command("run", { pattern: "hotspot", pagesPerSecond: 20_000, heartbeatMs: 5 });
    await beats.promise;
    await g.vm.pause();
    // Paused anywhere, even inside a write: the sums are checked once the
    // guest has finished a command, on the second VM.
    counter = g.guest.mailbox().counter;
    assert.ok(counter > 0n);
    saved = encodeVmState(g.vm.saveState());
    memory2.write(guestAddress(0n), g.memory.read(guestAddress(0n), Number(RAM)));
  } // the first VM and its RAM are gone
  using kvm = Kvm.open();
  using vm2 = kvm.createVm();
  using _slots = vm2.addMemory(memory2);
  using vcpu2 = vm2.createVcpu();
  const state = decodeVmState(saved);
  assert.ok(state.vcpus[0].msrs.length > 0 && state.vcpus[0].lapic !== undefined);
  vm2.restoreState(state);
  const after: string[] = [];
  const guest2 = GuestProgram.attach(vm2, vcpu2, memory2, { onLine: (l) => after.push(l) });
  assert.equal(guest2.mailbox().counter, counter);
  await vcpu2.start();
  // The RUN command restored with the guest goes on; stop it with a bounded one.
  assert.equal(
    await guest2.command("run", { pattern: "sequential", maxWrites: 300, heartbeatMs: 0 }),
    undefined,
  );
  const mb2 = guest2.mailbox();
  assert.ok(mb2.counter >= counter + 300n, `counter ${mb2.counter} continues from ${counter}`);
  assert.equal(mb2.boots, 1n, "the guest did not boot again");
  assert.equal(mb2.checksum, guest2.expectedChecksum(mb2.counter), "its running checksum matches");
  assert.equal(await guest2.command("verify"), undefined);
  assert.equal(
    guest2.mailbox().verifySum,
    guest2.mailbox().pageSum,
    "its own page sum matches its pages",
  );
  assert.equal(guest2.dataPageSum(), guest2.mailbox().pageSum);
  const resumedBeats = after.filter((l) => l.startsWith("heartbeat "));
  if (resumedBeats.length > 0) {
    const first = Number(/counter=(\d+)/.exec(resumedBeats[0])![1]);
    assert.ok(BigInt(first) >= counter, `the heartbeat continues: ${resumedBeats[0]}`);
  }
  console.log(
    `counter ${counter} on the first VM, ${mb2.counter} on the second; ${lines.length} + ${after.length} serial lines`,
  );
  guest2.close();
  await vcpu2.stop();
});
