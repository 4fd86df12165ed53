/**
 * Codecs for `struct vfio_iommu_type1_dirty_bitmap` and
 * `struct vfio_iommu_type1_dirty_bitmap_get`, the arguments of
 * `VFIO_IOMMU_DIRTY_PAGES`.
 *
 * @module
 */

import { readVfioBitmap, type VfioBitmap, writeVfioBitmap } from "./dma.ts";

/** `sizeof(struct vfio_iommu_type1_dirty_bitmap)` without data. */
export const DIRTY_BITMAP_SIZE = 8;
/** `sizeof(struct vfio_iommu_type1_dirty_bitmap_get)`. */
export const DIRTY_BITMAP_GET_SIZE = 40;
/** `argsz` of a GET_BITMAP request: the header and the get struct. */
export const DIRTY_BITMAP_GET_ARGSZ: number = DIRTY_BITMAP_SIZE + DIRTY_BITMAP_GET_SIZE;

/** A `VFIO_IOMMU_DIRTY_PAGES` request. */
export interface DirtyPagesRequest {
  /** `VFIO_IOMMU_DIRTY_PAGES_FLAG_*`. */
  readonly flags: number;
  /** The range and bitmap, with `GET_BITMAP`. */
  readonly get?: { readonly iova: bigint; readonly size: bigint; readonly bitmap: VfioBitmap };
}

/**
 * Encodes a `VFIO_IOMMU_DIRTY_PAGES` argument: 8 bytes for START/STOP, 48 for GET_BITMAP.
 *
 * @param req The request.
 * @returns The bytes, `argsz` filled in.
 *
 * @example
 * ```ts
 * import { encodeDirtyPages } from "./dirty_pages.ts";
 * console.log(encodeDirtyPages({ flags: 1 }).byteLength); // 8
 * ```
 */
export function encodeDirtyPages(req: DirtyPagesRequest): Uint8Array {
  const size = req.get ? DIRTY_BITMAP_GET_ARGSZ : DIRTY_BITMAP_SIZE;
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  v.setUint32(0, size, true);
  v.setUint32(4, req.flags, true);
  if (req.get) {
    v.setBigUint64(8, req.get.iova, true);
    v.setBigUint64(16, req.get.size, true);
    writeVfioBitmap(v, 24, req.get.bitmap);
  }
  return buf;
}

/**
 * Decodes a `VFIO_IOMMU_DIRTY_PAGES` argument.
 *
 * @param buf The bytes.
 * @returns `argsz`, `flags`, and the get struct when `argsz` covers it.
 *
 * @example
 * ```ts
 * import { decodeDirtyPages, encodeDirtyPages } from "./dirty_pages.ts";
 * console.log(decodeDirtyPages(encodeDirtyPages({ flags: 2 })).flags); // 2
 * ```
 */
export function decodeDirtyPages(buf: Uint8Array): DirtyPagesRequest & { argsz: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const argsz = v.getUint32(0, true);
  const flags = v.getUint32(4, true);
  if (buf.byteLength >= DIRTY_BITMAP_GET_ARGSZ) {
    return {
      argsz,
      flags,
      get: {
        iova: v.getBigUint64(8, true),
        size: v.getBigUint64(16, true),
        bitmap: readVfioBitmap(v, 24),
      },
    };
  }
  return { argsz, flags };
}
