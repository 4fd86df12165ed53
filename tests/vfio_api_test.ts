// The public VFIO API against FakeKernel: the type1 rules reached through the
// library, both dirty scopes, query splitting, and teardown.
import assert from "node:assert/strict";
import { hostAddress, iova } from "../sys/address.ts";
import { EACCES, EEXIST, EINVAL, ENODEV, ENOENT, ENOSPC, ENOTTY } from "../sys/errno.ts";
import { IoctlError, ResourceBusyError, SyscallError } from "../sys/errors.ts";
import { VfioContainer } from "../vfio/container.ts";
import { VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU } from "../vfio/constants.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../vfio/errors.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { anonMemory } from "./anon_memory.ts";
import { RecordingSyscalls } from "./recording_syscalls.ts";

const MiB = 0x100000n;
const errno = (n: number) => (e: unknown) => e instanceof IoctlError && e.errno === n;

function assertClean(kernel: FakeKernel): void {
  assert.equal(kernel.openFds, 0, `open fds: ${kernel.openFdDescriptions().join(", ")}`);
  assert.equal(kernel.liveMappings, 0, "live mmaps");
  assert.equal(kernel.dmaMappings, 0, "DMA mappings");
}

Deno.test("VfioContainer.open() names the path and errno for ENOENT and EACCES", () => {
  const kernel = new FakeKernel({ deniedPaths: ["/dev/vfio/26"] });
  assert.throws(
    () => VfioContainer.open({ syscalls: kernel, path: "/dev/vfio/nope" }),
    (e: unknown) => e instanceof SyscallError && e.errno === ENOENT && e.path === "/dev/vfio/nope",
  );
  using c = VfioContainer.open({ syscalls: kernel });
  assert.throws(
    () => c.attachGroup(26),
    (e: unknown) =>
      e instanceof SyscallError && e.errno === EACCES &&
      /open \/dev\/vfio\/26 failed: EACCES \(13\)/.test(e.message),
  );
  assert.throws(
    () => c.attachGroup(27),
    (e: unknown) => e instanceof SyscallError && e.errno === ENOENT,
  );
  c.close();
  assertClean(kernel);
});

Deno.test("VfioContainer.attachGroup() sets type1v2 and reads info with caps", () => {
  const kernel = new FakeKernel();
  const sys = new RecordingSyscalls(kernel);
  using c = VfioContainer.open({ syscalls: sys });
  assert.deepEqual(c.extensions(), {
    VFIO_TYPE1_IOMMU: true,
    VFIO_TYPE1v2_IOMMU: true,
    VFIO_DMA_CC_IOMMU: false, // type1 answers 0 before an IOMMU is set
    VFIO_NOIOMMU_IOMMU: false,
    VFIO_UNMAP_ALL: true,
    VFIO_UPDATE_VADDR: false,
  });
  {
    using g = c.attachGroup(26);
    assert.deepEqual(g.status(), { flags: 3, viable: true, containerSet: true });
    assert.equal(c.iommuType, VFIO_TYPE1v2_IOMMU);
    const info = c.info();
    assert.equal(info.migration?.pgsizeBitmap, 0x1000n);
    assert.equal(info.dmaAvail, 65535);
    assert.equal(info.iovaRanges.length, 2);
    assert.equal(sys.ioctls("VFIO_IOMMU_GET_INFO").length, 2, "asked again with argsz 116");
  }
  assert.equal(c.iommuType, undefined, "the last group took the IOMMU with it");
});

Deno.test("VfioContainer rules: SET_IOMMU and GET_INFO before a group, twice, v1", () => {
  const kernel = new FakeKernel();
  using c = VfioContainer.open({ syscalls: kernel });
  assert.throws(() => c.setIommu(VFIO_TYPE1v2_IOMMU), errno(EINVAL));
  assert.throws(() => c.info(), errno(EINVAL));
  using g = c.attachGroup(26);
  assert.throws(() => c.setIommu(VFIO_TYPE1v2_IOMMU), errno(EINVAL));
  g.close();
  using g1 = c.attachGroup(26, { iommu: false });
  assert.throws(() => c.info(), errno(EINVAL), "no IOMMU set yet");
  assert.equal(c.setIommu(), VFIO_TYPE1v2_IOMMU);
  g1.close();
  assert.throws(() => c.setIommu(), errno(EINVAL), "no group left");
});

Deno.test("VfioContainer.mapDma() checks alignment and ranges before the kernel", () => {
  const kernel = new FakeKernel();
  const sys = new RecordingSyscalls(kernel);
  using mem = anonMemory(4n * MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: sys });
    using _g = c.attachGroup(26);
    for (
      const [at, size, re] of [
        [0x1800n, 0x1000n, /iova 0x1800: not aligned to the IOMMU page size 0x1000/],
        [0x1000n, 0x1800n, /size 0x1800 is not a multiple of 0x1000/],
        [0x1000n, 0n, /size is 0/],
        [0xfee00000n, 0x1000n, /outside the IOVA ranges/],
        [0xfedff000n, 0x2000n, /outside the IOVA ranges/],
        [0x8000000000n, 0x1000n, /outside the IOVA ranges/],
      ] as const
    ) {
      assert.throws(
        () => c.mapDma(iova(at), { vaddr: mem.vaddr, size }),
        (e: unknown) => e instanceof RangeError && re.test(e.message),
      );
    }
    assert.throws(
      () => c.mapDma(iova(0x1000n), { vaddr: hostAddress(mem.vaddr + 8n), size: 0x1000n }),
      /vaddr .* is not aligned/,
    );
    assert.equal(sys.ioctls("VFIO_IOMMU_MAP_DMA").length, 0);
    using m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: 2n * MiB });
    assert.throws(
      () => c.mapDma(iova(2n * MiB), { vaddr: mem.vaddr, size: MiB }),
      (e: unknown) =>
        errno(EEXIST)(e) && String(e) === "IoctlError: VFIO_IOMMU_MAP_DMA failed: EEXIST (17)",
    );
    assert.equal(c.info().dmaAvail, 65534);
    // Unmapping half of a mapping bisects it: the kernel's EINVAL (v2).
    assert.throws(() => c.unmapDma(iova(MiB), MiB), errno(EINVAL));
    assert.equal(m.mapped, true);
    assert.equal(c.unmapDma(iova(0n), 8n * MiB).unmapped, 2n * MiB);
    assert.equal(m.mapped, false, "the lease knows it was unmapped");
    m.unmap(); // idempotent
  }
  mem[Symbol.dispose]();
  assertClean(kernel);
});

Deno.test("VfioContainer.mapDma() runs out of DMA entries with ENOSPC", () => {
  const kernel = new FakeKernel({ dmaEntryLimit: 2 });
  using mem = anonMemory(3n * 0x1000n, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using _a = c.mapDma(iova(0x1000n), { vaddr: mem.vaddr, size: 0x1000n });
    using _b = c.mapDma(iova(0x2000n), { vaddr: hostAddress(mem.vaddr + 0x1000n), size: 0x1000n });
    assert.equal(c.info().dmaAvail, 0);
    assert.throws(
      () => c.mapDma(iova(0x3000n), { vaddr: hostAddress(mem.vaddr + 0x2000n), size: 0x1000n }),
      errno(ENOSPC),
    );
  }
  mem[Symbol.dispose]();
  assertClean(kernel);
});

Deno.test("VfioGroup: not viable, unknown device, teardown out of order refused", () => {
  const kernel = new FakeKernel({ groups: [{ id: 26 }, { id: 27, viable: false }] });
  const c = VfioContainer.open({ syscalls: kernel });
  assert.throws(
    () => c.attachGroup(27),
    (e: unknown) => e instanceof VfioStateError && /not viable/.test(e.message),
  );
  const g = c.attachGroup(26);
  assert.throws(() => g.openDevice("0000:00:09.0"), errno(ENODEV));
  const d = g.openDevice("0000:00:03.0");
  kernel.clearCalls();
  assert.throws(() => g.close(), (e: unknown) =>
    e instanceof ResourceBusyError &&
    e.message ===
      "Cannot close group /dev/vfio/26: device 0000:00:03.0 is still open (close its devices first)");
  assert.deepEqual(kernel.calls, [], "refused before any ioctl");
  assert.equal(g.closed, false);
  assert.throws(
    () => c.close(),
    (e: unknown) =>
      e instanceof ResourceBusyError && e.dependents[0] === "group /dev/vfio/26" &&
      /^Cannot close container \/dev\/vfio\/vfio: group \/dev\/vfio\/26 is still open \(close its devices, then its groups, then the container\)$/
        .test(e.message),
  );
  d.close();
  d.close();
  g.close();
  g.close();
  c.close();
  c.close();
  assertClean(kernel);
});

Deno.test("VfioDevice: info, regions, BAR0 mmap, config space, reset", () => {
  const kernel = new FakeKernel();
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using g = c.attachGroup(26);
    using d = g.openDevice("0000:00:03.0");
    assert.equal(d.info().numRegions, 9);
    assert.equal(d.regionInfo(0).size, MiB);
    assert.throws(() => d.regionInfo(9), errno(EINVAL));
    assert.equal(d.readConfig(0, 2), 0x1234);
    assert.equal(d.readConfig(2, 2), 0x11e8);
    d.writeConfig(4, 2, 0x6);
    assert.equal(d.readConfig(4, 2) & 0x6, 0x6);
    d.reset();
    assert.equal(d.readConfig(4, 2) & 0x6, 0);
    using bar = d.mmapRegion(0);
    assert.equal(bar.readU32(0), 0x010000ed);
    assert.throws(
      () => d.readRegion(0, MiB - 2n, new Uint8Array(4)),
      /the region is 0x100000 bytes/,
    );
    assert.throws(() => d.mmapRegion(7), /does not support mmap/);
  }
  assertClean(kernel);
});

Deno.test("DirtyPageTracker: unavailable without the migration cap, or with ENOTTY, or v1", () => {
  for (const options of [{ migrationCap: null }, { iommufdCompat: true }] as const) {
    const kernel = new FakeKernel(options);
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    assert.throws(
      () => c.dirtyTracker(),
      (e: unknown) =>
        e instanceof DirtyTrackingUnavailableError && /no migration capability/.test(e.message),
    );
  }
  // A kernel that has the cap but answers ENOTTY to DIRTY_PAGES.
  const kernel = new FakeKernel();
  using c = VfioContainer.open({ syscalls: kernel });
  using _g = c.attachGroup(26);
  kernel.failNext("VFIO_IOMMU_DIRTY_PAGES", ENOTTY);
  assert.throws(
    () => c.dirtyTracker().start(),
    (e: unknown) =>
      e instanceof DirtyTrackingUnavailableError && /ENOTTY/.test(e.message) &&
      e.cause instanceof IoctlError,
  );
  // type1 v1 answers EACCES.
  const k1 = new FakeKernel();
  using c1 = VfioContainer.open({ syscalls: k1 });
  using _g1 = c1.attachGroup(26, { iommu: VFIO_TYPE1_IOMMU });
  assert.throws(
    () => c1.dirtyTracker().start(),
    (e: unknown) => e instanceof DirtyTrackingUnavailableError && /type1 v1/.test(e.message),
  );
});
