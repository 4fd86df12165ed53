/**
 * A device's own DMA log (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`, a driver with
 * `vfio_log_ops`) as a device-side dirty source: the pages that device wrote,
 * precise by construction, so it replaces a container's coarser bits for the
 * same device.
 *
 * START covers the guest RAM ranges the device has mapped. When the driver
 * refuses that many ranges (`E2BIG`), the ranges are merged, the closest
 * neighbours first, and START is retried with half as many; `startNote` says
 * so. REPORT goes in chunks of at most `maxBitmapBytes` into zeroed bitmaps
 * (it only sets bits). A REPORT answering `EOPNOTSUPP` at start (a kernel
 * without the iova_bitmap helpers) stops logging and throws
 * `DirtyTrackingUnavailableError`, so the caller falls back to another
 * source. Any failure after START stops logging before it is thrown.
 *
 * @module
 */

import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { E2BIG, ENOTTY, EOPNOTSUPP } from "../../sys/errno.ts";
import { IoctlError } from "../../sys/errors.ts";
import { probeDmaLogging } from "../../vfio/device_migration_feature.ts";
import {
  DMA_LOGGING_MAX_RANGES,
  type DmaLoggingRange,
  mergeDmaLoggingRanges,
  reportDmaLogging,
  startDmaLogging,
  stopDmaLogging,
} from "../../vfio/device_dma_logging.ts";
import type { VfioDevice } from "../../vfio/device.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../../vfio/errors.ts";
import { type DirtySource, expandBitmapInto, type SourceHarvest } from "../engine/dirty_source.ts";
import type { RegionLayout } from "./vfio_dirty_source.ts";

const PAGE = 4096n;

/** Options of {@linkcode DmaLoggingDirtySource}. */
export interface DmaLoggingDirtySourceOptions {
  /** IOVA = `iovaBase` + GPA (default 0). */
  iovaBase?: bigint;
  /** The page size hint passed to START (default 4 KiB). */
  pageSize?: bigint;
  /** The largest bitmap one REPORT fills (default 64 KiB). */
  maxBitmapBytes?: number;
  /**
   * The device, named as the other device sources name it (`group N`) where
   * a container or HWPT sees it too, so this source replaces their bits.
   * Default: the device's name.
   */
  devices?: readonly string[];
}

/**
 * Device-side dirty pages from a device's DMA log.
 *
 * @example
 * ```ts ignore
 * using device = group.openDevice("0000:00:03.0");
 * const source = new DmaLoggingDirtySource(device, memory.regions, { devices: ["group 26"] });
 * source.start();
 * ```
 */
export class DmaLoggingDirtySource implements DirtySource {
  /** The source's name. */
  readonly name = "vfio-dma-logging";
  /** Always `precise`: only pages the device wrote. */
  readonly scope = "precise" as const;
  /** A device's DMA log is precise by construction. */
  readonly preciseByConstruction = true;
  /** The driver reads and clears its log in one call. */
  readonly concurrentSafe = true;
  /** The devices this log sees. */
  readonly devices: readonly string[];
  #device: VfioDevice;
  #regions: readonly RegionLayout[];
  #iovaBase: bigint;
  #hint: bigint;
  #maxBitmapBytes: number;
  #pageSize = 0n;
  #running = false;
  #ranges: DmaLoggingRange[] = [];
  #note = "";

  /**
   * Creates the source (not started).
   *
   * @param device The device whose driver logs its DMA.
   * @param regions The guest RAM regions mapped for the device, in order.
   * @param options The IOVA base, page size hint, chunk size and device names.
   * @throws {RangeError} For a region not made of whole 4 KiB pages or a bad chunk size.
   */
  constructor(
    device: VfioDevice,
    regions: readonly RegionLayout[],
    options: DmaLoggingDirtySourceOptions = {},
  ) {
    for (const r of regions) {
      if (r.gpa % PAGE !== 0n || r.size % PAGE !== 0n) {
        throw new RangeError(
          `Cannot log DMA to region 0x${r.gpa.toString(16)}: not whole 4 KiB pages`,
        );
      }
    }
    const max = options.maxBitmapBytes ?? 65536;
    if (!Number.isInteger(max) || max < 8 || max % 8 !== 0) {
      throw new RangeError(
        `Cannot report DMA logs in ${max}-byte bitmaps: not a positive multiple of 8`,
      );
    }
    this.#device = device;
    this.#regions = regions;
    this.#iovaBase = options.iovaBase ?? 0n;
    this.#hint = options.pageSize ?? PAGE;
    this.#maxBitmapBytes = max;
    this.devices = options.devices ?? [device.name];
  }

  /** Whether logging is running. */
  get running(): boolean {
    return this.#running;
  }

  /** The ranges START was given (after any merge). */
  get ranges(): readonly { readonly iova: bigint; readonly length: bigint }[] {
    return this.#ranges;
  }

  /** The page size the driver chose, or 0 before START. */
  get pageSize(): bigint {
    return this.#pageSize;
  }

  /** Empty, or how the ranges were merged for the driver's limit. */
  get startNote(): string {
    return this.#note;
  }

  /**
   * Probes, then STARTs logging over the mapped ranges and checks that
   * REPORT works.
   *
   * @throws {DirtyTrackingUnavailableError} When the driver has no DMA
   *   logging, or REPORT answers `EOPNOTSUPP` (logging is stopped again).
   * @throws {IoctlError} If the kernel refuses otherwise.
   */
  start(): void {
    if (this.#running) return;
    const sys = this.#device.syscalls;
    const fd = this.#device.unsafeFd;
    const name = this.#device.name;
    if (!probeDmaLogging(sys, fd)) {
      throw new DirtyTrackingUnavailableError(
        `device ${name} has no DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START probe: ENOTTY)`,
      );
    }
    const wanted = this.#regions.map((r) => ({ iova: this.#iovaBase + r.gpa, length: r.size }));
    let max = DMA_LOGGING_MAX_RANGES;
    let ranges = mergeDmaLoggingRanges(wanted, max);
    for (;;) {
      try {
        this.#pageSize = startDmaLogging(sys, fd, { pageSize: this.#hint, ranges });
        break;
      } catch (e) {
        if (!(e instanceof IoctlError) || e.errno !== E2BIG || ranges.length === 1) throw e;
        max = Math.max(1, Math.floor(ranges.length / 2));
        ranges = mergeDmaLoggingRanges(wanted, max);
      }
    }
    this.#running = true;
    this.#ranges = ranges;
    const joined = mergeDmaLoggingRanges(wanted, Number.MAX_SAFE_INTEGER).length;
    this.#note = ranges.length < joined
      ? `device ${name} refused ${joined} DMA logging ranges: merged into ${ranges.length}, ` +
        `so pages between the guest RAM regions are logged too`
      : "";
    if (this.#pageSize % PAGE !== 0n || this.#pageSize === 0n) {
      this.stop();
      throw new DirtyTrackingUnavailableError(
        `device ${name} chose a DMA logging page size of ${this.#pageSize}, not a multiple of 4 KiB`,
      );
    }
    // One page's REPORT: a kernel without the iova_bitmap helpers answers EOPNOTSUPP.
    try {
      reportDmaLogging(sys, fd, {
        iova: ranges[0].iova,
        length: this.#pageSize,
        pageSize: this.#pageSize,
        bitmap: new Uint8Array(8),
      });
    } catch (e) {
      this.stop();
      if (e instanceof IoctlError && e.errno === EOPNOTSUPP) {
        throw new DirtyTrackingUnavailableError(
          `device ${name} can start DMA logging but its kernel cannot report it ` +
            `(DMA_LOGGING_REPORT: EOPNOTSUPP, vfio built without the iova_bitmap helpers, ` +
            `CONFIG_IOMMUFD_DRIVER); using the other dirty sources for it`,
          { cause: e },
        );
      }
      throw e;
    }
    // Pages that probe read are lost from the log: count them as written.
    this.#pending = true;
  }

  #pending = false;

  /**
   * ORs the pages the device wrote since the last harvest into the bitmaps.
   *
   * @param bitmaps One 4 KiB bitmap per region.
   * @returns What was found.
   * @throws {VfioStateError} When logging is not running.
   * @throws {IoctlError} If a REPORT fails (logging is stopped first).
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    if (!this.#running) {
      throw new VfioStateError(`Cannot report DMA logging of ${this.#device.name}: not started`);
    }
    try {
      return this.#harvest(bitmaps);
    } catch (e) {
      this.stop();
      throw e;
    }
  }

  #harvest(bitmaps: DirtyBitmap[]): SourceHarvest {
    const sys = this.#device.syscalls;
    const fd = this.#device.unsafeFd;
    const ps = this.#pageSize;
    const factor = Number(ps / PAGE);
    const chunkBits = BigInt(this.#maxBitmapBytes * 8);
    const buf = new Uint8Array(this.#maxBitmapBytes);
    let dirty = 0;
    let covered = 0;
    this.#regions.forEach((r, i) => {
      const dst = bitmaps[i];
      const before = dst.count();
      covered += Number(r.size / PAGE);
      if (this.#pending) {
        const first = this.#ranges[0].iova;
        const gpa = first - this.#iovaBase;
        if (gpa >= r.gpa && gpa < r.gpa + r.size) {
          dst.setRange(
            Number((gpa - r.gpa) / PAGE),
            Math.min(factor, Number((r.gpa + r.size - gpa) / PAGE)),
          );
        }
      }
      // Log pages cover the region from its aligned start.
      const iova0 = this.#iovaBase + r.gpa;
      const start = iova0 - iova0 % ps;
      const end = iova0 + r.size;
      for (let at = start; at < end; at += chunkBits * ps) {
        const bits = (end - at + ps - 1n) / ps < chunkBits ? (end - at + ps - 1n) / ps : chunkBits;
        const bytes = Number((bits + 63n) / 64n) * 8;
        const bitmap = buf.subarray(0, bytes);
        bitmap.fill(0);
        reportDmaLogging(sys, fd, { iova: at, length: bits * ps, pageSize: ps, bitmap });
        const words = new Uint32Array(bitmap.buffer, bitmap.byteOffset, bytes / 4);
        const offset = Number((at - iova0) / PAGE);
        if (offset >= 0) {
          expandBitmapInto(dst, offset, words, { bits: Number(bits), factor });
        } else {
          // The first log page starts before the region: shift by hand.
          const tmp = new DirtyBitmap(Number(bits) * factor);
          expandBitmapInto(tmp, 0, words, { bits: Number(bits), factor });
          tmp.forEachRun((f, c) => {
            const a = Math.max(f + offset, 0);
            const b = Math.min(f + c + offset, dst.pages);
            if (b > a) dst.setRange(a, b - a);
          });
        }
      }
      dirty += dst.count() - before;
    });
    this.#pending = false;
    return { source: this.name, dirtyPages: dirty, scope: this.scope, coveredPages: covered };
  }

  /**
   * ORs every page of the regions into the bitmaps.
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    this.#regions.forEach((r, i) => bitmaps[i].setRange(0, Number(r.size / PAGE)));
  }

  /** STOPs logging. Idempotent; a device already closed is left alone. */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    if (this.#device.closed) return;
    try {
      stopDmaLogging(this.#device.syscalls, this.#device.unsafeFd);
    } catch (e) {
      if (!(e instanceof IoctlError && e.errno === ENOTTY)) throw e;
    }
  }
}
