import assert from "node:assert/strict";
import { ctz32, orBitsAt, popcount, popcount32, setBitRange } from "./bits.ts";
import { seeded, testSeed } from "../tests/_random.ts";

function naiveCount(words: Uint32Array): number {
  let n = 0;
  for (const w of words) for (let b = 0; b < 32; b++) n += (w >>> b) & 1;
  return n;
}

Deno.test("popcount() equals a bit-by-bit count at every density and length", () => {
  const seed = testSeed();
  const random = seeded(seed);
  for (const len of [0, 1, 7, 8, 9, 63, 64, 1000]) {
    for (const density of [0, 0.001, 0.1, 0.5, 0.99, 1]) {
      const w = new Uint32Array(len);
      for (let i = 0; i < len * 32; i++) if (random() < density) w[i >>> 5] |= 1 << (i & 31);
      assert.equal(popcount(w), naiveCount(w), `len ${len}, density ${density}, seed ${seed}`);
    }
  }
  assert.equal(popcount(new Uint32Array(16).fill(0xffffffff)), 512);
  assert.equal(popcount32(0xffffffff), 32);
  assert.equal(popcount32(0x80000001), 2);
});

Deno.test("ctz32() finds the lowest set bit", () => {
  for (let b = 0; b < 32; b++) assert.equal(ctz32((1 << b) >>> 0), b);
  assert.equal(ctz32(0xfffffff0), 4);
});

Deno.test("setBitRange() sets exactly [from, to) across word edges", () => {
  for (const [from, to] of [[0, 0], [0, 1], [5, 37], [31, 33], [32, 64], [3, 200], [64, 65]]) {
    const w = new Uint32Array(8);
    setBitRange(w, from, to);
    for (let i = 0; i < 256; i++) {
      assert.equal(
        (w[i >>> 5] >>> (i & 31)) & 1,
        i >= from && i < to ? 1 : 0,
        `[${from}, ${to}) bit ${i}`,
      );
    }
  }
});

Deno.test("orBitsAt() ORs a bit string in at any offset and drops bits past nbits", () => {
  const src = new Uint32Array([0xffffffff, 0xffffffff]);
  for (const at of [0, 1, 31, 32, 45]) {
    for (const nbits of [1, 31, 33, 64]) {
      const dst = new Uint32Array(5);
      dst[4] = 0x8000_0000; // an existing bit stays
      orBitsAt(dst, at, src, nbits);
      for (let i = 0; i < 160; i++) {
        const want = (i >= at && i < at + nbits) || i === 159 ? 1 : 0;
        assert.equal((dst[i >>> 5] >>> (i & 31)) & 1, want, `at ${at}, nbits ${nbits}, bit ${i}`);
      }
    }
  }
});
