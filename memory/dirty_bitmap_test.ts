import assert from "node:assert/strict";
import { DirtyBitmap } from "./dirty_bitmap.ts";
import { mulberry32 } from "../tests/_memory_support.ts";

function naiveRuns(bits: boolean[]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < bits.length;) {
    if (!bits[i]) {
      i++;
      continue;
    }
    let j = i;
    while (j < bits.length && bits[j]) j++;
    out.push([i, j - i]);
    i = j;
  }
  return out;
}

Deno.test("DirtyBitmap.forEachRun() matches a naive scan on random bitmaps", () => {
  const rand = mulberry32(5);
  for (const pages of [1, 31, 32, 33, 63, 64, 65, 1000, 4096]) {
    for (const density of [0, 0.01, 0.5, 0.99, 1]) {
      const bits = Array.from({ length: pages }, () => rand() / 2 ** 32 < density);
      const bm = new DirtyBitmap(pages);
      bits.forEach((b, i) => b && bm.set(i));
      assert.deepEqual([...bm.runs()], naiveRuns(bits), `pages ${pages} density ${density}`);
      assert.equal(bm.count(), bits.filter((b) => b).length);
      assert.deepEqual(bm.pageIndexes(), bits.flatMap((b, i) => (b ? [i] : [])));
      assert.equal(bm.isEmpty(), !bits.includes(true));
    }
  }
});

Deno.test("DirtyBitmap.setRange() sets exactly the run, across word edges", () => {
  for (const [first, count] of [[0, 1], [31, 2], [5, 100], [64, 64], [30, 3], [0, 200]]) {
    const bm = new DirtyBitmap(200);
    bm.setRange(first, count);
    assert.deepEqual([...bm.runs()], [[first, count]]);
  }
  assert.throws(() => new DirtyBitmap(10).setRange(5, 6), RangeError);
});

Deno.test("DirtyBitmap.fillAll() leaves the bits past the end clear", () => {
  const bm = new DirtyBitmap(70);
  bm.fillAll();
  assert.equal(bm.count(), 70);
  assert.equal(bm.words.length, 4);
  assert.equal(bm.words[2], 0b111111);
  assert.equal(bm.words[3], 0);
  bm.clearAll();
  assert.ok(bm.isEmpty());
});

Deno.test("DirtyBitmap.orMerge() merges a u64 little-endian bitmap and masks the tail", () => {
  const bm = new DirtyBitmap(70);
  bm.set(1);
  // A VFIO-style bitmap: u64 words, little-endian; pages 0, 64 and 69 dirty, 70+ garbage.
  const vfio = new BigUint64Array([1n, (1n << 0n) | (1n << 5n) | (1n << 6n) | (1n << 63n)]);
  bm.orMerge(new Uint32Array(vfio.buffer));
  assert.deepEqual(bm.pageIndexes(), [0, 1, 64, 69]);
  assert.equal(bm.bytes.byteLength, vfio.byteLength);
  assert.throws(() => bm.orMerge(new DirtyBitmap(64)), RangeError);
});

Deno.test("DirtyBitmap.set() rejects pages outside the bitmap", () => {
  const bm = new DirtyBitmap(10);
  assert.throws(() => bm.set(10), /Cannot use page 10: the bitmap has 10 pages/);
  assert.throws(() => bm.test(-1), RangeError);
  assert.throws(() => bm.clear(1.5), RangeError);
  bm.set(9);
  assert.ok(bm.test(9));
  bm.clear(9);
  assert.ok(!bm.test(9));
  assert.throws(() => new DirtyBitmap(10, { words: new Uint32Array(1) }), /need 2/);
});

Deno.test("DirtyBitmap.pageIndexesInto() lists the set bits without allocating and checks room", () => {
  const bm = new DirtyBitmap(4096);
  const want: number[] = [];
  for (let i = 0; i < 4096; i++) {
    if (i % 7 === 0 || (i >= 1024 && i < 1600)) {
      bm.set(i);
      want.push(i);
    }
  }
  const out = new Uint32Array(4096);
  assert.equal(bm.pageIndexesInto(out), want.length);
  assert.deepEqual([...out.subarray(0, want.length)], want);
  assert.deepEqual(bm.pageIndexes(), want);
  assert.throws(() => bm.pageIndexesInto(new Uint32Array(want.length - 1)), RangeError);
  assert.equal(new DirtyBitmap(100).pageIndexesInto(new Uint32Array(0)), 0);
});
