// Word-level bit operations on little-endian bitmaps held as Uint32Array
// (byte-compatible with the kernel's u64-word bitmaps on little-endian hosts).

/** Counts the set bits in `words`. */
export function popcount(words: Uint32Array): number {
  let n = 0;
  for (let i = 0; i < words.length; i++) {
    let w = words[i];
    if (w === 0) continue;
    w = w - ((w >>> 1) & 0x55555555);
    w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
    n += (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
  }
  return n;
}

/** ORs the first `nbits` bits of `src` into `dst` starting at bit `at`. */
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

/** Sets bits `[from, to)`. */
export function setBitRange(dst: Uint32Array, from: number, to: number): void {
  if (to <= from) return;
  let i = from;
  while (i < to && (i & 31) !== 0) {
    dst[i >>> 5] |= 1 << (i & 31);
    i++;
  }
  while (i + 32 <= to) {
    dst[i >>> 5] = 0xffffffff;
    i += 32;
  }
  while (i < to) {
    dst[i >>> 5] |= 1 << (i & 31);
    i++;
  }
}
