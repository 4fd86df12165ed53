/**
 * `VFIO_IOMMU_UNMAP_DMA` of the fake type1 IOMMU.
 *
 * @module
 */

import { EINVAL } from "../../sys/errno.ts";
import {
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
} from "../../vfio/constants.ts";
import { readVfioBitmap, type VfioBitmap } from "../../vfio/uapi/dma.ts";
import { type DirtyWords, updateUserBitmap } from "./dirty_bitmap.ts";
import type { Dma, Type1Iommu } from "./type1.ts";
import { checkBitmapArgs } from "./type1_dirty.ts";
import { accessOk, fail, u32, U64_MAX, u64Bytes, type UserArg } from "./user_memory.ts";

/**
 * `VFIO_IOMMU_UNMAP_DMA` (`vfio_iommu_type1_unmap_dma`, `vfio_dma_do_unmap`),
 * with `GET_DIRTY_BITMAP`, `ALL` and (when enabled) `VADDR`. On success the
 * bytes unmapped are written back into `size`.
 *
 * @param iommu The IOMMU.
 * @param arg The user argument.
 * @returns 0.
 * @throws {KernelError} The errno of the first rule the request breaks.
 */
export function unmapDma(iommu: Type1Iommu, arg: UserArg): number {
  const head = arg.read(0, 24);
  const argsz = u32(head, 0);
  const flags = u32(head, 4);
  const iova = new DataView(head.buffer).getBigUint64(8, true);
  let size = new DataView(head.buffer).getBigUint64(16, true);
  const dirtyFlag = iommu.config.migrationCap === null ? 0 : VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
  const mask = VFIO_DMA_UNMAP_FLAG_ALL | dirtyFlag |
    (iommu.updateVaddrEnabled() ? VFIO_DMA_UNMAP_FLAG_VADDR : 0);
  if (argsz < 24 || (flags & ~mask) !== 0) fail(EINVAL);
  const wantBitmap = (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
  const all = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
  const invalidate = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
  if (wantBitmap && (all || invalidate)) fail(EINVAL);
  let bitmap: VfioBitmap | undefined;
  if (wantBitmap) {
    if (argsz < 48) fail(EINVAL);
    const raw = arg.read(24, 24);
    bitmap = readVfioBitmap(new DataView(raw.buffer), 0);
    if (!accessOk(bitmap.data, bitmap.size)) fail(EINVAL);
    checkBitmapArgs(iommu, size, bitmap);
  }
  // vfio_dma_do_unmap
  const pgsize = iommu.pgsize;
  if ((iova & (pgsize - 1n)) !== 0n) fail(EINVAL);
  if (all) {
    if (iova !== 0n || size !== 0n) fail(EINVAL);
    size = U64_MAX;
  } else if (size === 0n || (size & (pgsize - 1n)) !== 0n || iova + size - 1n > U64_MAX) {
    fail(EINVAL);
  }
  if (bitmap !== undefined && (!iommu.tracking || bitmap.pgsize !== pgsize)) fail(EINVAL);
  if (iommu.v2 && !all) {
    const first = iommu.findDma(iova, 1n);
    if (first !== undefined && first.iova !== iova) fail(EINVAL);
    const last = iommu.findDma(iova + size - 1n, 0n);
    if (last !== undefined && last.iova + last.size !== iova + size) fail(EINVAL);
  }
  let unmapped = 0n;
  const candidates = iommu.dmas.filter((d) => d.iova + d.size > iova);
  const touched: Dma[] = [];
  for (const dma of candidates) {
    if (dma.iova >= iova + size) break;
    if (!iommu.v2 && iova > dma.iova) break;
    if (invalidate) {
      if (dma.vaddrInvalid) {
        for (const t of touched) t.vaddrInvalid = false;
        fail(EINVAL);
      }
      dma.vaddrInvalid = true;
      touched.push(dma);
      unmapped += dma.size;
      continue;
    }
    iommu.notifyUnmap(dma); // the notifier makes vendor drivers unpin first
    if (bitmap !== undefined) {
      // On EFAULT the mappings already removed stay removed, and (like the
      // kernel) `size` is not copied back on error.
      updateUserBitmap(
        bitmap.data,
        dma as Dma & { bitmap: DirtyWords },
        iova,
        iommu.pgshift,
        iommu.numNonPinnedGroups > 0,
      );
    }
    unmapped += dma.size;
    iommu.removeDma(dma);
  }
  arg.write(16, u64Bytes(unmapped));
  return 0;
}
