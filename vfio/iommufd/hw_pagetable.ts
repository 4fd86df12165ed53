/**
 * An iommufd hardware page table (HWPT): the IOMMU domain a device is
 * attached to, and, when allocated with dirty tracking, the IOMMU's record of
 * the pages the device wrote (`IOMMU_HWPT_SET_DIRTY_TRACKING`,
 * `IOMMU_HWPT_GET_DIRTY_BITMAP`).
 *
 * @module
 */

import { hex } from "../../sys/address.ts";
import {
  HOST_PAGE_SIZE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../../sys/constants.ts";
import { popcount } from "../../sys/bits.ts";
import { ResourceBusyError } from "../../sys/errors.ts";
import { hostView } from "../../sys/host_memory.ts";
import { type ContextLink, contextLink } from "./_context.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../errors.ts";
import {
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
} from "./constants.ts";
import type { Iommufd } from "./iommufd.ts";
import { IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_SET_DIRTY_TRACKING } from "./ioctls.ts";
import { encodeGetDirtyBitmap, encodeSetDirtyTracking } from "./uapi/hwpt.ts";

/** The dirty bits of an IOVA range, as `IOMMU_HWPT_GET_DIRTY_BITMAP` reported them. */
export interface IommufdDirtyReport {
  /** The first IOVA. */
  readonly iova: bigint;
  /** Bytes. */
  readonly length: bigint;
  /** The page size one bit stands for. */
  readonly pageSize: bigint;
  /** One bit per page from `iova`, little-endian, padded to 64-bit words. */
  readonly bitmap: Uint32Array;
  /** Pages in the range. */
  readonly pages: number;
  /** Set bits. */
  readonly dirtyPages: number;
}

/** Options of {@linkcode HwPagetable.readDirty}. */
export interface ReadDirtyOptions {
  /**
   * `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`: read without clearing, for a
   * range about to be unmapped (the kernel then skips the IOTLB flush).
   */
  noClear?: boolean;
  /** The page size of a bit (default the host page, 4 KiB). */
  pageSize?: bigint;
}

/** The bitmap bytes for a page count, in whole u64 words. */
function bitmapBytes(pages: bigint): bigint {
  return ((pages + 63n) / 64n) * 8n;
}

/**
 * A hardware page table from {@linkcode Iommufd.allocHwpt}.
 *
 * @example Read the pages a device wrote
 * ```ts ignore
 * using hwpt = iommufd.allocHwpt({ devId, ioas, dirtyTracking: true });
 * hwpt.setDirtyTracking(true);
 * const report = hwpt.readDirty(1n << 24n, 0x10000n);
 * console.log(report.dirtyPages);
 * ```
 */
export class HwPagetable implements Disposable {
  /** The HWPT's object id (`pt_id` for attaching devices). */
  readonly id: number;
  /** The IOAS it translates through. */
  readonly ioasId: number;
  /** Whether it was allocated with `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`. */
  readonly dirtyTrackingCapable: boolean;
  #iommufd: Iommufd;
  #context: ContextLink;
  #live = true;
  #tracking = false;
  #buf: { addr: bigint; length: bigint } | undefined;
  #child: { label: string; uses(): readonly number[] };

  /**
   * Wraps an allocated HWPT ({@linkcode Iommufd.allocHwpt} does this).
   *
   * @param iommufd The context.
   * @param fields The id, its IOAS, and whether it can track dirty pages.
   */
  constructor(iommufd: Iommufd, fields: { id: number; ioasId: number; dirtyTracking: boolean }) {
    this.#iommufd = iommufd;
    this.id = fields.id;
    this.ioasId = fields.ioasId;
    this.dirtyTrackingCapable = fields.dirtyTracking;
    this.#context = contextLink(iommufd);
    const ioas = fields.ioasId;
    this.#child = { label: `HWPT ${fields.id}`, uses: () => [ioas] };
    this.#context.adopt(this.#child);
  }

  /** Whether dirty tracking is enabled. */
  get tracking(): boolean {
    return this.#tracking;
  }

  /** Whether the HWPT is destroyed. */
  get closed(): boolean {
    return !this.#live;
  }

  #fd(what: string): number {
    if (!this.#live) throw new VfioStateError(`Cannot ${what}: HWPT ${this.id} is destroyed`);
    return this.#context.fd(what);
  }

  /**
   * Enables or disables dirty tracking (`IOMMU_HWPT_SET_DIRTY_TRACKING`).
   * Enabling starts from a clean record.
   *
   * @param enable Whether to track.
   * @throws {DirtyTrackingUnavailableError} When the HWPT was allocated without dirty tracking.
   * @throws {IoctlError} If the kernel refuses.
   */
  setDirtyTracking(enable: boolean): void {
    const fd = this.#fd(`${enable ? "enable" : "disable"} dirty tracking`);
    if (!this.dirtyTrackingCapable) {
      throw new DirtyTrackingUnavailableError(
        `HWPT ${this.id} was allocated without IOMMU_HWPT_ALLOC_DIRTY_TRACKING`,
      );
    }
    this.#iommufd.syscalls.ioctl(
      fd,
      IOMMU_HWPT_SET_DIRTY_TRACKING,
      encodeSetDirtyTracking({
        hwptId: this.id,
        flags: enable ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
      }),
    );
    this.#tracking = enable;
    if (!enable) this.#freeBuffer();
  }

  /** Frees the bitmap memory (kept between reads). */
  #freeBuffer(): void {
    if (this.#buf === undefined) return;
    const { addr, length } = this.#buf;
    this.#buf = undefined;
    this.#iommufd.syscalls.munmap(addr, length);
  }

  #bitmap(bytes: bigint): { addr: bigint; view: Uint8Array } {
    if (this.#buf === undefined || this.#buf.length < bytes) {
      this.#freeBuffer();
      const length = (bytes + 4095n) & ~4095n;
      const addr = this.#iommufd.syscalls.mmap(
        length,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        -1,
        0n,
      );
      this.#buf = { addr, length };
    }
    // SAFETY: the buffer stays mapped until release(); the view is used before that.
    const view = hostView(this.#buf.addr, Number(bytes));
    view.fill(0); // the kernel only sets bits
    return { addr: this.#buf.addr, view };
  }

  /**
   * Reads (and by default clears) the dirty bits of an IOVA range
   * (`IOMMU_HWPT_GET_DIRTY_BITMAP`).
   *
   * The range must be mapped in the IOAS without holes from `iova` on: Linux
   * 6.12 walks the IOAS's areas from `iova` and stops at the first hole,
   * still answering 0, so bits past a hole are neither reported nor cleared
   * (and a range starting in a hole reports nothing). `IommufdDirtyTracker`
   * reads mapping by mapping for that reason.
   *
   * @param iova The first IOVA, aligned to the page size.
   * @param length Bytes, a non-zero multiple of the page size.
   * @param options `noClear` before an unmap; the page size.
   * @returns The bitmap and its count.
   * @throws {VfioStateError} When tracking is not enabled.
   * @throws {RangeError} For misalignment, before the ioctl.
   * @throws {IoctlError} If the kernel refuses (`EINVAL` misaligned to the
   *   IOAS, `EOVERFLOW` past the address space).
   */
  readDirty(iova: bigint, length: bigint, options: ReadDirtyOptions = {}): IommufdDirtyReport {
    const fd = this.#fd(`read dirty pages at iova ${hex(iova)}`);
    if (!this.#tracking) {
      throw new VfioStateError(
        `Cannot read dirty pages at iova ${hex(iova)}: tracking is not enabled on HWPT ${this.id}`,
      );
    }
    const pageSize = options.pageSize ?? BigInt(HOST_PAGE_SIZE);
    if (pageSize <= 0n || (pageSize & (pageSize - 1n)) !== 0n) {
      throw new RangeError(`Cannot read dirty pages: page size ${pageSize} is not a power of two`);
    }
    if (length <= 0n || iova % pageSize !== 0n || length % pageSize !== 0n) {
      throw new RangeError(
        `Cannot read dirty pages at iova ${hex(iova)}+${hex(length)}: not a non-empty range of ${
          hex(pageSize)
        } pages`,
      );
    }
    const pages = length / pageSize;
    const bytes = bitmapBytes(pages);
    const buf = this.#bitmap(bytes);
    this.#iommufd.syscalls.ioctl(
      fd,
      IOMMU_HWPT_GET_DIRTY_BITMAP,
      encodeGetDirtyBitmap({
        hwptId: this.id,
        flags: options.noClear ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0,
        iova,
        length,
        pageSize,
        data: buf.addr,
      }),
    );
    const bitmap = new Uint32Array(buf.view.slice().buffer);
    return { iova, length, pageSize, bitmap, pages: Number(pages), dirtyPages: popcount(bitmap) };
  }

  /**
   * Destroys the HWPT (`IOMMU_DESTROY`) and frees its bitmap memory.
   * Idempotent. While a cdev device is attached to it, it refuses and
   * changes nothing: detach (or close) the device first.
   *
   * @throws {ResourceBusyError} Naming the attached devices.
   * @throws {IoctlError} `EBUSY` while a device this process did not attach
   *   through these objects uses it (the HWPT stays).
   */
  close(): void {
    if (!this.#live) return;
    const users = this.#context.usersOf(this.id);
    if (users.length > 0) {
      throw new ResourceBusyError(`HWPT ${this.id}`, users, {
        order: "detach or close the device first",
      });
    }
    this.#iommufd.destroy(this.id);
    this.#live = false;
    this.#tracking = false;
    this.#context.release(this.#child);
    this.#freeBuffer();
  }

  /** Destroys the HWPT (see {@linkcode HwPagetable.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
