/**
 * Codecs for the iommufd hardware page table structs (`linux/iommufd.h`,
 * 6.12): `struct iommu_hw_info`, `iommu_hw_info_vtd`, `iommu_hwpt_alloc`,
 * `iommu_hwpt_set_dirty_tracking`, `iommu_hwpt_get_dirty_bitmap`.
 *
 * @module
 */

/** `sizeof(struct iommu_hw_info)`. */
export const IOMMU_HW_INFO_SIZE = 40;
/** `sizeof(struct iommu_hw_info_vtd)`. */
export const IOMMU_HW_INFO_VTD_SIZE = 24;
/** `sizeof(struct iommu_hwpt_alloc)` (6.12; 40 before `fault_id`). */
export const IOMMU_HWPT_ALLOC_SIZE = 48;
/** `sizeof(struct iommu_hwpt_set_dirty_tracking)`. */
export const IOMMU_HWPT_SET_DIRTY_TRACKING_SIZE = 16;
/** `sizeof(struct iommu_hwpt_get_dirty_bitmap)`. */
export const IOMMU_HWPT_GET_DIRTY_BITMAP_SIZE = 48;

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
 * Encodes an `IOMMU_GET_HW_INFO` request.
 *
 * @param request The device (`dev_id`), and where the vendor data goes.
 * @returns The struct.
 *
 * @example
 * ```ts
 * import { encodeHwInfo } from "./hwpt.ts";
 * console.log(encodeHwInfo({ devId: 1, dataLen: 0, dataUptr: 0n }).byteLength); // 40
 * ```
 */
export function encodeHwInfo(
  request: { devId: number; dataLen: number; dataUptr: bigint },
): Uint8Array {
  const { buf, v } = sized(IOMMU_HW_INFO_SIZE);
  v.setUint32(8, request.devId, true);
  v.setUint32(12, request.dataLen, true);
  v.setBigUint64(16, request.dataUptr, true);
  return buf;
}

/** What `IOMMU_GET_HW_INFO` wrote back. */
export interface HwInfoReply {
  /** Bytes of vendor data the kernel wrote (`data_len`). */
  dataLen: number;
  /** `IOMMU_HW_INFO_TYPE_*`. */
  dataType: number;
  /** `out_max_pasid_log2`. */
  maxPasidLog2: number;
  /** `IOMMU_HW_CAP_*`. */
  capabilities: bigint;
}

/**
 * Decodes an `IOMMU_GET_HW_INFO` reply.
 *
 * @param buf The reply.
 * @returns The fields the kernel wrote.
 */
export function decodeHwInfo(buf: Uint8Array): HwInfoReply {
  const v = view(buf);
  return {
    dataLen: v.getUint32(12, true),
    dataType: v.getUint32(24, true),
    maxPasidLog2: v.getUint8(28),
    capabilities: v.getBigUint64(32, true),
  };
}

/** `struct iommu_hw_info_vtd`: the VT-d registers `IOMMU_GET_HW_INFO` reports. */
export interface HwInfoVtd {
  /** `IOMMU_HW_INFO_VTD_*`. */
  flags: number;
  /** The capability register. */
  capReg: bigint;
  /** The extended capability register. */
  ecapReg: bigint;
}

/**
 * Decodes `struct iommu_hw_info_vtd`.
 *
 * @param buf At least 24 bytes.
 * @returns The registers.
 */
export function decodeHwInfoVtd(buf: Uint8Array): HwInfoVtd {
  const v = view(buf);
  return {
    flags: v.getUint32(0, true),
    capReg: v.getBigUint64(8, true),
    ecapReg: v.getBigUint64(16, true),
  };
}

/** The inputs of `struct iommu_hwpt_alloc`. */
export interface HwptAlloc {
  /** `IOMMU_HWPT_ALLOC_*`. */
  flags: number;
  /** The device the HWPT is for. */
  devId: number;
  /** The IOAS (or parent HWPT) it translates through. */
  ptId: number;
  /** `IOMMU_HWPT_DATA_*` (default none). */
  dataType?: number;
}

/**
 * Encodes `struct iommu_hwpt_alloc` (no driver data, no fault object).
 *
 * @param alloc The inputs.
 * @returns The struct; the kernel writes `out_hwpt_id` at offset 16.
 *
 * @example
 * ```ts
 * import { decodeHwptAllocId, encodeHwptAlloc } from "./hwpt.ts";
 * const buf = encodeHwptAlloc({ flags: 2, devId: 1, ptId: 2 });
 * console.log(buf.byteLength, decodeHwptAllocId(buf)); // 48 0
 * ```
 */
export function encodeHwptAlloc(alloc: HwptAlloc): Uint8Array {
  const { buf, v } = sized(IOMMU_HWPT_ALLOC_SIZE);
  v.setUint32(4, alloc.flags, true);
  v.setUint32(8, alloc.devId, true);
  v.setUint32(12, alloc.ptId, true);
  v.setUint32(24, alloc.dataType ?? 0, true);
  return buf;
}

/**
 * Reads `out_hwpt_id` from an `IOMMU_HWPT_ALLOC` reply.
 *
 * @param buf The reply.
 * @returns The HWPT id.
 */
export function decodeHwptAllocId(buf: Uint8Array): number {
  return view(buf).getUint32(16, true);
}

/**
 * Encodes `struct iommu_hwpt_set_dirty_tracking`.
 *
 * @param request The HWPT and `IOMMU_HWPT_DIRTY_TRACKING_ENABLE` (or 0 to disable).
 * @returns The struct.
 *
 * @example
 * ```ts
 * import { encodeSetDirtyTracking } from "./hwpt.ts";
 * console.log(encodeSetDirtyTracking({ hwptId: 4, flags: 1 }).byteLength); // 16
 * ```
 */
export function encodeSetDirtyTracking(request: { hwptId: number; flags: number }): Uint8Array {
  const { buf, v } = sized(IOMMU_HWPT_SET_DIRTY_TRACKING_SIZE);
  v.setUint32(4, request.flags, true);
  v.setUint32(8, request.hwptId, true);
  return buf;
}

/** The fields of `struct iommu_hwpt_get_dirty_bitmap`. */
export interface GetDirtyBitmap {
  /** The HWPT. */
  hwptId: number;
  /** `IOMMU_HWPT_GET_DIRTY_BITMAP_*`. */
  flags: number;
  /** The first IOVA. */
  iova: bigint;
  /** Bytes. */
  length: bigint;
  /** The page size one bit stands for. */
  pageSize: bigint;
  /** User address of the bitmap (u64 words, bit 0 = `iova`). */
  data: bigint;
}

/**
 * Encodes `struct iommu_hwpt_get_dirty_bitmap`.
 *
 * @param request The fields.
 * @returns The struct.
 *
 * @example
 * ```ts
 * import { encodeGetDirtyBitmap } from "./hwpt.ts";
 * const buf = encodeGetDirtyBitmap({ hwptId: 4, flags: 0, iova: 1n << 24n, length: 65536n, pageSize: 4096n, data: 0n });
 * console.log(buf.byteLength); // 48
 * ```
 */
export function encodeGetDirtyBitmap(request: GetDirtyBitmap): Uint8Array {
  const { buf, v } = sized(IOMMU_HWPT_GET_DIRTY_BITMAP_SIZE);
  v.setUint32(4, request.hwptId, true);
  v.setUint32(8, request.flags, true);
  v.setBigUint64(16, request.iova, true);
  v.setBigUint64(24, request.length, true);
  v.setBigUint64(32, request.pageSize, true);
  v.setBigUint64(40, request.data, true);
  return buf;
}

/**
 * Decodes `struct iommu_hwpt_get_dirty_bitmap`.
 *
 * @param buf The struct.
 * @returns The fields.
 */
export function decodeGetDirtyBitmap(buf: Uint8Array): GetDirtyBitmap {
  const v = view(buf);
  return {
    hwptId: v.getUint32(4, true),
    flags: v.getUint32(8, true),
    iova: v.getBigUint64(16, true),
    length: v.getBigUint64(24, true),
    pageSize: v.getBigUint64(32, true),
    data: v.getBigUint64(40, true),
  };
}
