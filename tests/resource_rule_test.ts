// One resource rule, against FakeKernel: a parent refuses to close while what
// it handed out is still live (a typed ResourceBusyError naming it, and
// nothing changed), and `using` in declaration order tears everything down.
// Also: no internal hook on the public classes, no accessor that issues an
// ioctl, and one dirty tracker a container.
import assert from "node:assert/strict";
import { guestAddress as g, hostAddress, iova } from "../sys/address.ts";
import { EINVAL } from "../sys/errno.ts";
import { IoctlError, ResourceBusyError } from "../sys/errors.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { VfioContainer } from "../vfio/container.ts";
import { DirtyPageTracker } from "../vfio/dirty_page_tracker.ts";
import { DmaMapping } from "../vfio/dma_mapping.ts";
import { VfioStateError } from "../vfio/errors.ts";
import { VfioGroup } from "../vfio/group.ts";
import { VfioDevice } from "../vfio/device.ts";
import { HwPagetable } from "../vfio/iommufd/hw_pagetable.ts";
import { IommufdIoas } from "../vfio/iommufd/ioas.ts";
import { Iommufd } from "../vfio/iommufd/iommufd.ts";
import { anonMemory } from "./anon_memory.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { RecordingSyscalls } from "./recording_syscalls.ts";

const MiB = 1n << 20n;

function assertClean(kernel: FakeKernel): void {
  assert.equal(kernel.openFds, 0, `open fds: ${kernel.openFdDescriptions().join(", ")}`);
  assert.equal(kernel.liveMappings, 0, "live mmaps");
  assert.equal(kernel.dmaMappings, 0, "DMA mappings");
}

function busy(pattern: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof ResourceBusyError, String(e));
    assert.match(e.message, pattern);
    return true;
  };
}

Deno.test("GuestMemory.close() refuses while its DMA lease is mapped, and using order tears down", () => {
  const kernel = new FakeKernel();
  {
    using mem = GuestMemory.create([
      { gpa: g(0n), size: MiB },
      { gpa: g(MiB), size: MiB, backing: "memfd" },
    ], { syscalls: kernel });
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    const lease = mem.mapInto(c);
    assert.throws(
      () => mem.close(),
      busy(
        /^Cannot close guest memory \(2 regions, 2 MiB\): the DMA lease of 2 regions at iova 0x0 is still open \(unmap it first: a device could still write this RAM\)$/,
      ),
    );
    assert.equal(mem.closed, false);
    mem.writeU32(g(MiB + 4n), 7); // the RAM is still mapped
    assert.equal(mem.readU32(g(MiB + 4n)), 7);
    assert.equal(kernel.dmaMappings, 2);
    lease.unmap();
    assert.equal(kernel.dmaMappings, 0);
    // Mapped again and left to `using`: the lease goes first.
    using _again = mem.mapInto(c, { iovaBase: 16n * MiB });
  }
  assertClean(kernel);
});

Deno.test("GuestMemory.close() proceeds once the kernel refused a lease's unmap (the IOMMU keeps the pages)", () => {
  const kernel = new FakeKernel();
  {
    using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    const lease = mem.mapInto(c);
    kernel.failNext("VFIO_IOMMU_UNMAP_DMA", EINVAL);
    assert.throws(() => lease.unmap(), (e: unknown) => e instanceof IoctlError);
    assert.equal(lease.mapped, true, "the failed region stays in the lease");
    assert.equal(lease.unmapRefused, true);
    mem.close(); // no longer held back
    assert.equal(kernel.dmaMappings, 1, "the IOMMU still maps the pages until its group goes");
  }
  assertClean(kernel);
});

Deno.test("VfioGroup.close() of a container's last group refuses while DMA mappings live", () => {
  const kernel = new FakeKernel({ groups: [{ id: 26 }, { id: 27 }] });
  using mem = anonMemory(2n * MiB, { syscalls: kernel });
  const c = VfioContainer.open({ syscalls: kernel });
  const g26 = c.attachGroup(26);
  const g27 = c.attachGroup(27);
  const m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
  g27.close(); // not the last group: the IOMMU stays
  assert.equal(m.mapped, true);
  kernel.clearCalls();
  const lastGroup = busy(
    /^Cannot close group \/dev\/vfio\/26: DMA mapping \[0x100000, 0x200000\) is still open \(it is the last group of container \/dev\/vfio\/vfio, whose IOMMU and every mapping in it the kernel releases with it: unmap them first\)$/,
  );
  assert.throws(() => g26.close(), lastGroup);
  assert.throws(() => g26.unsetContainer(), busy(/^Cannot detach group \/dev\/vfio\/26: /));
  assert.deepEqual(kernel.calls, [], "refused before any ioctl");
  assert.equal(m.mapped, true);
  assert.equal(kernel.dmaMappings, 1);
  m.unmap();
  g26.close();
  c.close();
  mem[Symbol.dispose]();
  assertClean(kernel);
});

Deno.test("VfioGroup.close() proceeds once the kernel refused an unmap, and the IOMMU drops it", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    kernel.failNext("VFIO_IOMMU_UNMAP_DMA", EINVAL);
    assert.throws(() => m.unmap(), (e: unknown) => e instanceof IoctlError);
    assert.equal(m.mapped, true);
  } // `using`: the lease's retry succeeds here, then group and container close
  assert.equal(kernel.dmaMappings, 0);
  {
    const c = VfioContainer.open({ syscalls: kernel });
    const grp = c.attachGroup(26);
    const m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    kernel.failNext("VFIO_IOMMU_UNMAP_DMA", EINVAL);
    assert.throws(() => m.unmap(), (e: unknown) => e instanceof IoctlError);
    grp.close(); // releasing the IOMMU is how the kernel unmaps it now
    assert.equal(m.mapped, false);
    assert.equal(kernel.dmaMappings, 0);
    c.close();
  }
  mem[Symbol.dispose]();
  assertClean(kernel);
});

Deno.test("VfioDevice.close() refuses while a region is mapped", () => {
  const kernel = new FakeKernel();
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using grp = c.attachGroup(26);
    const d = grp.openDevice("0000:00:03.0");
    const bar = d.mmapRegion(0);
    assert.throws(
      () => d.close(),
      busy(
        /^Cannot close device 0000:00:03\.0: the mapping of region 0 is still open \(unmap it first\)$/,
      ),
    );
    assert.equal(d.closed, false);
    assert.equal(bar.readU32(0), 0x010000ed, "the BAR is still mapped");
    bar.unmap();
    d.close();
  }
  assertClean(kernel);
});

Deno.test("VfioContainer.close() refuses while a group is attached, naming it", () => {
  const kernel = new FakeKernel();
  const c = VfioContainer.open({ syscalls: kernel });
  const grp = c.attachGroup(26);
  assert.throws(
    () => c.close(),
    busy(/^Cannot close container \/dev\/vfio\/vfio: group \/dev\/vfio\/26 is still open/),
  );
  assert.equal(c.closed, false);
  grp.close();
  c.close();
  assertClean(kernel);
});

Deno.test("VfioContainer.dirtyTracker() returns its one tracker and refuses a different limit", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using leases = new DisposableStack(); // four 256 KiB mappings: a query covers whole ones
    for (let i = 0n; i < 4n; i++) {
      const at = i * (MiB / 4n);
      leases.use(c.mapDma(iova(MiB + at), { vaddr: hostAddress(mem.vaddr + at), size: MiB / 4n }));
    }
    const t = c.dirtyTracker({ maxBitmapBytes: 64n });
    t.start();
    assert.equal(c.dirtyTracker(), t);
    assert.equal(c.dirtyTracker({ maxBitmapBytes: 64n }), t);
    assert.throws(
      () => c.dirtyTracker({ maxBitmapBytes: 8n }),
      (e: unknown) =>
        e instanceof TypeError &&
        /^Cannot make a dirty tracker with maxBitmapBytes 8: container \/dev\/vfio\/vfio already has one with 64/
          .test(e.message),
    );
    assert.equal(t.running, true, "the tracker was not replaced");
    assert.equal(t.maxBitmapBytes, 64n);
    // A lower limit for one query splits it without a second tracker.
    const one = t.query(MiB, MiB);
    const split = t.query(MiB, MiB, { maxBitmapBytes: 8n });
    assert.equal(one.queries, 1);
    assert.equal(split.queries, 4);
    assert.deepEqual(split.bitmap, one.bitmap);
    assert.throws(() => t.query(MiB, MiB, { maxBitmapBytes: 12n }), RangeError);
    t.stop();
  }
  mem[Symbol.dispose]();
  assertClean(kernel);
});

Deno.test("DirtyPageTracker refuses work once its container's IOMMU is released", () => {
  const kernel = new FakeKernel();
  using c = VfioContainer.open({ syscalls: kernel });
  const grp = c.attachGroup(26);
  const t = c.dirtyTracker();
  t.start();
  grp.close(); // the last group: the kernel releases the IOMMU and its tracking
  assert.equal(t.running, false);
  assert.throws(
    () => t.start(),
    (e: unknown) =>
      e instanceof VfioStateError && /the container's IOMMU was released/.test(e.message),
  );
  assert.throws(() => t.query(0n, 4096n), VfioStateError);
  t.stop(); // a no-op
  using _again = c.attachGroup(26);
  assert.notEqual(c.dirtyTracker(), t, "a new IOMMU, a new tracker");
});

Deno.test("no VFIO or iommufd class exposes internal release or link hooks", () => {
  const internals = ["groupAttached", "markReleased", "release", "fdFor", "track"];
  for (
    const cls of [
      VfioContainer,
      VfioGroup,
      VfioDevice,
      DmaMapping,
      DirtyPageTracker,
      Iommufd,
      IommufdIoas,
      HwPagetable,
    ]
  ) {
    for (const name of internals) {
      assert.ok(!(name in cls.prototype), `${cls.name}.prototype.${name}`);
    }
  }
});

Deno.test("no VfioContainer, VfioGroup, VfioDevice or DirtyPageTracker accessor issues an ioctl", () => {
  const kernel = new FakeKernel();
  const sys = new RecordingSyscalls(kernel);
  const readAccessors = (object: object) => {
    const proto = Object.getPrototypeOf(object);
    for (const [name, desc] of Object.entries(Object.getOwnPropertyDescriptors(proto))) {
      if (desc.get === undefined) continue;
      const before = sys.calls.length;
      desc.get.call(object);
      assert.deepEqual(
        sys.calls.slice(before).map((call) => call.name ?? call.syscall),
        [],
        `${proto.constructor.name}.${name} made calls`,
      );
    }
  };
  using mem = anonMemory(MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: sys });
    using grp = c.attachGroup(26);
    using d = grp.openDevice("0000:00:03.0");
    // Before anything has read (and cached) the IOMMU info.
    for (const object of [c, grp, d]) readAccessors(object);
    assert.equal(c.minPageSize(), 0x1000n);
    const reads = sys.ioctls("VFIO_IOMMU_GET_INFO").length;
    assert.ok(reads > 0, "the first call reads the info");
    assert.equal(c.minPageSize(), 0x1000n);
    assert.equal(sys.ioctls("VFIO_IOMMU_GET_INFO").length, reads, "later calls answer from it");
    using _m = c.mapDma(iova(MiB), { vaddr: hostAddress(mem.vaddr), size: MiB });
    readAccessors(c.dirtyTracker());
  }
  mem[Symbol.dispose]();
  assertClean(kernel);
});
