import assert from "node:assert/strict";
import { FakeKvm } from "../tests/fake/kvm.ts";
import { KvmStateError } from "./errors.ts";
import { Kvm } from "./kvm.ts";
import { decodeVmState, encodeVmState } from "./state_codec.ts";

function fill(bytes: Uint8Array, seed: number): Uint8Array {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

Deno.test("Vm.saveState() then restoreState() carries every piece into another VM's vCPU", async () => {
  const fake = new FakeKvm({ unreadableMsrs: [0x11] });
  using kvm = Kvm.open({ syscalls: fake });
  using a = kvm.createVm();
  const va = a.createVcpu();
  const src = fake.vcpu(0);
  fill(src.regs, 1);
  fill(src.sregs, 2);
  fill(src.xsave, 3);
  fill(src.xcrs, 4);
  fill(src.lapic, 5);
  fill(src.events, 6);
  fill(src.debugregs, 7);
  src.mpState = 3;
  src.tscKhz = 1_999_000;
  src.msrs.set(0x10, 0x1234_5678_9abcn);
  src.script = [];
  await va.start();
  await va.pause();
  const state = a.saveState();
  assert.equal(state.vcpus.length, 1);
  const s = state.vcpus[0];
  assert.equal(s.msrs.length, 39, "the MSR KVM_GET_MSRS cannot read is dropped, the rest kept");
  assert.equal(s.msrs.find((m) => m.index === 0x10)?.data, 0x1234_5678_9abcn);
  assert.equal(s.fpu, undefined, "XSAVE, not FPU, where KVM has XSAVE");
  assert.equal(s.mpState, 3);

  const bytes = encodeVmState(state);
  using b = kvm.createVm();
  b.createVcpu();
  b.restoreState(decodeVmState(bytes));
  const dst = fake.vcpu(0);
  assert.notEqual(dst, src);
  for (const k of ["regs", "sregs", "xsave", "xcrs", "lapic", "events", "debugregs"] as const) {
    assert.deepEqual(dst[k], src[k], k);
  }
  assert.equal(dst.mpState, 3);
  assert.equal(dst.tscKhz, 1_999_000, "KVM_SET_TSC_KHZ where the frequency differs");
  assert.equal(dst.msrs.get(0x10), 0x1234_5678_9abcn);
  assert.deepEqual(dst.cpuid, src.cpuid);
  const clock = b.getClock().clock;
  assert.ok(clock >= state.clock!.clock, "the guest clock does not go back");
  await va.stop();
});

Deno.test("Vm.saveState() refuses while a vCPU runs", async () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  const vcpu = vm.createVcpu();
  fake.vcpu(0).script = [];
  await vcpu.start();
  assert.throws(() => vm.saveState(), /while vCPU 0 runs: pause it first/);
  await vcpu.stop();
});

Deno.test("Vm.restoreState() names an MSR KVM refuses and a vCPU that is missing", () => {
  const fake = new FakeKvm({ unwritableMsrs: [0x12] });
  using kvm = Kvm.open({ syscalls: fake });
  using a = kvm.createVm();
  a.createVcpu();
  const state = a.saveState();
  using b = kvm.createVm();
  assert.throws(() => b.restoreState(state), /Cannot restore vCPU 0: this VM has no such vCPU/);
  b.createVcpu();
  assert.throws(() => b.restoreState(state), (e: unknown) => {
    assert.ok(e instanceof KvmStateError);
    assert.match(e.message, /Cannot restore MSR 0x12 \(= 0x36\): KVM_SET_MSRS set 2 of 40/);
    return true;
  });
});

Deno.test("Vcpu.saveState() without an irqchip has no LAPIC, and restores into such a VM", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using a = kvm.createVm({ irqchip: false });
  const s = a.createVcpu().saveState();
  assert.equal(s.lapic, undefined);
  using b = kvm.createVm({ irqchip: false });
  b.createVcpu().restoreState(s);
});
