// The container API against the real type1 kernel (run by `deno task test:kernel`).
import assert from "node:assert/strict";
import { hostAddress, iova } from "../../sys/address.ts";
import { EBUSY, EEXIST, EINVAL } from "../../sys/errno.ts";
import { IoctlError, ResourceBusyError } from "../../sys/errors.ts";
import { defaultSyscalls } from "../../sys/libc.ts";
import { VfioContainer } from "../../vfio/container.ts";
import {
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_TYPE1v2_IOMMU,
} from "../../vfio/constants.ts";
import { RecordingSyscalls } from "../recording_syscalls.ts";
import { anonMemory } from "../anon_memory.ts";
import { groupAndDevice } from "./_group.ts";

function isErrno(errno: number) {
  return (e: unknown) => e instanceof IoctlError && e.errno === errno;
}

Deno.test("VfioContainer.info() reads the real cap chain", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  assert.equal(container.apiVersion(), 0);
  assert.equal(container.checkExtension(VFIO_TYPE1v2_IOMMU), true);
  using _g = container.attachGroup(group);
  assert.equal(container.iommuType, VFIO_TYPE1v2_IOMMU);
  const info = container.info();
  assert.equal(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
  assert.equal(info.iovaPgsizes, 0x40201000n);
  assert.deepEqual(info.migration, {
    flags: 0,
    pgsizeBitmap: 0x1000n,
    maxDirtyBitmapSize: 0x10000000n,
  });
  assert.deepEqual(info.iovaRanges, [
    { start: 0n, end: 0xfedfffffn },
    { start: 0xfef00000n, end: 0x7fffffffffn },
  ]);
  assert.equal(info.dmaAvail, 65535);
  assert.deepEqual(info.unknownCaps, []);
});

Deno.test("VfioContainer.info() re-queries with the argsz the kernel asks for", () => {
  const { group } = groupAndDevice();
  const sys = new RecordingSyscalls(defaultSyscalls());
  using container = VfioContainer.open({ syscalls: sys });
  using _g = container.attachGroup(group);
  container.info();
  const calls = sys.ioctls("VFIO_IOMMU_GET_INFO");
  assert.equal(calls.length, 2);
  const first = new DataView(calls[0].arg!.buffer);
  assert.equal(first.getUint32(0, true), 116, "the kernel asks for 116 bytes");
  assert.equal(first.getUint32(16, true), 0, "and copies no caps at 24");
  const second = new DataView(calls[1].arg!.buffer);
  assert.equal(second.getUint32(16, true), 24, "cap_offset once the caps fit");
});

Deno.test("VfioContainer.info() sees DMA_AVAIL fall by one per mapping", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(0x4000n);
  const before = container.info().dmaAvail!;
  using _a = container.mapDma(iova(0x100000n), { vaddr: mem.vaddr, size: 0x1000n });
  assert.equal(container.info().dmaAvail, before - 1);
  using _b = container.mapDma(iova(0x200000n), {
    vaddr: hostAddress(mem.vaddr + 0x1000n),
    size: 0x1000n,
  });
  assert.equal(container.info().dmaAvail, before - 2);
  _b.unmap();
  assert.equal(container.info().dmaAvail, before - 1);
});

Deno.test("VfioContainer.setIommu() and info() before a group: the kernel's EINVAL", () => {
  using container = VfioContainer.open();
  assert.throws(() => container.info(), isErrno(EINVAL));
  assert.throws(() => container.setIommu(VFIO_TYPE1v2_IOMMU), isErrno(EINVAL));
});

Deno.test("VfioContainer.setIommu() a second time: the kernel's EINVAL", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  assert.throws(() => container.setIommu(VFIO_TYPE1v2_IOMMU), isErrno(EINVAL));
});

Deno.test("VfioContainer.mapDma() refuses misalignment and the MSI hole before the ioctl", () => {
  const { group } = groupAndDevice();
  const sys = new RecordingSyscalls(defaultSyscalls());
  using container = VfioContainer.open({ syscalls: sys });
  using _g = container.attachGroup(group);
  using mem = anonMemory(0x3000n);
  const cases: [bigint, bigint, bigint, RegExp][] = [
    [0x100800n, mem.vaddr, 0x1000n, /iova 0x100800: not aligned/],
    [0x100000n, mem.vaddr, 0x800n, /size 0x800 is not a multiple/],
    [0x100000n, mem.vaddr + 0x10n, 0x1000n, /vaddr .* is not aligned/],
    [0xfee00000n, mem.vaddr, 0x1000n, /iova 0xfee00000: .* outside the IOVA ranges/],
    [0x8000000000n, mem.vaddr, 0x1000n, /iova 0x8000000000: .* outside the IOVA ranges/],
    [0xfedff000n, mem.vaddr, 0x2000n, /outside the IOVA ranges/],
  ];
  for (const [at, vaddr, size, message] of cases) {
    assert.throws(
      () => container.mapDma(iova(at), { vaddr: hostAddress(vaddr), size }),
      (e: unknown) => e instanceof RangeError && message.test(e.message),
    );
  }
  assert.equal(sys.ioctls("VFIO_IOMMU_MAP_DMA").length, 0, "no MAP_DMA reached the kernel");
});

Deno.test("VfioContainer.mapDma() over a mapping: the kernel's EEXIST", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(0x4000n);
  using _m = container.mapDma(iova(0x100000n), { vaddr: mem.vaddr, size: 0x2000n });
  assert.throws(
    () =>
      container.mapDma(iova(0x101000n), { vaddr: hostAddress(mem.vaddr + 0x2000n), size: 0x2000n }),
    (e: unknown) =>
      isErrno(EEXIST)(e) && /VFIO_IOMMU_MAP_DMA failed: EEXIST \(17\)/.test(String(e)),
  );
  assert.equal(container.mappings.length, 1);
});

Deno.test("VfioGroup.close() with a device open refuses (the kernel's EBUSY underneath); using order is clean", () => {
  const { group, device } = groupAndDevice();
  const container = VfioContainer.open();
  const g = container.attachGroup(group);
  const d = g.openDevice(device);
  assert.throws(() => g.unsetContainer(), isErrno(EBUSY));
  assert.throws(
    () => g.close(),
    (e: unknown) => e instanceof ResourceBusyError && e.dependents[0] === `device ${device}`,
  );
  assert.equal(g.closed, false, "the group stays open");
  assert.throws(
    () => container.close(),
    (e: unknown) => e instanceof ResourceBusyError && /group .* is still open/.test(e.message),
  );
  d.close();
  g.close();
  container.close();
  // The same objects with `using` tear down device, group, container in order.
  {
    using c = VfioContainer.open();
    using gg = c.attachGroup(group);
    using _d = gg.openDevice(device);
  }
  // The group is free again: a fresh attach works.
  using c2 = VfioContainer.open();
  using _g2 = c2.attachGroup(group);
});
