/**
 * Word-level bit operations on little-endian bitmaps held as `Uint32Array`
 * (byte-compatible with the kernel's u64-word bitmaps on little-endian
 * hosts), shared by guest-RAM and VFIO dirty bitmaps. Bit `i` is bit `i & 31`
 * of word `i >> 5`.
 *
 * @module
 */

/**
 * Set bits in one 32-bit word.
 *
 * @param v The word (as stored in a `Uint32Array`).
 * @returns 0 to 32.
 *
 * @example
 * ```ts
 * import { popcount32 } from "./bits.ts";
 * console.log(popcount32(0b1011)); // 3
 * ```
 */
export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

// Set bits of every 16-bit value: two loads count a word, about twice as
// fast here as arithmetic on it.
const BITS16 = new Uint8Array(65536);
for (let i = 1; i < 65536; i++) BITS16[i] = (i & 1) + BITS16[i >>> 1];

/**
 * Counts the set bits of `words`, eight words at a time: eight clean or
 * eight full words cost one test; others are counted 16 bits at a time
 * from a table.
 *
 * @param words The bitmap.
 * @returns The count.
 *
 * @example
 * ```ts
 * import { popcount } from "./bits.ts";
 * console.log(popcount(new Uint32Array([1, 0xffffffff, 0]))); // 33
 * ```
 */
export function popcount(words: Uint32Array): number {
  const t = BITS16;
  let n = 0;
  const len = words.length;
  let i = 0;
  for (; i + 8 <= len; i += 8) {
    const w0 = words[i], w1 = words[i + 1], w2 = words[i + 2], w3 = words[i + 3];
    const w4 = words[i + 4], w5 = words[i + 5], w6 = words[i + 6], w7 = words[i + 7];
    if ((w0 | w1 | w2 | w3 | w4 | w5 | w6 | w7) === 0) continue;
    if ((w0 & w1 & w2 & w3 & w4 & w5 & w6 & w7) === -1) {
      n += 256;
      continue;
    }
    n += t[w0 & 0xffff] + t[w0 >>> 16] + t[w1 & 0xffff] + t[w1 >>> 16] +
      t[w2 & 0xffff] + t[w2 >>> 16] + t[w3 & 0xffff] + t[w3 >>> 16] +
      t[w4 & 0xffff] + t[w4 >>> 16] + t[w5 & 0xffff] + t[w5 >>> 16] +
      t[w6 & 0xffff] + t[w6 >>> 16] + t[w7 & 0xffff] + t[w7 >>> 16];
  }
  for (; i < len; i++) n += t[words[i] & 0xffff] + t[words[i] >>> 16];
  return n;
}

/**
 * Skips clean words eight at a time: the first index at or after `i` whose
 * group of eight words is not all zero (or the last partial group), up to
 * `words.length`.
 *
 * @param words The bitmap.
 * @param i Where to start.
 * @returns An index at most eight words before the next set bit, or `words.length`.
 *
 * @example
 * ```ts
 * import { skipCleanWords } from "./bits.ts";
 * const w = new Uint32Array(40);
 * w[20] = 1;
 * console.log(skipCleanWords(w, 0)); // 16
 * ```
 */
export function skipCleanWords(words: Uint32Array, i: number): number {
  const len = words.length;
  while (
    i + 8 <= len &&
    (words[i] | words[i + 1] | words[i + 2] | words[i + 3] | words[i + 4] | words[i + 5] |
        words[i + 6] | words[i + 7]) === 0
  ) i += 8;
  return i;
}

/**
 * Count of trailing zero bits of a non-zero 32-bit value.
 *
 * @param v The value, not 0.
 * @returns 0 to 31.
 *
 * @example
 * ```ts
 * import { ctz32 } from "./bits.ts";
 * console.log(ctz32(8)); // 3
 * ```
 */
export function ctz32(v: number): number {
  return 31 - Math.clz32(v & -v);
}

/**
 * Sets bits `[from, to)` of `words`.
 *
 * @param words The bitmap.
 * @param from First bit.
 * @param to One past the last bit.
 *
 * @example
 * ```ts
 * import { setBitRange } from "./bits.ts";
 * const w = new Uint32Array(2);
 * setBitRange(w, 30, 34);
 * console.log(w); // Uint32Array(2) [ 3221225472, 3 ]
 * ```
 */
export function setBitRange(words: Uint32Array, from: number, to: number): void {
  if (to <= from) return;
  let i = from >>> 5;
  const last = (to - 1) >>> 5;
  const headMask = (0xffffffff << (from & 31)) >>> 0;
  const tailBits = to & 31;
  const tailMask = tailBits === 0 ? 0xffffffff : ((1 << tailBits) - 1) >>> 0;
  if (i === last) {
    words[i] |= headMask & tailMask;
    return;
  }
  words[i++] |= headMask;
  if (i < last) words.fill(0xffffffff, i, last);
  words[last] |= tailMask;
}

/**
 * ORs the first `nbits` bits of `src` into `dst`, starting at bit `at` of `dst`.
 *
 * @param dst The bitmap to update.
 * @param at The bit of `dst` that `src` bit 0 lands on.
 * @param src The bits to add.
 * @param nbits How many bits of `src`.
 *
 * @example
 * ```ts
 * import { orBitsAt } from "./bits.ts";
 * const dst = new Uint32Array(2);
 * orBitsAt(dst, 31, new Uint32Array([0b11]), 2);
 * console.log(dst); // Uint32Array(2) [ 2147483648, 1 ]
 * ```
 */
export function orBitsAt(dst: Uint32Array, at: number, src: Uint32Array, nbits: number): void {
  const nwords = (nbits + 31) >>> 5;
  const tail = nbits & 31;
  const shift = at & 31;
  const base = at >>> 5;
  for (let i = 0; i < nwords; i++) {
    let w = src[i];
    if (tail !== 0 && i === nwords - 1) w &= 0xffffffff >>> (32 - tail);
    if (w === 0) continue;
    const d = base + i;
    dst[d] |= w << shift;
    if (shift !== 0 && d + 1 < dst.length) dst[d + 1] |= w >>> (32 - shift);
  }
}
