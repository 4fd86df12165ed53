import assert from "node:assert/strict";
import { EFAULT } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import { FakeKvm } from "../tests/fake/kvm.ts";
import { VcpuError } from "./errors.ts";
import { Kvm } from "./kvm.ts";
import { KVM_INTERNAL_ERROR_EMULATION, KVM_SYSTEM_EVENT_RESET } from "./uapi/constants.ts";

function world(options: ConstructorParameters<typeof FakeKvm>[0] = {}) {
  const fake = new FakeKvm(options);
  const kvm = Kvm.open({ syscalls: fake });
  const vm = kvm.createVm();
  const vcpu = vm.createVcpu();
  return {
    fake,
    kvm,
    vm,
    vcpu,
    [Symbol.dispose]() {
      vm.close();
      kvm.close();
      assert.equal(fake.openFds, 0, "every fake fd closed");
      assert.equal(fake.liveMappings, 0, "every mapping unmapped");
    },
  };
}

Deno.test("Vm.createVcpu() maps kvm_run, sets CPUID and the signal mask", () => {
  using w = world();
  const v = w.fake.vcpu(0);
  assert.equal(v.run?.bytes, 3 * 4096);
  assert.equal(v.cpuid.length, 2);
  assert.equal(v.sigmaskSet, true);
  assert.equal(w.vcpu.state, "created");
  assert.equal(w.vcpu.thread, "inline");
});

Deno.test("Vcpu port I/O: OUT reaches the handler, IN returns its value to the guest", async () => {
  using w = world();
  const seen: [number, number, number][] = [];
  using _port = w.vm.pio.register({ base: 0x500, length: 4 }, {
    write: (port, size, value) => void seen.push([port, size, value]),
    read: (port, size) => (port << 8) | size,
  });
  using _stop = w.vm.pio.register({ base: 0x600, length: 1 }, { write: () => "stop" });
  w.fake.vcpu(0).script = [
    { out: 0x501, value: 0xbeef, size: 2 },
    { in: 0x503, size: 4 },
    { out: 0x500, value: 7 },
    { out: 0x600, value: 0 },
  ];
  await w.vcpu.start();
  const stop = await w.vcpu.stopped;
  assert.deepEqual(stop, {});
  assert.deepEqual(seen, [[0x501, 2, 0xbeef], [0x500, 1, 7]]);
  const rax = new DataView(w.fake.vcpu(0).regs.buffer).getBigUint64(0, true);
  assert.equal(rax, BigInt((0x503 << 8) | 4), "the IN value completed on the next KVM_RUN");
  assert.equal(w.vcpu.exitCounts.io, 4);
});

Deno.test("Vcpu port I/O: a port nobody handles reads all-ones and is counted", async () => {
  using w = world();
  using _stop = w.vm.pio.register({ base: 0x600, length: 1 }, { write: () => "stop" });
  w.fake.vcpu(0).script = [{ in: 0x80, size: 2 }, { out: 0x81, value: 1 }, {
    out: 0x600,
    value: 0,
  }];
  await w.vcpu.start();
  await w.vcpu.stopped;
  assert.equal(new DataView(w.fake.vcpu(0).regs.buffer).getBigUint64(0, true), 0xffffn);
  assert.deepEqual([...w.vm.pio.counts], [[0x80, 1], [0x81, 1]]);
});

Deno.test("Vcpu MMIO: writes reach the handler masked to their size, reads complete into the guest", async () => {
  using w = world();
  const writes: [bigint, number, bigint][] = [];
  using _dev = w.vm.mmio.register({ base: 0xd000_0000n, length: 0x1000n }, {
    write: (gpa, size, value) => {
      writes.push([gpa, size, value]);
      return value === 2n ? "stop" : undefined;
    },
    read: () => 0x1_2345_6789n,
  });
  w.fake.vcpu(0).script = [
    { mmioWrite: 0xd000_0010n, value: 0x1ffn, size: 1 },
    { mmioRead: 0xd000_0020n, size: 4 },
    { write: 0xd000_0030n, value: 2n, size: 8 }, // no memory slot: MMIO
  ];
  await w.vcpu.start();
  await w.vcpu.stopped;
  assert.deepEqual(writes, [[0xd000_0010n, 1, 0xffn], [0xd000_0030n, 8, 2n]]);
  assert.equal(new DataView(w.fake.vcpu(0).regs.buffer).getBigUint64(0, true), 0x23456789n);
});

Deno.test("Vcpu.pause() stops a guest that never exits; resume() lets it go on", async () => {
  using w = world();
  const ran = Promise.withResolvers<void>();
  using _port = w.vm.pio.register({ base: 0x600, length: 1 }, { write: () => ran.resolve() });
  w.fake.vcpu(0).script = []; // spins: every KVM_RUN ends its time slice with EINTR
  await w.vcpu.start();
  await w.vcpu.pause();
  assert.equal(w.vcpu.state, "paused");
  assert.ok(w.vcpu.runCounts.interrupted >= 1);
  assert.deepEqual(w.vcpu.getRegs().rflags, 2n, "registers can be read while paused");
  w.fake.vcpu(0).script.push({ out: 0x600, value: 1 });
  w.vcpu.resume();
  assert.equal(w.vcpu.state, "running");
  assert.throws(() => w.vcpu.getRegs(), /while it runs: pause it first/);
  await ran.promise;
  await w.vcpu.pause();
  assert.equal(w.vcpu.state, "paused");
  const stop = await w.vcpu.stop();
  assert.deepEqual(stop, {});
  assert.equal(w.vcpu.state, "stopped");
});

Deno.test("Vcpu.pause() completes an IN in flight before parking", async () => {
  using w = world();
  let paused: Promise<void> | undefined;
  using _port = w.vm.pio.register({ base: 0x70, length: 1 }, {
    read: () => {
      paused = w.vcpu.pause();
      return 0x42;
    },
  });
  w.fake.vcpu(0).script = [{ in: 0x70, size: 1 }, { spin: true }];
  await w.vcpu.start();
  while (paused === undefined) await new Promise((r) => setTimeout(r, 0));
  await paused;
  assert.equal(w.vcpu.getRegs().rax, 0x42n, "the IN completed (immediate_exit) before the pause");
  assert.equal(w.fake.vcpu(0).pc, 1, "and no further guest step ran");
});

Deno.test("Vcpu HLT pauses by default; an exit listener can resume instead", async () => {
  using w = world();
  w.fake.vcpu(0).script = [{ hlt: true }];
  const hlt = Promise.withResolvers<void>();
  w.vcpu.onExit = (exit) => {
    if (exit.kind === "hlt") hlt.resolve();
  };
  await w.vcpu.start();
  await hlt.promise;
  await w.vcpu.pause();
  assert.equal(w.vcpu.state, "paused");
  assert.equal(w.vcpu.lastExit?.kind, "hlt");

  w.fake.vcpu(0).script.push({ hlt: true }, { out: 0x600, value: 0 });
  using _stop = w.vm.pio.register({ base: 0x600, length: 1 }, { write: () => "stop" });
  w.vcpu.onExit = (exit) => exit.kind === "hlt" ? "resume" : undefined;
  w.vcpu.resume();
  assert.deepEqual(await w.vcpu.stopped, {});
  assert.equal(w.vcpu.exitCounts.hlt, 2, "the second HLT resumed at once");
});

for (
  const [name, step, kind, pattern] of [
    ["a triple fault", { shutdown: true }, "shutdown", /KVM_EXIT_SHUTDOWN/],
    [
      "a failed entry",
      { failEntry: 0xffff_ffff_ffff_ffffn },
      "fail-entry",
      /KVM_EXIT_FAIL_ENTRY: hardware_entry_failure_reason 0xffffffffffffffff/,
    ],
    [
      "an internal error",
      { internalError: KVM_INTERNAL_ERROR_EMULATION },
      "internal-error",
      /KVM_EXIT_INTERNAL_ERROR: suberror 1/,
    ],
    ["a system event", { systemEvent: KVM_SYSTEM_EVENT_RESET }, "system-event", /type 2/],
  ] as const
) {
  Deno.test(`Vcpu stops on ${name} with a VcpuError naming the exit`, async () => {
    using w = world();
    w.fake.vcpu(0).script = [step];
    await w.vcpu.start();
    const stop = await w.vcpu.stopped;
    assert.ok(stop.error instanceof VcpuError);
    assert.equal(stop.error.exit?.kind, kind);
    assert.match(stop.error.message, pattern);
    assert.equal(w.vcpu.state, "stopped");
  });
}

Deno.test("Vcpu: a KVM_RUN failure other than EINTR ends the thread with the IoctlError as cause", async () => {
  using w = world();
  w.fake.failNext("KVM_RUN", EFAULT);
  await w.vcpu.start();
  const stop = await w.vcpu.stopped;
  assert.ok(stop.error instanceof VcpuError);
  assert.ok(stop.error.cause instanceof IoctlError);
  assert.equal((stop.error.cause as IoctlError).ioctl, "KVM_RUN");
  assert.equal((stop.error.cause as IoctlError).errno, EFAULT);
});

Deno.test("Vcpu: a throwing handler stops the vCPU with the error, not the process", async () => {
  using w = world();
  using _port = w.vm.pio.register({ base: 0x90, length: 1 }, {
    write: () => {
      throw new RangeError("device broke");
    },
  });
  w.fake.vcpu(0).script = [{ out: 0x90, value: 1 }];
  await w.vcpu.start();
  const stop = await w.vcpu.stopped;
  assert.match(stop.error?.message ?? "", /exit handler failed: device broke/);
});

Deno.test("Vcpu.start() twice is refused; close() is idempotent and stops the thread", async () => {
  const fake = new FakeKvm();
  {
    using kvm = Kvm.open({ syscalls: fake });
    using vm = kvm.createVm();
    const vcpu = vm.createVcpu();
    fake.vcpu(0).script = [{ spin: true }];
    await vcpu.start();
    await assert.rejects(vcpu.start(), /Cannot start vCPU 0: it is running/);
    vcpu.close();
    vcpu.close();
    assert.equal(vcpu.state, "stopped");
    assert.equal(vcpu.unsafeFd, -1);
    assert.deepEqual(await vcpu.stopped, {});
  }
  assert.equal(fake.openFds, 0);
  assert.equal(fake.liveMappings, 0);
});

Deno.test("Vcpu.pause() and stop() of a vCPU never started resolve at once", async () => {
  using w = world();
  await w.vcpu.pause();
  assert.equal(w.vcpu.state, "created");
  assert.deepEqual(await w.vcpu.stop(), {});
  assert.equal(w.vcpu.state, "stopped");
});

Deno.test("Vm.pause() waits for every vCPU; Vm.resume() and Vm.stop() reach them all", async () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  const a = vm.createVcpu();
  const b = vm.createVcpu();
  assert.deepEqual([a.id, b.id], [0, 1]);
  fake.vcpu(0).script = [{ spin: true }];
  fake.vcpu(1).script = [{ spin: true }];
  await vm.start();
  await vm.pause();
  assert.deepEqual([a.state, b.state], ["paused", "paused"]);
  vm.resume();
  assert.deepEqual([a.state, b.state], ["running", "running"]);
  assert.deepEqual(await vm.stop(), [{}, {}]);
});
