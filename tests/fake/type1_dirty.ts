/**
 * `VFIO_IOMMU_DIRTY_PAGES` of the fake type1 IOMMU
 * (`vfio_iommu_type1_dirty_pages`, `vfio_iova_dirty_bitmap`).
 *
 * Dirty scope (`num_non_pinned_groups`): while any attached group has not
 * pinned a page, every mapped page is reported dirty on every read; once every
 * group pins, only pinned pages (and pages dirtied since the last read) are.
 *
 * @module
 */

import { EACCES, EINVAL } from "../../sys/errno.ts";
import {
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from "../../vfio/constants.ts";
import { readVfioBitmap, type VfioBitmap } from "../../vfio/uapi/dma.ts";
import { dirtyBitmapBytes, DirtyWords, updateUserBitmap } from "./dirty_bitmap.ts";
import type { Dma, Type1Iommu } from "./type1.ts";
import { accessOk, fail, u32, U64_MAX, type UserArg } from "./user_memory.ts";

/** `DIRTY_BITMAP_PAGES_MAX`: `INT_MAX` pages per mapping. */
export const DIRTY_BITMAP_PAGES_MAX = 0x7fff_ffffn;

/**
 * `__ffs(pgsize) ` then `verify_bitmap_size(size >> pgshift, bitmap.size)`.
 * A `pgsize` of 0 is undefined in the kernel (`__ffs(0)`); the fake answers EINVAL.
 *
 * @param iommu The IOMMU (for the enforced maximum bitmap size).
 * @param size The range size in bytes.
 * @param bitmap The user's bitmap descriptor.
 * @throws {KernelError} `EINVAL` when the bitmap cannot hold the range.
 */
export function checkBitmapArgs(iommu: Type1Iommu, size: bigint, bitmap: VfioBitmap): void {
  if (bitmap.pgsize === 0n) fail(EINVAL);
  const pgshift = BigInt((bitmap.pgsize & -bitmap.pgsize).toString(2).length - 1);
  const npages = size >> pgshift;
  const max = iommu.config.migrationCap?.maxDirtyBitmapSize ?? 0n;
  if (npages === 0n || bitmap.size === 0n || bitmap.size > max) fail(EINVAL);
  if (bitmap.size < dirtyBitmapBytes(npages)) fail(EINVAL);
}

function populate(iommu: Type1Iommu, dma: Dma): void {
  for (const page of dma.pins.keys()) dma.bitmap!.set((page - dma.iova) >> iommu.pgshift, 1n);
}

/**
 * Handles `VFIO_IOMMU_DIRTY_PAGES` on a container whose IOMMU is set.
 *
 * @param iommu The IOMMU.
 * @param arg The user argument.
 * @returns 0.
 * @throws {KernelError} The errno of the first rule the request breaks.
 */
export function dirtyPages(iommu: Type1Iommu, arg: UserArg): number {
  if (!iommu.v2) fail(EACCES);
  const head = arg.read(0, 8);
  const argsz = u32(head, 0);
  const flags = u32(head, 4);
  const mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
    VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  if (argsz < 8 || (flags & ~mask) !== 0) fail(EINVAL);
  // "only one flag should be set at a time"; no flag at all also ends in EINVAL.
  if (flags === 0 || (flags & (flags - 1)) !== 0) fail(EINVAL);
  if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
    if (!iommu.tracking) {
      for (const dma of iommu.dmas) {
        if (dma.size / iommu.pgsize > DIRTY_BITMAP_PAGES_MAX) {
          for (const d of iommu.dmas) d.bitmap = null;
          fail(EINVAL);
        }
        dma.bitmap = new DirtyWords(dma.size / iommu.pgsize);
        populate(iommu, dma);
      }
      iommu.tracking = true;
    }
    return 0;
  }
  if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
    if (iommu.tracking) {
      iommu.tracking = false;
      for (const d of iommu.dmas) d.bitmap = null;
    }
    return 0;
  }
  // GET_BITMAP
  if (argsz - 8 < 40) fail(EINVAL);
  const range = arg.read(8, 40);
  const v = new DataView(range.buffer);
  const iova = v.getBigUint64(0, true);
  const size = v.getBigUint64(8, true);
  const bitmap = readVfioBitmap(v, 16);
  if (((iova + size) & U64_MAX) < iova) fail(EINVAL);
  if (!accessOk(bitmap.data, bitmap.size)) fail(EINVAL);
  checkBitmapArgs(iommu, size, bitmap);
  const pgsize = iommu.pgsize;
  if (bitmap.pgsize !== pgsize) fail(EINVAL);
  if ((iova & (pgsize - 1n)) !== 0n) fail(EINVAL);
  if (size === 0n || (size & (pgsize - 1n)) !== 0n) fail(EINVAL);
  if (!iommu.tracking) fail(EINVAL);
  iovaDirtyBitmap(iommu, bitmap.data, iova, size);
  return 0;
}

function iovaDirtyBitmap(iommu: Type1Iommu, data: bigint, iova: bigint, size: bigint): void {
  // The range must not bisect a mapping at either end.
  const first = iommu.findDma(iova, 1n);
  if (first !== undefined && first.iova !== iova) fail(EINVAL);
  const last = iommu.findDma(iova + size - 1n, 0n);
  if (last !== undefined && last.iova + last.size !== iova + size) fail(EINVAL);
  const allDirty = iommu.numNonPinnedGroups > 0;
  for (const dma of [...iommu.dmas]) {
    if (dma.iova < iova) continue;
    if (dma.iova > iova + size - 1n) break;
    updateUserBitmap(data, dma as Dma & { bitmap: DirtyWords }, iova, iommu.pgshift, allDirty);
    // Re-seed with the pages still pinned: they stay dirty.
    dma.bitmap!.clear();
    populate(iommu, dma);
  }
}
