// Device-side dirty tracking against the real type1 kernel.
import assert from "node:assert/strict";
import { hostAddress, iova } from "../../sys/address.ts";
import { EINVAL } from "../../sys/errno.ts";
import { IoctlError } from "../../sys/errors.ts";
import { VfioContainer } from "../../vfio/container.ts";
import { VfioStateError } from "../../vfio/errors.ts";
import { anonMemory } from "../anon_memory.ts";
import { groupAndDevice } from "./_group.ts";

const MiB = 0x100000n;

function setBits(words: Uint32Array): number[] {
  const out: number[] = [];
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if (w & (1 << b)) out.push(i * 32 + b);
  });
  return out;
}

Deno.test("DirtyPageTracker.start() twice and stop() while stopped succeed", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  const tracker = container.dirtyTracker();
  assert.equal(tracker.pgsize, 0x1000n);
  assert.equal(tracker.maxBitmapBytes, 0x10000000n);
  tracker.stop();
  tracker.start();
  tracker.start();
  assert.equal(tracker.running, true);
  tracker.stop();
  tracker.stop();
  assert.equal(tracker.running, false);
});

Deno.test("DirtyPageTracker.query() before start() is a typed error", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(MiB);
  using _m = container.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
  assert.throws(() => container.dirtyTracker().query(MiB, MiB), VfioStateError);
});

Deno.test("DirtyPageTracker.query() sees the all-mapped scope on every query", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(MiB);
  using _m = container.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
  const tracker = container.dirtyTracker();
  tracker.start();
  try {
    for (let i = 0; i < 3; i++) {
      const r = tracker.query(MiB, MiB);
      assert.equal(r.pages, 256);
      assert.equal(r.dirtyPages, 256, `query ${i}: every mapped page dirty`);
      assert.equal(r.allMapped, true);
      assert.equal(tracker.scope, "all-mapped");
    }
  } finally {
    tracker.stop();
  }
});

Deno.test("DirtyPageTracker.query() over more than the mapping sets only mapped pages", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(MiB);
  using _m = container.mapDma(iova(2n * MiB), { vaddr: mem.vaddr, size: MiB });
  const tracker = container.dirtyTracker();
  tracker.start();
  try {
    const r = tracker.query(MiB, 4n * MiB); // 1 MiB gap, the mapping, 2 MiB gap
    assert.equal(r.pages, 1024);
    assert.equal(r.dirtyPages, 256);
    const bits = setBits(r.bitmap);
    assert.equal(bits[0], 256);
    assert.equal(bits.at(-1), 511);
    // A range with no mapping at all reports nothing.
    assert.equal(tracker.query(8n * MiB, MiB).dirtyPages, 0);
  } finally {
    tracker.stop();
  }
});

Deno.test("VfioContainer.unmapDma() with a dirty bitmap: all bits while tracking, EINVAL after stop", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(2n * MiB);
  container.mapDma(iova(MiB), { vaddr: mem.vaddr, size: MiB });
  const second = container.mapDma(iova(2n * MiB), {
    vaddr: hostAddress(mem.vaddr + MiB),
    size: MiB,
  });
  const tracker = container.dirtyTracker();
  tracker.start();
  const r = container.unmapDma(iova(MiB), MiB, { dirtyBitmap: true });
  assert.equal(r.unmapped, MiB);
  assert.equal(r.dirty?.dirtyPages, 256);
  assert.equal(container.mappings.length, 1);
  tracker.stop();
  assert.throws(
    () => container.unmapDma(iova(2n * MiB), MiB, { dirtyBitmap: true }),
    (e: unknown) => e instanceof IoctlError && e.errno === EINVAL,
  );
  assert.equal(second.mapped, true, "a failed unmap keeps the lease");
  second.unmap();
  assert.equal(container.mappings.length, 0);
});

Deno.test("DirtyPageTracker.query() split by a small bitmap limit equals one query", () => {
  const { group } = groupAndDevice();
  using container = VfioContainer.open();
  using _g = container.attachGroup(group);
  using mem = anonMemory(4n * MiB);
  using leases = new DisposableStack(); // unmapped before the group closes
  // 16 mappings of 256 KiB with gaps between some of them.
  for (let i = 0n; i < 16n; i++) {
    const at = MiB + i * 0x40000n + (i >= 8n ? MiB : 0n);
    leases.use(
      container.mapDma(iova(at), { vaddr: hostAddress(mem.vaddr + i * 0x40000n), size: 0x40000n }),
    );
  }
  const whole = container.dirtyTracker();
  whole.start();
  try {
    const one = whole.query(0n, 8n * MiB);
    assert.equal(one.queries, 1);
    for (const limit of [8n, 64n]) {
      const split = whole.query(0n, 8n * MiB, { maxBitmapBytes: limit });
      assert.ok(split.queries > 1, `limit ${limit}: ${split.queries} queries`);
      assert.deepEqual(split.bitmap, one.bitmap);
      assert.equal(split.dirtyPages, 16 * 64);
    }
  } finally {
    container.dirtyTracker().stop();
  }
});
