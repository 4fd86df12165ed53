/**
 * The raw `VFIO_DEVICE_FEATURE_DMA_LOGGING_START/REPORT/STOP` calls on a
 * device fd (a driver with `vfio_log_ops`: mlx5, pds, mtty), and the range
 * merge QEMU applies when a driver limits the number of ranges. Errors name
 * the feature: `VFIO_DEVICE_FEATURE(DMA_LOGGING_START)` and its errno.
 *
 * @module
 */

import { IoctlError } from "../sys/errors.ts";
import { addressOf } from "../sys/host_memory.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_SET,
} from "./constants.ts";
import { VFIO_DEVICE_FEATURE } from "./ioctls.ts";
import {
  DEVICE_FEATURE_SIZE,
  DMA_LOGGING_RANGE_SIZE,
  encodeDeviceFeature,
  encodeDmaLoggingControl,
  encodeDmaLoggingReport,
} from "./uapi/device_feature.ts";

/** The vfio core's `LOG_MAX_RANGES` on 4 KiB pages: a START with more answers `E2BIG`. */
export const DMA_LOGGING_MAX_RANGES = 256;

/** One IOVA range a device's DMA log covers. */
export interface DmaLoggingRange {
  /** The first IOVA. */
  readonly iova: bigint;
  /** Bytes. */
  readonly length: bigint;
}

function call(
  sys: Syscalls,
  fd: number,
  what: string,
  flags: number,
  payload: Uint8Array,
): Uint8Array {
  const buf = encodeDeviceFeature(flags, payload);
  try {
    sys.ioctl(fd, VFIO_DEVICE_FEATURE, buf);
  } catch (e) {
    if (e instanceof IoctlError) {
      throw new IoctlError(`VFIO_DEVICE_FEATURE(${what})`, e.errno, { cause: e });
    }
    throw e;
  }
  return buf.subarray(DEVICE_FEATURE_SIZE);
}

/**
 * `SET` of `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`.
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @param options The page size hint and the ranges (non-overlapping, page aligned).
 * @returns The page size the driver chose.
 * @throws {IoctlError} `VFIO_DEVICE_FEATURE(DMA_LOGGING_START)` with the errno
 *   (`E2BIG` for too many ranges, `EINVAL` for bad ones).
 */
export function startDmaLogging(
  sys: Syscalls,
  fd: number,
  options: { pageSize: bigint; ranges: readonly DmaLoggingRange[] },
): bigint {
  const ranges = new Uint8Array(Math.max(1, options.ranges.length) * DMA_LOGGING_RANGE_SIZE);
  const v = new DataView(ranges.buffer);
  options.ranges.forEach((r, i) => {
    v.setBigUint64(i * DMA_LOGGING_RANGE_SIZE, r.iova, true);
    v.setBigUint64(i * DMA_LOGGING_RANGE_SIZE + 8, r.length, true);
  });
  const control = encodeDmaLoggingControl({
    pageSize: options.pageSize,
    numRanges: options.ranges.length,
    ranges: addressOf(ranges),
  });
  const out = call(
    sys,
    fd,
    "DMA_LOGGING_START",
    VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
    control,
  );
  return new DataView(out.buffer, out.byteOffset, 8).getBigUint64(0, true);
}

/**
 * `GET` of `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`: sets (never clears) one
 * bit per dirty page of the range in `bitmap` and clears the device's log
 * for it. Pass a zeroed bitmap.
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @param options The range, the bitmap's page size and the bitmap
 *   (at least `ceil(length / pageSize / 64) * 8` bytes).
 * @throws {RangeError} For a bitmap too small for the range.
 * @throws {IoctlError} `VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)` with the
 *   errno (`EOPNOTSUPP` on a kernel without the iova_bitmap helpers).
 */
export function reportDmaLogging(
  sys: Syscalls,
  fd: number,
  options: { iova: bigint; length: bigint; pageSize: bigint; bitmap: Uint8Array },
): void {
  const bits = options.length / options.pageSize;
  const need = Number((bits + 63n) / 64n) * 8;
  if (options.bitmap.byteLength < need) {
    throw new RangeError(
      `Cannot report ${bits} pages of DMA log into ${options.bitmap.byteLength} bytes (need ${need})`,
    );
  }
  call(
    sys,
    fd,
    "DMA_LOGGING_REPORT",
    VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
    encodeDmaLoggingReport({
      iova: options.iova,
      length: options.length,
      pageSize: options.pageSize,
      bitmap: addressOf(options.bitmap),
    }),
  );
}

/**
 * `SET` of `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @throws {IoctlError} `VFIO_DEVICE_FEATURE(DMA_LOGGING_STOP)` with the errno.
 */
export function stopDmaLogging(sys: Syscalls, fd: number): void {
  call(
    sys,
    fd,
    "DMA_LOGGING_STOP",
    VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
    new Uint8Array(0),
  );
}

/**
 * Sorts ranges, joins those that touch or overlap, then, while more than
 * `max` remain, joins the two neighbours with the smallest gap between them
 * (as the vfio core's `vfio_combine_iova_ranges` does for a driver's limit;
 * QEMU's `vfio_dma_logging_start` likewise narrows to fewer, wider ranges).
 * The result covers every input byte, and the gaps merged in besides.
 *
 * @param ranges The ranges.
 * @param max The most ranges wanted (at least 1).
 * @returns At most `max` sorted, disjoint ranges.
 * @throws {RangeError} For `max` below 1.
 *
 * @example
 * ```ts
 * import { mergeDmaLoggingRanges } from "./device_dma_logging.ts";
 * const r = mergeDmaLoggingRanges([{ iova: 0n, length: 4096n }, { iova: 8192n, length: 4096n }], 1);
 * console.log(r); // [ { iova: 0n, length: 12288n } ]
 * ```
 */
export function mergeDmaLoggingRanges(
  ranges: readonly DmaLoggingRange[],
  max: number,
): DmaLoggingRange[] {
  if (!Number.isInteger(max) || max < 1) {
    throw new RangeError(`Cannot merge DMA logging ranges into ${max}`);
  }
  const sorted = [...ranges].filter((r) => r.length > 0n).sort((a, b) =>
    a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0
  );
  const out: { iova: bigint; end: bigint }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.iova <= last.end) {
      if (r.iova + r.length > last.end) last.end = r.iova + r.length;
    } else out.push({ iova: r.iova, end: r.iova + r.length });
  }
  while (out.length > max) {
    let best = 0;
    for (let i = 1; i < out.length - 1; i++) {
      if (out[i + 1].iova - out[i].end < out[best + 1].iova - out[best].end) best = i;
    }
    out[best].end = out[best + 1].end;
    out.splice(best + 1, 1);
  }
  return out.map((r) => ({ iova: r.iova, length: r.end - r.iova }));
}
