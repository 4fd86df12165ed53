// Seeded randomness for tests: every random input comes from a seed, and a
// test names its seed in its failure messages, so a failing run can be
// replayed with DENO_VMM_SEED=<seed>.

import { mulberry32 } from "./_memory_support.ts";

/** The seed of this run: `DENO_VMM_SEED` if set, else one drawn now. */
export function testSeed(): number {
  const fixed = Deno.env.get("DENO_VMM_SEED");
  if (fixed !== undefined) {
    const n = Number(fixed);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`DENO_VMM_SEED=${fixed}: not a seed`);
    return n;
  }
  return Math.floor(Math.random() * 2 ** 31);
}

/** A generator of floats in [0, 1) from `seed`. */
export function seeded(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 2 ** 32;
}

/** Fills `view` with bytes from `seed` (fast: 32-bit words where aligned). */
export function fillSeeded(view: Uint8Array, seed: number): void {
  const next = mulberry32(seed);
  const words = Math.floor(view.byteLength / 4);
  if (view.byteOffset % 4 === 0) {
    const w = new Uint32Array(view.buffer, view.byteOffset, words);
    for (let i = 0; i < w.length; i++) w[i] = next();
  } else {
    for (let i = 0; i < words * 4; i += 4) {
      new DataView(view.buffer, view.byteOffset).setUint32(i, next(), true);
    }
  }
  for (let i = words * 4; i < view.byteLength; i++) view[i] = next() & 0xff;
}
