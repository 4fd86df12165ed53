/**
 * Codecs for `struct vfio_device_info`, `struct vfio_region_info` (with its
 * capability chain) and `struct vfio_irq_info`.
 *
 * @module
 */

import { VFIO_REGION_INFO_FLAG_CAPS } from "../constants.ts";
import { type RawCap, walkCapChain } from "./cap_chain.ts";

/** `sizeof(struct vfio_device_info)` in the 6.1 headers (newer headers add 4 bytes of padding). */
export const DEVICE_INFO_SIZE = 20;
/** `sizeof(struct vfio_region_info)`. */
export const REGION_INFO_SIZE = 32;
/** `sizeof(struct vfio_irq_info)`. */
export const IRQ_INFO_SIZE = 16;
/** Region cap id: sparse mmap areas. */
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
/** Region cap id: region type. */
export const VFIO_REGION_INFO_CAP_TYPE = 2;

/** What `VFIO_DEVICE_GET_INFO` reports. */
export interface DeviceInfo {
  /** `VFIO_DEVICE_FLAGS_*`. */
  readonly flags: number;
  /** How many regions the device has. */
  readonly numRegions: number;
  /** How many IRQ indexes the device has. */
  readonly numIrqs: number;
  /** `cap_offset` (0 when none). */
  readonly capOffset: number;
}

/** What `VFIO_DEVICE_GET_REGION_INFO` reports. */
export interface RegionInfo {
  /** The region index. */
  readonly index: number;
  /** `VFIO_REGION_INFO_FLAG_*`. */
  readonly flags: number;
  /** Bytes. */
  readonly size: bigint;
  /** The offset of the region in the device fd (`pread`, `pwrite`, `mmap`). */
  readonly offset: bigint;
  /** Sparse mmap areas, when the region has that cap. */
  readonly sparseMmap?: readonly { readonly offset: bigint; readonly size: bigint }[];
  /** The region type, when the region has that cap. */
  readonly type?: { readonly type: number; readonly subtype: number };
  /** The caps, raw, in chain order. */
  readonly caps: readonly RawCap[];
}

/** What `VFIO_DEVICE_GET_IRQ_INFO` reports. */
export interface IrqInfo {
  /** The IRQ index. */
  readonly index: number;
  /** `VFIO_IRQ_INFO_*`. */
  readonly flags: number;
  /** How many vectors. */
  readonly count: number;
}

/**
 * Encodes a `VFIO_DEVICE_GET_INFO` request.
 *
 * @returns 20 bytes with `argsz` set.
 *
 * @example
 * ```ts
 * import { encodeDeviceInfoRequest } from "./device_info.ts";
 * console.log(encodeDeviceInfoRequest().byteLength); // 20
 * ```
 */
export function encodeDeviceInfoRequest(): Uint8Array {
  const buf = new Uint8Array(DEVICE_INFO_SIZE);
  new DataView(buf.buffer).setUint32(0, DEVICE_INFO_SIZE, true);
  return buf;
}

/**
 * Decodes a `VFIO_DEVICE_GET_INFO` reply.
 *
 * @param buf The reply.
 * @returns The info.
 *
 * @example
 * ```ts
 * import { decodeDeviceInfo, encodeDeviceInfoRequest } from "./device_info.ts";
 * console.log(decodeDeviceInfo(encodeDeviceInfoRequest()).numRegions); // 0
 * ```
 */
export function decodeDeviceInfo(buf: Uint8Array): DeviceInfo {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    flags: v.getUint32(4, true),
    numRegions: v.getUint32(8, true),
    numIrqs: v.getUint32(12, true),
    capOffset: v.getUint32(16, true),
  };
}

/**
 * Encodes a `VFIO_DEVICE_GET_REGION_INFO` request.
 *
 * @param index The region index.
 * @param argsz The size to offer (at least 32; more to receive caps).
 * @returns The request.
 *
 * @example
 * ```ts
 * import { encodeRegionInfoRequest } from "./device_info.ts";
 * console.log(encodeRegionInfoRequest(7).byteLength); // 32
 * ```
 */
export function encodeRegionInfoRequest(
  index: number,
  argsz: number = REGION_INFO_SIZE,
): Uint8Array {
  const buf = new Uint8Array(Math.max(argsz, REGION_INFO_SIZE));
  const v = new DataView(buf.buffer);
  v.setUint32(0, argsz, true);
  v.setUint32(8, index, true);
  return buf;
}

/**
 * Decodes a `VFIO_DEVICE_GET_REGION_INFO` reply, caps included.
 *
 * @param buf The reply.
 * @returns The region info.
 * @throws {CapChainError} If the cap chain is malformed.
 *
 * @example
 * ```ts
 * import { decodeRegionInfo, encodeRegionInfoRequest } from "./device_info.ts";
 * console.log(decodeRegionInfo(encodeRegionInfoRequest(0)).size); // 0n
 * ```
 */
export function decodeRegionInfo(buf: Uint8Array): RegionInfo {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const flags = v.getUint32(4, true);
  const capOffset = flags & VFIO_REGION_INFO_FLAG_CAPS ? v.getUint32(12, true) : 0;
  const caps = walkCapChain(buf, capOffset, REGION_INFO_SIZE);
  let sparseMmap: { offset: bigint; size: bigint }[] | undefined;
  let type: { type: number; subtype: number } | undefined;
  for (const cap of caps) {
    const c = new DataView(cap.bytes.buffer, cap.bytes.byteOffset, cap.bytes.byteLength);
    if (cap.id === VFIO_REGION_INFO_CAP_SPARSE_MMAP && cap.bytes.byteLength >= 16) {
      const n = c.getUint32(8, true);
      sparseMmap = [];
      for (let i = 0; i < n && 16 + (i + 1) * 16 <= cap.bytes.byteLength; i++) {
        sparseMmap.push({
          offset: c.getBigUint64(16 + i * 16, true),
          size: c.getBigUint64(24 + i * 16, true),
        });
      }
    } else if (cap.id === VFIO_REGION_INFO_CAP_TYPE && cap.bytes.byteLength >= 16) {
      type = { type: c.getUint32(8, true), subtype: c.getUint32(12, true) };
    }
  }
  return {
    index: v.getUint32(8, true),
    flags,
    size: v.getBigUint64(16, true),
    offset: v.getBigUint64(24, true),
    ...(sparseMmap ? { sparseMmap } : {}),
    ...(type ? { type } : {}),
    caps,
  };
}

/**
 * Encodes a `VFIO_DEVICE_GET_IRQ_INFO` request.
 *
 * @param index The IRQ index.
 * @returns 16 bytes.
 *
 * @example
 * ```ts
 * import { encodeIrqInfoRequest } from "./device_info.ts";
 * console.log(encodeIrqInfoRequest(0).byteLength); // 16
 * ```
 */
export function encodeIrqInfoRequest(index: number): Uint8Array {
  const buf = new Uint8Array(IRQ_INFO_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, IRQ_INFO_SIZE, true);
  v.setUint32(8, index, true);
  return buf;
}

/**
 * Decodes a `VFIO_DEVICE_GET_IRQ_INFO` reply.
 *
 * @param buf The reply.
 * @returns The IRQ info.
 *
 * @example
 * ```ts
 * import { decodeIrqInfo, encodeIrqInfoRequest } from "./device_info.ts";
 * console.log(decodeIrqInfo(encodeIrqInfoRequest(2)).index); // 2
 * ```
 */
export function decodeIrqInfo(buf: Uint8Array): IrqInfo {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return { flags: v.getUint32(4, true), index: v.getUint32(8, true), count: v.getUint32(12, true) };
}
