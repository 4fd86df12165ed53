/**
 * `FakeDmaLoggingDevice`: a driver with `vfio_log_ops` for the fake kernel
 * (what mlx5, pds and mtty plug in), behind the vfio core's
 * `vfio_ioctl_device_feature_logging_start/stop/report`
 * (drivers/vfio/vfio_main.c, 6.12). Pass it as a device's `features` option.
 *
 * The core's checks are modelled: `vfio_check_feature` (PROBE answers 0,
 * GET/SET the feature lacks and a short payload are `EINVAL`); START with no
 * ranges is `EINVAL`, with more than `LOG_MAX_RANGES` (256) `E2BIG`, with a
 * range not aligned to the page size `EINVAL`, an overflowing one
 * `EOVERFLOW`, overlapping ones `EINVAL`; REPORT with a page size under
 * 4 KiB or not a power of two `EINVAL`, an overflowing range `EOVERFLOW`,
 * and then, as `iova_bitmap_set` does, only sets bits in the user's bitmap.
 * The driver part (`log_start`, `log_read_and_clear`) follows mlx5: a second
 * START and a REPORT while not logging are `EINVAL`; STOP is always 0. With
 * `bitmapHelpers: false` REPORT answers `EOPNOTSUPP`, as on a kernel built
 * without `CONFIG_IOMMUFD_DRIVER` (Debian's), where `iova_bitmap_for_each`
 * is a stub.
 *
 * @module
 */

import { E2BIG, EINVAL, ENOTTY, EOPNOTSUPP, EOVERFLOW } from "../../sys/errno.ts";
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from "../../vfio/constants.ts";
import type { DeviceFeatureHandler } from "./device.ts";
import {
  copyFromUser,
  copyToUser,
  fail,
  u32,
  u64,
  U64_MAX,
  u64Bytes,
  type UserArg,
} from "./user_memory.ts";

/** Options of {@linkcode FakeDmaLoggingDevice}. */
export interface FakeDmaLoggingDeviceOptions {
  /**
   * Whether the kernel has the iova_bitmap helpers (default true: a kernel
   * with `CONFIG_IOMMUFD_DRIVER`); false makes REPORT answer `EOPNOTSUPP`.
   */
  readonly bitmapHelpers?: boolean;
  /** The most ranges the driver's `log_start` accepts; more answer `E2BIG` (default 256). */
  readonly maxRanges?: number;
  /** The page size the driver picks whatever the hint (default: the hint). */
  readonly pageSize?: bigint;
}

const LOG_MAX_RANGES = 256;
const GET = VFIO_DEVICE_FEATURE_GET;
const SET = VFIO_DEVICE_FEATURE_SET;
const PROBE = VFIO_DEVICE_FEATURE_PROBE;

function checkFeature(flags: number, argsz: number, ops: number, minsz: number): 0 | 1 {
  if ((flags & (GET | SET) & ~ops) !== 0) fail(EINVAL);
  if (flags & PROBE) return 0;
  if ((flags & (GET | SET)) === 0) fail(EINVAL);
  if (argsz < minsz) fail(EINVAL);
  return 1;
}

const aligned = (v: bigint, to: bigint) => to === 0n ? v === 0n : v % to === 0n;

/**
 * A fake device that logs its own DMA writes.
 *
 * @example
 * ```ts ignore
 * import { FakeDmaLoggingDevice, FakeKernel } from "../fake_kernel.ts";
 * const log = new FakeDmaLoggingDevice();
 * const kernel = new FakeKernel({ groups: [{ id: 26, devices: [{ name: "0000:00:03.0", features: log }] }] });
 * log.deviceWrite(0x10000n, 4096n);
 * ```
 */
export class FakeDmaLoggingDevice implements DeviceFeatureHandler {
  #helpers: boolean;
  #maxRanges: number;
  #forcedPageSize: bigint | undefined;
  #ranges: { iova: bigint; end: bigint }[] | null = null;
  #pageSize = 0n;
  #dirty = new Set<bigint>();
  #starts: number[] = [];
  #stops = 0;
  /** Called at the start of each REPORT, after its checks (a test's device writes here). */
  onReport: (() => void) | undefined;

  /**
   * Creates the driver.
   *
   * @param options Whether REPORT works, the driver's range limit and page size.
   */
  constructor(options: FakeDmaLoggingDeviceOptions = {}) {
    this.#helpers = options.bitmapHelpers ?? true;
    this.#maxRanges = options.maxRanges ?? LOG_MAX_RANGES;
    this.#forcedPageSize = options.pageSize;
  }

  /** Whether logging is started. */
  get logging(): boolean {
    return this.#ranges !== null;
  }

  /** The ranges of the running log, or empty. */
  get ranges(): readonly { iova: bigint; length: bigint }[] {
    return (this.#ranges ?? []).map((r) => ({ iova: r.iova, length: r.end - r.iova }));
  }

  /** The range counts of every START the driver saw, refused ones included. */
  get startAttempts(): readonly number[] {
    return this.#starts;
  }

  /** How many STOPs the driver saw. */
  get stops(): number {
    return this.#stops;
  }

  /**
   * The device writes `[iova, iova + length)` by DMA: while logging, the
   * log's pages the write touches inside the started ranges become dirty.
   *
   * @param iova The first IOVA.
   * @param length Bytes (default 1).
   */
  deviceWrite(iova: bigint, length = 1n): void {
    if (!this.#ranges || length <= 0n) return;
    const ps = this.#pageSize;
    for (let p = iova - iova % ps; p < iova + length; p += ps) {
      if (this.#ranges.some((r) => p >= r.iova && p < r.end)) this.#dirty.add(p);
    }
  }

  /**
   * The DMA logging features; `ENOTTY` for the rest (no `mig_ops`).
   *
   * @param _device The device.
   * @param flags Feature number and GET/SET/PROBE.
   * @param arg The user argument (payload at offset 8).
   * @param argsz `argsz - 8`.
   * @returns 0.
   * @throws {KernelError} The errno.
   */
  feature(_device: { readonly name: string }, flags: number, arg: UserArg, argsz: number): number {
    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
        if (checkFeature(flags, argsz, SET, 24) === 0) return 0;
        return this.#start(arg);
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
        if (checkFeature(flags, argsz, SET, 0) === 0) return 0;
        this.#stops++;
        this.#ranges = null;
        this.#dirty.clear();
        return 0;
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
        if (checkFeature(flags, argsz, GET, 32) === 0) return 0;
        return this.#report(arg);
      default:
        fail(ENOTTY);
    }
  }

  #start(arg: UserArg): number {
    const c = arg.read(8, 24);
    let pageSize = u64(c, 0);
    const n = u32(c, 8);
    const ptr = u64(c, 16);
    if (n === 0) fail(EINVAL);
    if (n > LOG_MAX_RANGES) fail(E2BIG);
    const ranges: { iova: bigint; end: bigint }[] = [];
    const raw = copyFromUser(ptr, n * 16);
    for (let i = 0; i < n; i++) {
      const iova = u64(raw, i * 16);
      const length = u64(raw, i * 16 + 8);
      if (!aligned(iova, pageSize) || !aligned(length, pageSize)) fail(EINVAL);
      if (iova + length > U64_MAX) fail(EOVERFLOW);
      // interval_tree_iter_first(root, iova, iova + length - 1)
      const last = iova + length - 1n;
      if (ranges.some((r) => iova < r.end && last >= r.iova)) fail(EINVAL);
      ranges.push({ iova, end: iova + length });
    }
    this.#starts.push(n);
    // The driver's log_start.
    if (this.#ranges) fail(EINVAL);
    if (n > this.#maxRanges) fail(E2BIG);
    if (this.#forcedPageSize !== undefined) pageSize = this.#forcedPageSize;
    if (pageSize < 4096n) pageSize = 4096n;
    this.#ranges = ranges;
    this.#pageSize = pageSize;
    this.#dirty.clear();
    arg.write(8, u64Bytes(pageSize));
    return 0;
  }

  #report(arg: UserArg): number {
    const r = arg.read(8, 32);
    const iova = u64(r, 0);
    const length = u64(r, 8);
    const pageSize = u64(r, 16);
    const bitmap = u64(r, 24);
    if (pageSize < 4096n || (pageSize & (pageSize - 1n)) !== 0n) fail(EINVAL);
    if (iova + length > U64_MAX) fail(EOVERFLOW);
    if (!this.#helpers) fail(EOPNOTSUPP); // iova_bitmap_for_each() stub
    const bits = length / pageSize + (length % pageSize ? 1n : 0n);
    const bytes = Number((bits + 63n) / 64n) * 8;
    this.onReport?.();
    const user = copyFromUser(bitmap, bytes); // iova_bitmap_alloc pins these pages (EFAULT)
    // The driver's log_read_and_clear, for the whole range.
    if (!this.#ranges) fail(EINVAL);
    const ps = this.#pageSize;
    const end = iova + length;
    for (const page of [...this.#dirty]) {
      const pEnd = page + ps;
      if (pEnd <= iova || page >= end) continue;
      this.#dirty.delete(page);
      // iova_bitmap_set(page, ps): every report page the log page overlaps.
      const first = (page > iova ? page : iova) - iova;
      const last = (pEnd < end ? pEnd : end) - 1n - iova;
      for (let b = first / pageSize; b <= last / pageSize; b++) {
        user[Number(b >> 3n)] |= 1 << Number(b & 7n);
      }
    }
    copyToUser(bitmap, user);
    return 0;
  }
}
