import assert from "node:assert/strict";
import { E2BIG, ENOMEM } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import { FakeKvm } from "../tests/fake/kvm.ts";
import { KvmUnavailableError } from "./errors.ts";
import { Kvm } from "./kvm.ts";
import { KVM_CAP_DIRTY_LOG_RING, KVM_CAP_IMMEDIATE_EXIT } from "./uapi/constants.ts";

Deno.test("Kvm.open() checks the API version and reads the vCPU mapping size", () => {
  const fake = new FakeKvm();
  {
    using kvm = Kvm.open({ syscalls: fake });
    assert.equal(kvm.vcpuMmapSize, 3 * 4096);
    assert.equal(kvm.path, "/dev/kvm");
    assert.equal(kvm.inline, true);
    assert.equal(kvm.checkExtension(KVM_CAP_IMMEDIATE_EXIT), 1);
    assert.equal(kvm.checkExtension(KVM_CAP_DIRTY_LOG_RING), 1048576);
    assert.equal(kvm.checkExtension(9999), 0);
  }
  assert.equal(fake.openFds, 0);
  assert.deepEqual(
    fake.calls.filter((c) => c.syscall === "ioctl").slice(0, 2).map((c) => c.name),
    ["KVM_GET_API_VERSION", "KVM_GET_VCPU_MMAP_SIZE"],
  );
});

for (
  const [device, reason, pattern] of [
    [
      "missing",
      "missing",
      /\/dev\/kvm does not exist \(ENOENT\); load the module \(sudo modprobe kvm_amd/,
    ],
    [
      "denied",
      "denied",
      /not permitted for this user \(EACCES\); join its group \(sudo usermod -aG kvm/,
    ],
    ["no-module", "no-module", /has no driver behind it \(ENXIO\)/],
  ] as const
) {
  Deno.test(`Kvm.open() names what to grant when /dev/kvm is ${device}`, () => {
    const fake = new FakeKvm({ device });
    let err: KvmUnavailableError | undefined;
    try {
      Kvm.open({ syscalls: fake });
    } catch (e) {
      if (e instanceof KvmUnavailableError) err = e;
    }
    assert.ok(err, "a KvmUnavailableError");
    assert.equal(err.reason, reason);
    assert.match(err.message, pattern);
    assert.match(err.message, /deno task test:kernel/);
    assert.equal(err.message.includes("\n"), false, "one line");
    assert.equal(fake.openFds, 0);
  });
}

Deno.test("Kvm.open() refuses another API version and closes the fd", () => {
  const fake = new FakeKvm({ apiVersion: 11 });
  assert.throws(() => Kvm.open({ syscalls: fake }), (e: unknown) => {
    assert.ok(e instanceof KvmUnavailableError);
    assert.equal(e.reason, "api-version");
    assert.match(e.message, /speaks API version 11, not 12/);
    return true;
  });
  assert.equal(fake.openFds, 0);
});

Deno.test("Kvm.msrIndexList() grows its buffer on E2BIG and caches the list", () => {
  const msrs = Array.from({ length: 300 }, (_, i) => 0x100 + i);
  const fake = new FakeKvm({ msrIndices: msrs });
  using kvm = Kvm.open({ syscalls: fake });
  assert.deepEqual(kvm.msrIndexList(), msrs);
  assert.deepEqual(kvm.msrIndexList(), msrs);
  const calls = fake.calls.filter((c) => c.name === "KVM_GET_MSR_INDEX_LIST");
  assert.deepEqual(calls.map((c) => c.errno), [E2BIG, undefined]);
});

Deno.test("Kvm.supportedCpuid() returns KVM_GET_SUPPORTED_CPUID's entries", () => {
  using kvm = Kvm.open({ syscalls: new FakeKvm() });
  const cpuid = kvm.supportedCpuid();
  assert.equal(cpuid.length, 2);
  assert.equal(cpuid[0].ebx, 0x68747541); // "Auth"
});

Deno.test("Kvm.createVm() failing leaves no fd; Kvm.close() is idempotent; a VM outlives its Kvm", () => {
  const fake = new FakeKvm().failNext("KVM_CREATE_IRQCHIP", ENOMEM);
  const kvm = Kvm.open({ syscalls: fake });
  assert.throws(() => kvm.createVm(), (e: unknown) => {
    assert.ok(e instanceof IoctlError);
    assert.equal(e.ioctl, "KVM_CREATE_IRQCHIP");
    assert.equal(e.errno, ENOMEM);
    assert.match(e.message, /KVM_CREATE_IRQCHIP failed: ENOMEM/);
    return true;
  });
  assert.equal(fake.openFds, 1);
  const vm = kvm.createVm();
  kvm.close();
  kvm.close();
  assert.equal(kvm.unsafeFd, -1);
  assert.throws(() => kvm.checkExtension(0), /closed Kvm/);
  const vcpu = vm.createVcpu();
  assert.equal(vcpu.id, 0);
  vm.close();
  assert.equal(fake.openFds, 0);
  assert.equal(fake.liveMappings, 0);
});

Deno.test("Kvm.createVm() with a dirty ring that is not a power of two is refused", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  assert.throws(() => kvm.createVm({ dirtyRingBytes: 5000 }), RangeError);
  assert.throws(
    () => kvm.createVm({ dirtyRingBytes: 1 << 21 }),
    /Cannot make a dirty ring of 2097152 bytes: KVM allows 1048576/,
  );
  using vm = kvm.createVm({ dirtyRingBytes: 65536 });
  assert.deepEqual(vm.dirtyRing, { bytes: 65536, acqRel: true });
  assert.equal(fake.openFds, 2);
});
