/**
 * Codecs for `struct vfio_iommu_type1_dma_map`, `struct vfio_iommu_type1_dma_unmap`
 * and `struct vfio_bitmap`. `argsz` is filled in here; callers never set it.
 *
 * @module
 */

/** `sizeof(struct vfio_iommu_type1_dma_map)`. */
export const DMA_MAP_SIZE = 32;
/** `sizeof(struct vfio_iommu_type1_dma_unmap)` without data. */
export const DMA_UNMAP_SIZE = 24;
/** `sizeof(struct vfio_bitmap)`. */
export const VFIO_BITMAP_SIZE = 24;
/** `argsz` of an unmap carrying a `vfio_bitmap`. */
export const DMA_UNMAP_BITMAP_SIZE: number = DMA_UNMAP_SIZE + VFIO_BITMAP_SIZE;

/** The fields of `struct vfio_iommu_type1_dma_map`. */
export interface DmaMap {
  /** `VFIO_DMA_MAP_FLAG_*`. */
  readonly flags: number;
  /** The host virtual address of the memory. */
  readonly vaddr: bigint;
  /** The IOVA the device will use. */
  readonly iova: bigint;
  /** Bytes. */
  readonly size: bigint;
}

/** The fields of `struct vfio_bitmap`. */
export interface VfioBitmap {
  /** The page size each bit stands for. */
  readonly pgsize: bigint;
  /** The bitmap size in bytes. */
  readonly size: bigint;
  /** The host address of the bitmap memory. */
  readonly data: bigint;
}

/** The fields of `struct vfio_iommu_type1_dma_unmap`, with the optional bitmap. */
export interface DmaUnmap {
  /** `VFIO_DMA_UNMAP_FLAG_*`. */
  readonly flags: number;
  /** The first IOVA. */
  readonly iova: bigint;
  /** Bytes. */
  readonly size: bigint;
  /** The dirty bitmap, with `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`. */
  readonly bitmap?: VfioBitmap;
}

/**
 * Encodes a `VFIO_IOMMU_MAP_DMA` argument.
 *
 * @param map The fields.
 * @returns 32 bytes.
 *
 * @example
 * ```ts
 * import { encodeDmaMap } from "./dma.ts";
 * const b = encodeDmaMap({ flags: 3, vaddr: 0x7f00_0000_0000n, iova: 0n, size: 4096n });
 * console.log(b.byteLength); // 32
 * ```
 */
export function encodeDmaMap(map: DmaMap): Uint8Array {
  const buf = new Uint8Array(DMA_MAP_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, DMA_MAP_SIZE, true);
  v.setUint32(4, map.flags, true);
  v.setBigUint64(8, map.vaddr, true);
  v.setBigUint64(16, map.iova, true);
  v.setBigUint64(24, map.size, true);
  return buf;
}

/**
 * Decodes a `VFIO_IOMMU_MAP_DMA` argument.
 *
 * @param buf The bytes.
 * @returns The fields and `argsz`.
 *
 * @example
 * ```ts
 * import { decodeDmaMap, encodeDmaMap } from "./dma.ts";
 * console.log(decodeDmaMap(encodeDmaMap({ flags: 3, vaddr: 1n, iova: 2n, size: 3n })).iova); // 2n
 * ```
 */
export function decodeDmaMap(buf: Uint8Array): DmaMap & { argsz: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    vaddr: v.getBigUint64(8, true),
    iova: v.getBigUint64(16, true),
    size: v.getBigUint64(24, true),
  };
}

/**
 * Writes a `struct vfio_bitmap` at an offset.
 *
 * @param v The containing struct.
 * @param at The offset.
 * @param bitmap The fields.
 *
 * @example
 * ```ts
 * import { writeVfioBitmap } from "./dma.ts";
 * writeVfioBitmap(new DataView(new ArrayBuffer(24)), 0, { pgsize: 4096n, size: 8n, data: 0n });
 * ```
 */
export function writeVfioBitmap(v: DataView, at: number, bitmap: VfioBitmap): void {
  v.setBigUint64(at, bitmap.pgsize, true);
  v.setBigUint64(at + 8, bitmap.size, true);
  v.setBigUint64(at + 16, bitmap.data, true);
}

/**
 * Reads a `struct vfio_bitmap` at an offset.
 *
 * @param v The containing struct.
 * @param at The offset.
 * @returns The fields.
 *
 * @example
 * ```ts
 * import { readVfioBitmap } from "./dma.ts";
 * console.log(readVfioBitmap(new DataView(new ArrayBuffer(24)), 0).size); // 0n
 * ```
 */
export function readVfioBitmap(v: DataView, at: number): VfioBitmap {
  return {
    pgsize: v.getBigUint64(at, true),
    size: v.getBigUint64(at + 8, true),
    data: v.getBigUint64(at + 16, true),
  };
}

/**
 * Encodes a `VFIO_IOMMU_UNMAP_DMA` argument; with a bitmap, `argsz` is 48.
 *
 * @param unmap The fields.
 * @returns 24 or 48 bytes.
 *
 * @example
 * ```ts
 * import { encodeDmaUnmap } from "./dma.ts";
 * console.log(encodeDmaUnmap({ flags: 0, iova: 0n, size: 4096n }).byteLength); // 24
 * ```
 */
export function encodeDmaUnmap(unmap: DmaUnmap): Uint8Array {
  const size = unmap.bitmap ? DMA_UNMAP_BITMAP_SIZE : DMA_UNMAP_SIZE;
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  v.setUint32(0, size, true);
  v.setUint32(4, unmap.flags, true);
  v.setBigUint64(8, unmap.iova, true);
  v.setBigUint64(16, unmap.size, true);
  if (unmap.bitmap) writeVfioBitmap(v, DMA_UNMAP_SIZE, unmap.bitmap);
  return buf;
}

/**
 * Decodes a `VFIO_IOMMU_UNMAP_DMA` argument (the kernel writes back `size`).
 *
 * @param buf The bytes.
 * @returns The fields and `argsz`; `bitmap` when `argsz` covers one.
 *
 * @example
 * ```ts
 * import { decodeDmaUnmap, encodeDmaUnmap } from "./dma.ts";
 * console.log(decodeDmaUnmap(encodeDmaUnmap({ flags: 0, iova: 0n, size: 8192n })).size); // 8192n
 * ```
 */
export function decodeDmaUnmap(buf: Uint8Array): DmaUnmap & { argsz: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const argsz = v.getUint32(0, true);
  const out: DmaUnmap & { argsz: number } = {
    argsz,
    flags: v.getUint32(4, true),
    iova: v.getBigUint64(8, true),
    size: v.getBigUint64(16, true),
  };
  if (argsz >= DMA_UNMAP_BITMAP_SIZE && buf.byteLength >= DMA_UNMAP_BITMAP_SIZE) {
    return { ...out, bitmap: readVfioBitmap(v, DMA_UNMAP_SIZE) };
  }
  return out;
}
