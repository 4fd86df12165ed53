// Device-side dirty tracking through the public API against FakeKernel.
import assert from "node:assert/strict";
import { hostAddress, iova } from "../sys/address.ts";
import { EINVAL, ENOMEM, ENOSPC } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import { VfioContainer } from "../vfio/container.ts";
import { VfioStateError } from "../vfio/errors.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { anonMemory } from "./anon_memory.ts";

const MiB = 0x100000n;
const GiB = 1024n * MiB;
const KiB256 = 0x40000n;

function bits(words: Uint32Array): number[] {
  const out: number[] = [];
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if (w & (1 << b)) out.push(i * 32 + b);
  });
  return out;
}

Deno.test("DirtyPageTracker.query() in the all-mapped scope reports every mapped page, every time", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(2n * MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using _m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    const t = c.dirtyTracker();
    assert.throws(() => t.query(MiB, MiB), VfioStateError, "a query before start is refused");
    t.start();
    t.start();
    assert.equal(t.scope, "unknown");
    for (let i = 0; i < 3; i++) {
      const r = t.query(0n, 4n * MiB);
      assert.equal(r.dirtyPages, 256);
      assert.equal(r.mappedPages, 256);
      assert.equal(r.allMapped, true);
      assert.deepEqual(bits(r.bitmap).slice(0, 2), [256, 257]);
    }
    assert.equal(t.scope, "all-mapped");
    assert.equal(kernel.dirtyScope(c.unsafeFd), "all-mapped");
    t.stop();
    t.stop();
  }
  mem[Symbol.dispose]();
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("DirtyPageTracker.query() in the pinned scope reports pinned pages only", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using _m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    const t = c.dirtyTracker();
    t.start();
    kernel.pin(26, MiB + 0x3000n, 0x2000n);
    assert.equal(kernel.dirtyScope(c.unsafeFd), "precise");
    const r = t.query(MiB, MiB);
    assert.deepEqual(bits(r.bitmap), [3, 4]);
    assert.equal(t.scope, "precise");
    // Pinned pages stay dirty; an unpinned page is reported once more, then not.
    kernel.unpin(26, MiB + 0x4000n, 0x1000n);
    assert.deepEqual(bits(t.query(MiB, MiB).bitmap), [3, 4]);
    assert.deepEqual(bits(t.query(MiB, MiB).bitmap), [3]);
    t.stop();
  }
  mem[Symbol.dispose]();
});

Deno.test("DirtyPageTracker.query() refuses ranges the kernel would, before the ioctl", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using _m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    const t = c.dirtyTracker();
    t.start();
    kernel.clearCalls();
    assert.throws(() => t.query(MiB + 0x800n, 0x1000n), /not aligned to the dirty page size/);
    assert.throws(() => t.query(MiB, 0n), /empty/);
    assert.throws(() => t.query(MiB + 0x1000n, MiB), /bisects the mapping 0x100000-0x200000/);
    assert.throws(() => t.query(0n, MiB + 0x1000n), /bisects/);
    assert.equal(kernel.calls.filter((x) => x.name === "VFIO_IOMMU_DIRTY_PAGES").length, 0);
    t.stop();
  }
  mem[Symbol.dispose]();
});

function pinnedKernel(maxDirtyBitmapSize?: bigint): FakeKernel {
  return new FakeKernel(maxDirtyBitmapSize ? { migrationCap: { maxDirtyBitmapSize } } : {});
}

function oneGiBQuery(kernel: FakeKernel, limit?: bigint): { bitmap: Uint32Array; queries: number } {
  using mem = anonMemory(GiB, { syscalls: kernel });
  using c = VfioContainer.open({ syscalls: kernel });
  using _g = c.attachGroup(26);
  // 1 GiB as 4096 mappings of 256 KiB (a bitmap of 8 bytes covers 256 KiB).
  for (let i = 0n; i < 4096n; i++) {
    c.mapDma(iova(GiB + i * KiB256), { vaddr: hostAddress(mem.vaddr + i * KiB256), size: KiB256 });
  }
  const t = c.dirtyTracker(limit ? { maxBitmapBytes: limit } : {});
  t.start();
  // Pin a scattered, fixed set of pages so the bitmap has structure.
  let seed = 7;
  for (let i = 0; i < 3000; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    kernel.pin(26, GiB + BigInt(seed % 262144) * 0x1000n, 0x1000n);
  }
  const r = t.query(GiB, GiB);
  t.stop();
  for (const m of [...c.mappings]) m.unmap();
  return r;
}

Deno.test("DirtyPageTracker.query() split by an 8- and 64-byte max bitmap equals one query", () => {
  const whole = oneGiBQuery(pinnedKernel());
  assert.equal(whole.queries, 1);
  assert.ok(bits(whole.bitmap).length > 2500);
  for (const max of [8n, 64n]) {
    const kernel = pinnedKernel(max);
    const split = oneGiBQuery(kernel);
    assert.equal(split.queries, Number(GiB / (max * 8n * 0x1000n)), `max ${max}`);
    assert.deepEqual(split.bitmap, whole.bitmap, `max ${max}`);
    assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
  }
  // A limit set through the option splits the same way.
  const opt = oneGiBQuery(pinnedKernel(), 64n);
  assert.equal(opt.queries, 512);
  assert.deepEqual(opt.bitmap, whole.bitmap);
});

Deno.test("DirtyPageTracker.query() refuses a mapping larger than one query covers", () => {
  const kernel = pinnedKernel(8n);
  using mem = anonMemory(MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    using _m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    const t = c.dirtyTracker();
    t.start();
    assert.throws(() => t.query(MiB, MiB), /needs more than the 8-byte bitmap/);
    t.stop();
  }
  mem[Symbol.dispose]();
});

Deno.test("VfioContainer.unmapDma({ dirtyBitmap }) harvests while tracking, EINVAL after stop", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(2n * MiB, { syscalls: kernel });
  {
    using c = VfioContainer.open({ syscalls: kernel });
    using _g = c.attachGroup(26);
    c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
    const second = c.mapDma(iova(2n * MiB), { vaddr: hostAddress(mem.vaddr + MiB), size: MiB });
    const t = c.dirtyTracker();
    t.start();
    const r = c.unmapDma(iova(MiB), MiB, { dirtyBitmap: true });
    assert.equal(r.unmapped, MiB);
    assert.equal(r.dirty?.dirtyPages, 256);
    assert.equal(r.dirty?.allMapped, true);
    t.stop();
    assert.throws(
      () => c.unmapDma(iova(2n * MiB), MiB, { dirtyBitmap: true }),
      (e: unknown) => e instanceof IoctlError && e.errno === EINVAL,
    );
    assert.equal(second.mapped, true);
    second.unmap();
  }
  mem[Symbol.dispose]();
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

// Every ioctl on the open -> attach -> map -> track -> query -> unmap path, and
// the open, mmap and close around them, failed in turn: the error surfaces
// typed, and once the objects are disposed nothing is left open or mapped.
// (A failed munmap leaves its mapping in place in the kernel too, so it is not
// in the list.)
const PATH = [
  "open",
  "VFIO_GET_API_VERSION",
  "VFIO_GROUP_GET_STATUS",
  "VFIO_GROUP_SET_CONTAINER",
  "VFIO_CHECK_EXTENSION",
  "VFIO_SET_IOMMU",
  "VFIO_IOMMU_GET_INFO",
  "VFIO_IOMMU_MAP_DMA",
  "VFIO_IOMMU_DIRTY_PAGES",
  "mmap",
  "VFIO_IOMMU_UNMAP_DMA",
  "VFIO_GROUP_UNSET_CONTAINER",
  "close",
];

function scenario(kernel: FakeKernel): void {
  using mem = anonMemory(2n * MiB, { syscalls: kernel });
  using c = VfioContainer.open({ syscalls: kernel });
  using _g = c.attachGroup(26);
  using _m = c.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
  using _m2 = c.mapDma(iova(2n * MiB), { vaddr: hostAddress(mem.vaddr + MiB), size: MiB });
  const t = c.dirtyTracker();
  t.start();
  t.query(MiB, 2n * MiB);
  c.unmapDma(iova(2n * MiB), MiB, { dirtyBitmap: true });
  t.stop();
}

Deno.test("a fault in every call of the map/track/unmap path leaks nothing", () => {
  const clean = new FakeKernel();
  scenario(clean);
  assert.equal(clean.openFds + clean.liveMappings + clean.dmaMappings, 0);
  for (const name of PATH) {
    for (const err of [EINVAL, ENOMEM, ENOSPC]) {
      const kernel = new FakeKernel().failNext(name, err);
      let thrown: unknown;
      try {
        scenario(kernel);
      } catch (e) {
        thrown = e;
      }
      assert.ok(thrown !== undefined, `${name} ${err}: the fault surfaced`);
      const first = thrown instanceof SuppressedError ? thrown.suppressed : thrown;
      assert.ok(
        first instanceof IoctlError || (first as { errno?: number }).errno === err,
        `${name}: ${first}`,
      );
      assert.equal(kernel.openFds, 0, `${name}: fds ${kernel.openFdDescriptions()}`);
      assert.equal(kernel.liveMappings, 0, `${name}: mmaps`);
      assert.equal(kernel.dmaMappings, 0, `${name}: DMA mappings`);
    }
  }
});
