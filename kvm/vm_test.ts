import assert from "node:assert/strict";
import { EEXIST, ENOMEM } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { FakeKvm } from "../tests/fake/kvm.ts";
import { Kvm } from "./kvm.ts";
import { KVM_MEM_LOG_DIRTY_PAGES } from "./uapi/constants.ts";
import { DEFAULT_TSS_ADDRESS } from "./vm.ts";

const MiB = 1n << 20n;

function ram(regions: [bigint, bigint][]) {
  // Any host address works for the fake slots until the guest writes.
  return {
    regions: regions.map(([gpa, size], i) => ({
      gpa,
      size,
      hostAddress: 0x7f00_0000_0000n + BigInt(i) * 0x1000_0000n,
    })),
  };
}

Deno.test("Kvm.createVm() sets the TSS address and creates the irqchip", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  assert.equal(vm.irqchip, true);
  assert.equal(fake.vm().tssAddress, DEFAULT_TSS_ADDRESS);
  using bare = kvm.createVm({ irqchip: false });
  assert.equal(bare.irqchip, false);
  assert.equal(fake.vm().irqchip, false);
});

Deno.test("Vm.addMemory() makes one slot per region; the lease removes them", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  {
    using _slots = vm.addMemory(ram([[0n, 2n * MiB], [4n * MiB, MiB]]));
    assert.deepEqual(vm.slots.map((s) => [s.slot, s.gpa, s.size]), [[0, 0n, 2n * MiB], [
      1,
      4n * MiB,
      MiB,
    ]]);
    assert.deepEqual([...fake.vm().slots.keys()], [0, 1]);
  }
  assert.deepEqual(vm.slots, []);
  assert.equal(fake.vm().slots.size, 0);
});

Deno.test("Vm.addMemory() refuses unaligned and overlapping regions before any slot is made", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  assert.throws(() => vm.addMemory(ram([[0x800n, MiB]])), /not 4 KiB-aligned/);
  using _a = vm.addMemory(ram([[0n, 2n * MiB]]));
  assert.throws(() => vm.addMemory(ram([[4n * MiB, MiB], [MiB, MiB]])), /overlaps slot 0/);
  assert.equal(fake.vm().slots.size, 1, "the first region of the refused call was removed again");
});

Deno.test("Vm.addMemory() undoes the slots made when KVM refuses one", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  fake.failNext("KVM_SET_USER_MEMORY_REGION", EEXIST, { times: 1 });
  assert.throws(() => vm.addMemory(ram([[0n, MiB]])), IoctlError);
  using _ok = vm.addMemory(ram([[0n, MiB]]));
  const real = fake.vm().slots;
  assert.equal(real.size, 1);
});

Deno.test("Vm.setDirtyLogging() re-registers every slot with KVM_MEM_LOG_DIRTY_PAGES", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  using _slots = vm.addMemory(ram([[0n, MiB], [2n * MiB, MiB]]));
  vm.setDirtyLogging(true);
  assert.equal(vm.dirtyLogging, true);
  assert.deepEqual([...fake.vm().slots.values()].map((s) => s.flags), [
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_LOG_DIRTY_PAGES,
  ]);
  using _later = vm.addMemory(ram([[8n * MiB, MiB]]));
  assert.equal(
    fake.vm().slots.get(2)?.flags,
    KVM_MEM_LOG_DIRTY_PAGES,
    "a slot added while logging logs",
  );
  vm.setDirtyLogging(false);
  assert.deepEqual([...fake.vm().slots.values()].map((s) => s.flags), [0, 0, 0]);
});

Deno.test("Vm.createVcpu() closes the vCPU fd when mapping kvm_run fails", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  fake.failNext("mmap", ENOMEM);
  assert.throws(
    () => vm.createVcpu(),
    (e: unknown) => e instanceof SyscallError && e.errno === ENOMEM,
  );
  assert.equal(fake.openFds, 2, "only /dev/kvm and the VM stay open");
  assert.equal(vm.vcpus.length, 0);
  const vcpu = vm.createVcpu({ id: 3 });
  assert.equal(vcpu.id, 3);
  assert.equal(vm.createVcpu().id, 4);
});

Deno.test("Vm.getClock() and Vm.setClock() carry kvmclock", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  vm.setClock({ clock: 5_000_000_000n, flags: 0, realtime: 0n, hostTsc: 0n });
  const c = vm.getClock();
  assert.ok(c.clock >= 5_000_000_000n && c.clock < 6_000_000_000n, String(c.clock));
});

Deno.test("Vm.close() closes vCPUs and unmaps; a closed VM refuses use", () => {
  const fake = new FakeKvm();
  const kvm = Kvm.open({ syscalls: fake });
  const vm = kvm.createVm({ dirtyRingBytes: 8192 });
  vm.createVcpu();
  vm.createVcpu();
  assert.equal(fake.liveMappings, 4, "two kvm_run pages and two rings");
  vm.close();
  vm.close();
  kvm.close();
  assert.equal(fake.openFds, 0);
  assert.equal(fake.liveMappings, 0);
  assert.throws(() => vm.createVcpu(), /closed VM/);
});

Deno.test("Vm.vcpus leaves out a vCPU closed on its own; its id is not reused", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  const a = vm.createVcpu();
  vm.createVcpu();
  a.close();
  assert.deepEqual(vm.vcpus.map((v) => v.id), [1]);
  assert.equal(vm.saveState().vcpus.length, 1);
  assert.equal(vm.createVcpu().id, 2);
});
