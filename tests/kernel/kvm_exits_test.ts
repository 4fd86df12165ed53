// kernel-profiles: stock-6.1-kvm
// The test guest on the real kernel's KVM: boot in 64-bit mode, port I/O in
// both directions, MMIO, HLT, a triple fault, an instruction fetch from MMIO,
// and the done port (run by `deno task test:kernel`, and on a host with
// /dev/kvm by `deno task test`).
import assert from "node:assert/strict";
import { KVM_INTERNAL_ERROR_EMULATION } from "../../kvm/uapi/constants.ts";
import { GUEST_LAYOUT, GUEST_PORTS } from "../../kvm/guest/layout.ts";
import { bootGuest, command, within } from "./_kvm.ts";

Deno.test("Vcpu.start() boots the test guest in 64-bit mode; it prints on COM1", async () => {
  const lines: string[] = [];
  await using g = await bootGuest({ seed: 42, onLine: (l) => lines.push(l) });
  const mb = g.guest.mailbox();
  assert.equal(mb.booted, true);
  assert.equal(mb.boots, 1n);
  assert.deepEqual(lines, ["deno-vmm guest: up, seed 42"]);
  const sregs = (await g.vcpu.pause(), g.vcpu.getSregs());
  assert.equal(sregs.efer & 0x400n, 0x400n, "EFER.LMA: the guest runs in long mode");
  assert.equal(sregs.cs.l, 1);
});

Deno.test("Vcpu exits: port I/O out and in reach the PIO bus, with the value the handler gives", async () => {
  await using g = await bootGuest();
  const seen: number[] = [];
  using _port = g.vm.pio.register({ base: GUEST_PORTS.test, length: 1 }, {
    write: (_port, size, value) => void seen.push(size, value),
    read: (_port, size) => size === 4 ? (seen.at(-1)! ^ 0xffffffff) >>> 0 : 0,
  });
  assert.equal(await command(g, "pio", { arg: 0x1234abcd }), undefined);
  assert.deepEqual(seen, [4, 0x1234abcd]);
  assert.equal(g.guest.mailbox().result, BigInt((0x1234abcd ^ 0xffffffff) >>> 0));
  assert.ok((g.vcpu.exitCounts.io ?? 0) >= 3, JSON.stringify(g.vcpu.exitCounts));
});

Deno.test("Vcpu exits: MMIO outside memory reaches the MMIO bus, reads return the handler's value", async () => {
  await using g = await bootGuest();
  const writes: [bigint, number, bigint][] = [];
  using _mmio = g.vm.mmio.register({ base: GUEST_LAYOUT.mmio, length: 0x1000n }, {
    write: (gpa, size, value) => void writes.push([gpa, size, value]),
    read: (_gpa, size) => size === 4 ? 0xcafef00dn : 0n,
  });
  assert.equal(await command(g, "mmio", { arg: 0x55aa55aa }), undefined);
  assert.deepEqual(writes, [[GUEST_LAYOUT.mmio, 4, 0x55aa55aan]]);
  assert.equal(g.guest.mailbox().result, 0xcafef00dn);
  assert.equal(g.vcpu.exitCounts.mmio, 2);
});

Deno.test("Vcpu exits: HLT without an in-kernel irqchip exits and pauses; resume goes on", async () => {
  await using g = await bootGuest({ vm: { irqchip: false } });
  assert.equal(g.vm.irqchip, false);
  const ack = g.guest.command("halt");
  // HLT pauses the vCPU by default; wait for that without sleeping: the
  // listener sees the exit first.
  const halted = Promise.withResolvers<void>();
  g.vcpu.onExit = (exit) => {
    if (exit.kind === "hlt") halted.resolve();
  };
  await within("the HLT exit", halted.promise);
  await within("pausing after HLT", g.vcpu.pause());
  assert.equal(g.vcpu.state, "paused");
  assert.equal(g.vcpu.lastExit?.kind, "hlt");
  g.vcpu.resume();
  assert.equal(
    await within("the acknowledgement after HLT", ack),
    undefined,
    "the guest acknowledged after HLT returned",
  );
  assert.equal(g.vcpu.exitCounts.hlt, 1);
});

Deno.test("Vcpu exits: a triple fault stops the vCPU with KVM_EXIT_SHUTDOWN", async () => {
  await using g = await bootGuest();
  const stop = await command(g, "tripleFault");
  assert.ok(stop?.error, "the command ended with the vCPU stopped");
  assert.equal(stop.error.exit?.kind, "shutdown");
  assert.match(stop.error.message, /vCPU 0 stopped on KVM_EXIT_SHUTDOWN/);
  assert.equal(g.vcpu.state, "stopped");
});

Deno.test("Vcpu exits: executing from MMIO stops the vCPU with KVM_EXIT_INTERNAL_ERROR", async () => {
  await using g = await bootGuest();
  const stop = await command(g, "execMmio");
  const exit = stop?.error?.exit;
  assert.ok(exit, `the vCPU stopped on an exit: ${stop?.error?.message}`);
  if (exit.kind === "internal-error") {
    assert.equal(exit.suberror, KVM_INTERNAL_ERROR_EMULATION);
  } else {
    // Some KVMs hand the fetch to the VMM as an MMIO read instead; then the
    // guest runs the all-ones the bus returned and faults: a triple fault.
    assert.equal(exit.kind, "shutdown", JSON.stringify(exit));
  }
});

Deno.test("GuestProgram.done resolves with the status the guest writes to the done port", async () => {
  await using g = await bootGuest();
  const stop = await command(g, "exit", { arg: 7 });
  assert.deepEqual(stop, {});
  assert.equal(await within("GuestProgram.done", g.guest.done), 7);
  assert.equal(g.vcpu.state, "stopped");
});
