import assert from "node:assert/strict";
import { KvmStateError } from "../../kvm/errors.ts";
import { Kvm } from "../../kvm/kvm.ts";
import { FakeKvm } from "../../tests/fake/kvm.ts";
import { KVM_STATE_DEVICE_ID, KvmStateDevice } from "./kvm_state_device.ts";

Deno.test("KvmStateDevice.loadState() makes the vCPUs of the saved state and restores them", async () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using a = kvm.createVm();
  a.createVcpu();
  a.createVcpu({ id: 3 });
  for (const id of [0, 3]) fake.vcpu(id).regs.fill(0x40 + id);
  const source = new KvmStateDevice(a);
  assert.equal(source.id, KVM_STATE_DEVICE_ID);
  assert.equal(source.supported, true);
  const bytes = await source.saveState();
  assert.deepEqual(source.vcpuIds, [0, 3]);

  using b = kvm.createVm();
  const destination = new KvmStateDevice(b);
  await destination.loadState(bytes);
  assert.deepEqual(b.vcpus.map((v) => v.id), [0, 3]);
  for (const id of [0, 3]) {
    assert.ok(fake.vcpu(id).regs.every((x) => x === 0x40 + id), `vCPU ${id}`);
  }
  assert.equal(b.vcpus.every((v) => v.state === "created"), true, "restored, not started");
});

Deno.test("KvmStateDevice.saveState() refuses while a vCPU runs; loadState() a damaged state", async () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using a = kvm.createVm();
  const vcpu = a.createVcpu();
  fake.vcpu(0).script = [{ spin: true }];
  await vcpu.start();
  await assert.rejects(new KvmStateDevice(a).saveState(), /while vCPU 0 runs: pause it first/);
  await vcpu.pause();
  const bytes = await new KvmStateDevice(a).saveState();
  bytes[bytes.length - 9] ^= 1;
  using b = kvm.createVm();
  await assert.rejects(new KvmStateDevice(b).loadState(bytes), KvmStateError);
  await vcpu.stop();
});
