/**
 * Codecs for `struct vfio_device_feature` and the migration v2 payloads:
 * `vfio_device_feature_migration`, `vfio_device_feature_mig_state`,
 * `vfio_device_feature_mig_data_size`, `vfio_precopy_info`, and the DMA logging
 * structs.
 *
 * @module
 */

/** `sizeof(struct vfio_device_feature)` without data. */
export const DEVICE_FEATURE_SIZE = 8;
/** `sizeof(struct vfio_device_feature_migration)`. */
export const FEATURE_MIGRATION_SIZE = 8;
/** `sizeof(struct vfio_device_feature_mig_state)`. */
export const FEATURE_MIG_STATE_SIZE = 8;
/** `sizeof(struct vfio_device_feature_mig_data_size)`. */
export const FEATURE_MIG_DATA_SIZE_SIZE = 8;
/** `sizeof(struct vfio_precopy_info)`. */
export const PRECOPY_INFO_SIZE = 24;
/** `sizeof(struct vfio_device_feature_dma_logging_control)`. */
export const DMA_LOGGING_CONTROL_SIZE = 24;
/** `sizeof(struct vfio_device_feature_dma_logging_range)`. */
export const DMA_LOGGING_RANGE_SIZE = 16;
/** `sizeof(struct vfio_device_feature_dma_logging_report)`. */
export const DMA_LOGGING_REPORT_SIZE = 32;

/**
 * Encodes a `VFIO_DEVICE_FEATURE` argument: the header and a payload.
 *
 * @param flags The feature number and `VFIO_DEVICE_FEATURE_GET|SET|PROBE`.
 * @param payload The feature payload (may be empty).
 * @returns The bytes, `argsz` filled in.
 *
 * @example
 * ```ts
 * import { encodeDeviceFeature } from "./device_feature.ts";
 * console.log(encodeDeviceFeature(1 | (1 << 16), new Uint8Array(8)).byteLength); // 16
 * ```
 */
export function encodeDeviceFeature(flags: number, payload: Uint8Array): Uint8Array {
  const buf = new Uint8Array(DEVICE_FEATURE_SIZE + payload.byteLength);
  const v = new DataView(buf.buffer);
  v.setUint32(0, buf.byteLength, true);
  v.setUint32(4, flags, true);
  buf.set(payload, DEVICE_FEATURE_SIZE);
  return buf;
}

/**
 * Decodes a `VFIO_DEVICE_FEATURE` argument.
 *
 * @param buf The bytes.
 * @returns `argsz`, `flags` and a view of the payload.
 *
 * @example
 * ```ts
 * import { decodeDeviceFeature, encodeDeviceFeature } from "./device_feature.ts";
 * console.log(decodeDeviceFeature(encodeDeviceFeature(2, new Uint8Array(8))).argsz); // 16
 * ```
 */
export function decodeDeviceFeature(
  buf: Uint8Array,
): { argsz: number; flags: number; payload: Uint8Array } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    argsz: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    payload: buf.subarray(DEVICE_FEATURE_SIZE),
  };
}

/**
 * Encodes `struct vfio_device_feature_mig_state`.
 *
 * @param deviceState `VFIO_DEVICE_STATE_*`.
 * @param dataFd The data fd (-1 when none; the kernel writes it back).
 * @returns 8 bytes.
 *
 * @example
 * ```ts
 * import { encodeMigState } from "./device_feature.ts";
 * console.log(encodeMigState(3).byteLength); // 8
 * ```
 */
export function encodeMigState(deviceState: number, dataFd = -1): Uint8Array {
  const buf = new Uint8Array(FEATURE_MIG_STATE_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, deviceState, true);
  v.setInt32(4, dataFd, true);
  return buf;
}

/**
 * Decodes `struct vfio_device_feature_mig_state`.
 *
 * @param buf The payload.
 * @returns The state and data fd.
 *
 * @example
 * ```ts
 * import { decodeMigState, encodeMigState } from "./device_feature.ts";
 * console.log(decodeMigState(encodeMigState(2)).dataFd); // -1
 * ```
 */
export function decodeMigState(buf: Uint8Array): { deviceState: number; dataFd: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return { deviceState: v.getUint32(0, true), dataFd: v.getInt32(4, true) };
}

/**
 * Decodes a u64 payload: `vfio_device_feature_migration.flags` or
 * `vfio_device_feature_mig_data_size.stop_copy_length`.
 *
 * @param buf The payload.
 * @returns The value.
 *
 * @example
 * ```ts
 * import { decodeU64Payload } from "./device_feature.ts";
 * console.log(decodeU64Payload(new Uint8Array(8))); // 0n
 * ```
 */
export function decodeU64Payload(buf: Uint8Array): bigint {
  return new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
}

/**
 * Encodes a `VFIO_MIG_GET_PRECOPY_INFO` request.
 *
 * @returns 24 bytes with `argsz` set.
 *
 * @example
 * ```ts
 * import { encodePrecopyInfoRequest } from "./device_feature.ts";
 * console.log(encodePrecopyInfoRequest().byteLength); // 24
 * ```
 */
export function encodePrecopyInfoRequest(): Uint8Array {
  const buf = new Uint8Array(PRECOPY_INFO_SIZE);
  new DataView(buf.buffer).setUint32(0, PRECOPY_INFO_SIZE, true);
  return buf;
}

/**
 * Decodes `struct vfio_precopy_info`.
 *
 * @param buf The reply.
 * @returns The initial and dirty byte counts.
 *
 * @example
 * ```ts
 * import { decodePrecopyInfo, encodePrecopyInfoRequest } from "./device_feature.ts";
 * console.log(decodePrecopyInfo(encodePrecopyInfoRequest()).dirtyBytes); // 0n
 * ```
 */
export function decodePrecopyInfo(
  buf: Uint8Array,
): { flags: number; initialBytes: bigint; dirtyBytes: bigint } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    flags: v.getUint32(4, true),
    initialBytes: v.getBigUint64(8, true),
    dirtyBytes: v.getBigUint64(16, true),
  };
}

/**
 * Encodes `struct vfio_device_feature_dma_logging_control`.
 *
 * @param control The page size hint, range count and the address of the range array.
 * @returns 24 bytes.
 *
 * @example
 * ```ts
 * import { encodeDmaLoggingControl } from "./device_feature.ts";
 * console.log(encodeDmaLoggingControl({ pageSize: 4096n, numRanges: 1, ranges: 0n }).byteLength); // 24
 * ```
 */
export function encodeDmaLoggingControl(
  control: { pageSize: bigint; numRanges: number; ranges: bigint },
): Uint8Array {
  const buf = new Uint8Array(DMA_LOGGING_CONTROL_SIZE);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, control.pageSize, true);
  v.setUint32(8, control.numRanges, true);
  v.setBigUint64(16, control.ranges, true);
  return buf;
}

/**
 * Encodes `struct vfio_device_feature_dma_logging_report`.
 *
 * @param report The range, page size and the address of the bitmap.
 * @returns 32 bytes.
 *
 * @example
 * ```ts
 * import { encodeDmaLoggingReport } from "./device_feature.ts";
 * console.log(encodeDmaLoggingReport({ iova: 0n, length: 4096n, pageSize: 4096n, bitmap: 0n }).byteLength); // 32
 * ```
 */
export function encodeDmaLoggingReport(
  report: { iova: bigint; length: bigint; pageSize: bigint; bitmap: bigint },
): Uint8Array {
  const buf = new Uint8Array(DMA_LOGGING_REPORT_SIZE);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, report.iova, true);
  v.setBigUint64(8, report.length, true);
  v.setBigUint64(16, report.pageSize, true);
  v.setBigUint64(24, report.bitmap, true);
  return buf;
}
