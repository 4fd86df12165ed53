/**
 * Per-mapping dirty bitmaps of the fake type1 IOMMU, and the kernel's
 * `update_user_bitmap()` that copies one into the user's bitmap.
 *
 * @module
 */

import { copyFromUser, copyToUser, u64 } from "./user_memory.ts";

const ALL_ONES = 0xffff_ffff_ffff_ffffn;

/**
 * The kernel's `DIRTY_BITMAP_BYTES(n)`: `ALIGN(n, 64) / 8`.
 *
 * @param nbits Bits.
 * @returns Bytes, a multiple of 8.
 */
export function dirtyBitmapBytes(nbits: bigint): bigint {
  return ((nbits + 63n) / 64n) * 8n;
}

/**
 * `vfio_dma->bitmap`: one bit per smallest IOMMU page, with one spare u64 as
 * the kernel allocates (`DIRTY_BITMAP_BYTES(npages) + sizeof(u64)`) so the
 * bitmap can be shifted in place.
 */
export class DirtyWords {
  /** The words, little-endian bit order (bit 0 of word 0 is page 0). */
  readonly words: BigUint64Array;

  /**
   * Allocates a zeroed bitmap.
   *
   * @param npages Pages in the mapping.
   */
  constructor(npages: bigint) {
    this.words = new BigUint64Array(Number((npages + 63n) / 64n) + 1);
  }

  /**
   * `bitmap_set(bitmap, start, n)`.
   *
   * @param start The first bit.
   * @param n How many bits.
   */
  set(start: bigint, n: bigint): void {
    const end = start + n;
    for (let i = start; i < end;) {
      const bit = i & 63n;
      const take = end - i < 64n - bit ? end - i : 64n - bit;
      const mask = take === 64n ? ALL_ONES : ((1n << take) - 1n) << bit;
      this.words[Number(i >> 6n)] |= mask;
      i += take;
    }
  }

  /**
   * Whether a bit is set.
   *
   * @param bit The bit.
   * @returns True when set.
   */
  test(bit: bigint): boolean {
    return ((this.words[Number(bit >> 6n)] >> (bit & 63n)) & 1n) === 1n;
  }

  /** `bitmap_clear()` of the whole bitmap. */
  clear(): void {
    this.words.fill(0n);
  }

  /**
   * `bitmap_shift_left(bitmap, bitmap, shift, nbits)` for `0 < shift < 64`:
   * moves every bit `shift` places up and clears the bits at and above `nbits`
   * in the last word.
   *
   * @param shift Places to shift.
   * @param nbits The bitmap length after the shift.
   */
  shiftLeft(shift: bigint, nbits: bigint): void {
    const last = Number((nbits + 63n) / 64n) - 1;
    for (let k = last; k >= 0; k--) {
      const lower = k > 0 ? this.words[k - 1] >> (64n - shift) : 0n;
      this.words[k] = ((this.words[k] << shift) & ALL_ONES) | lower;
    }
    const tail = nbits & 63n;
    if (tail !== 0n) this.words[last] &= (1n << tail) - 1n;
  }
}

/** What {@linkcode updateUserBitmap} needs to know about a mapping. */
export interface BitmapSource {
  /** The first IOVA of the mapping. */
  readonly iova: bigint;
  /** Bytes mapped. */
  readonly size: bigint;
  /** Its dirty bitmap (tracking is on). */
  readonly bitmap: DirtyWords;
}

/**
 * The kernel's `update_user_bitmap()`: places one mapping's bits into the
 * user bitmap at `data`, relative to `baseIova`.
 *
 * Faithful detail: when the mapping's first bit is not 64-bit aligned relative
 * to `baseIova`, the first user word is read back and ORed in (all 64 bits of
 * it); every other word the mapping covers is overwritten, and bits past the
 * mapping's end in its last word are written as 0.
 *
 * @param data The user address of the bitmap.
 * @param dma The mapping.
 * @param baseIova The request's first IOVA.
 * @param pgshift `__ffs(pgsize)`.
 * @param allDirty Mark every page first (`num_non_pinned_groups && iommu_mapped`).
 * @throws {KernelError} `EFAULT` when the user bitmap is not mapped.
 */
export function updateUserBitmap(
  data: bigint,
  dma: BitmapSource,
  baseIova: bigint,
  pgshift: bigint,
  allDirty: boolean,
): void {
  const nbits = dma.size >> pgshift;
  const bitOffset = (dma.iova - baseIova) >> pgshift;
  const copyOffset = (bitOffset / 64n) * 8n;
  const shift = bitOffset % 64n;
  if (allDirty) dma.bitmap.set(0n, nbits);
  if (shift !== 0n) {
    dma.bitmap.shiftLeft(shift, nbits + shift);
    const leftover = u64(copyFromUser(data + copyOffset, 8), 0);
    dma.bitmap.words[0] |= leftover;
  }
  const bytes = Number(dirtyBitmapBytes(nbits + shift));
  copyToUser(data + copyOffset, new Uint8Array(dma.bitmap.words.buffer, 0, bytes));
}
