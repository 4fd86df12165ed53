/**
 * Codecs for the iommufd object and IOAS structs (`linux/iommufd.h`, 6.12):
 * `struct iommu_destroy`, `iommu_ioas_alloc`, `iommu_ioas_map`,
 * `iommu_ioas_unmap`. iommufd structs start with `size` (the caller's
 * `sizeof`); the codecs fill it.
 *
 * @module
 */

/** `sizeof(struct iommu_destroy)`. */
export const IOMMU_DESTROY_SIZE = 8;
/** `sizeof(struct iommu_ioas_alloc)`. */
export const IOMMU_IOAS_ALLOC_SIZE = 12;
/** `sizeof(struct iommu_ioas_map)`. */
export const IOMMU_IOAS_MAP_SIZE = 40;
/** `sizeof(struct iommu_ioas_unmap)`. */
export const IOMMU_IOAS_UNMAP_SIZE = 24;

function sized(size: number): { buf: Uint8Array; v: DataView } {
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  v.setUint32(0, size, true);
  return { buf, v };
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Encodes `struct iommu_destroy`.
 *
 * @param id The object to destroy.
 * @returns The struct.
 *
 * @example
 * ```ts
 * import { encodeDestroy } from "./ioas.ts";
 * console.log(encodeDestroy(3).byteLength); // 8
 * ```
 */
export function encodeDestroy(id: number): Uint8Array {
  const { buf, v } = sized(IOMMU_DESTROY_SIZE);
  v.setUint32(4, id, true);
  return buf;
}

/**
 * Encodes `struct iommu_ioas_alloc` (flags 0).
 *
 * @returns The struct; the kernel writes `out_ioas_id` at offset 8.
 *
 * @example
 * ```ts
 * import { decodeIoasAlloc, encodeIoasAlloc } from "./ioas.ts";
 * console.log(decodeIoasAlloc(encodeIoasAlloc())); // 0
 * ```
 */
export function encodeIoasAlloc(): Uint8Array {
  return sized(IOMMU_IOAS_ALLOC_SIZE).buf;
}

/**
 * Reads `out_ioas_id` from an `IOMMU_IOAS_ALLOC` reply.
 *
 * @param buf The reply.
 * @returns The IOAS id.
 */
export function decodeIoasAlloc(buf: Uint8Array): number {
  return view(buf).getUint32(8, true);
}

/** The fields of `struct iommu_ioas_map`. */
export interface IoasMap {
  /** `IOMMU_IOAS_MAP_*`. */
  flags: number;
  /** The IOAS. */
  ioasId: number;
  /** Host virtual address of the first byte. */
  userVa: bigint;
  /** Bytes. */
  length: bigint;
  /** The IOVA (in with `IOMMU_IOAS_MAP_FIXED_IOVA`, else out). */
  iova: bigint;
}

/**
 * Encodes `struct iommu_ioas_map`.
 *
 * @param map The fields.
 * @returns The struct.
 *
 * @example
 * ```ts
 * import { decodeIoasMap, encodeIoasMap } from "./ioas.ts";
 * const buf = encodeIoasMap({ flags: 7, ioasId: 2, userVa: 0x7f00n, length: 4096n, iova: 1n << 24n });
 * console.log(decodeIoasMap(buf).iova); // 16777216n
 * ```
 */
export function encodeIoasMap(map: IoasMap): Uint8Array {
  const { buf, v } = sized(IOMMU_IOAS_MAP_SIZE);
  v.setUint32(4, map.flags, true);
  v.setUint32(8, map.ioasId, true);
  v.setBigUint64(16, map.userVa, true);
  v.setBigUint64(24, map.length, true);
  v.setBigUint64(32, map.iova, true);
  return buf;
}

/**
 * Decodes `struct iommu_ioas_map`.
 *
 * @param buf The struct.
 * @returns The fields.
 */
export function decodeIoasMap(buf: Uint8Array): IoasMap {
  const v = view(buf);
  return {
    flags: v.getUint32(4, true),
    ioasId: v.getUint32(8, true),
    userVa: v.getBigUint64(16, true),
    length: v.getBigUint64(24, true),
    iova: v.getBigUint64(32, true),
  };
}

/**
 * Encodes `struct iommu_ioas_unmap`.
 *
 * @param unmap The IOAS, first IOVA and length (0 and `U64_MAX` unmap everything).
 * @returns The struct; the kernel writes the bytes unmapped into `length` (offset 16).
 *
 * @example
 * ```ts
 * import { decodeIoasUnmapLength, encodeIoasUnmap } from "./ioas.ts";
 * console.log(decodeIoasUnmapLength(encodeIoasUnmap({ ioasId: 2, iova: 0n, length: 4096n }))); // 4096n
 * ```
 */
export function encodeIoasUnmap(
  unmap: { ioasId: number; iova: bigint; length: bigint },
): Uint8Array {
  const { buf, v } = sized(IOMMU_IOAS_UNMAP_SIZE);
  v.setUint32(4, unmap.ioasId, true);
  v.setBigUint64(8, unmap.iova, true);
  v.setBigUint64(16, unmap.length, true);
  return buf;
}

/**
 * Reads the bytes unmapped from an `IOMMU_IOAS_UNMAP` reply.
 *
 * @param buf The reply.
 * @returns `length`.
 */
export function decodeIoasUnmapLength(buf: Uint8Array): bigint {
  return view(buf).getBigUint64(16, true);
}
