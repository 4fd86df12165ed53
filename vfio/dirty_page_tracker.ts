/**
 * Device-side dirty page tracking on a type1 container
 * (`VFIO_IOMMU_DIRTY_PAGES`, and unmap with a dirty bitmap).
 *
 * The container, not the device, reports dirty pages. The bitmap geometry is
 * read from the migration capability before any bitmap is sized: the page
 * size is the smallest in `pgsize_bitmap`, and no single query may pass a
 * bitmap larger than `max_dirty_bitmap_size`, so large ranges are split into
 * queries that each cover whole mappings (the kernel rejects a range that
 * starts or ends inside a mapping).
 *
 * While any group in the container has not pinned pages (every vfio-pci
 * device today), the kernel reports every mapped page dirty on every query.
 * The tracker observes this and classifies its scope as `all-mapped`, so a
 * migration loop can tell that these bits carry no information.
 *
 * @module
 */

import { hex } from "../sys/address.ts";
import {
  HOST_PAGE_SIZE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../sys/constants.ts";
import { EACCES, ENOTTY } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import { hostView } from "../sys/host_memory.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { orBitsAt, popcount } from "./_bits.ts";
import {
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from "./constants.ts";
import type { DmaMapping } from "./dma_mapping.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "./errors.ts";
import { VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_UNMAP_DMA } from "./ioctls.ts";
import { encodeDirtyPages } from "./uapi/dirty_pages.ts";
import { encodeDmaUnmap } from "./uapi/dma.ts";
import type { IommuInfo } from "./uapi/iommu_info.ts";

/** Options for {@linkcode DirtyPageTracker}. */
export interface DirtyTrackerOptions {
  /**
   * A per-query bitmap limit in bytes below the kernel's
   * `max_dirty_bitmap_size` (a multiple of 8), to bound memory or to test
   * the splitting of queries.
   */
  maxBitmapBytes?: bigint;
}

/**
 * What the container's bitmaps have been seen to mean:
 * - `unknown`: no query has covered a mapping yet;
 * - `all-mapped`: the last query reported every mapped page dirty, as the
 *   kernel does while any group has not pinned pages (every vfio-pci device);
 * - `partial`: the last query reported a subset of the mapped pages (the
 *   pinned-page scope, or a finer source).
 */
export type DirtyScope = "unknown" | "all-mapped" | "partial";

/** A dirty bitmap for an IOVA range. */
export interface DirtyBitmapReport {
  /** The first IOVA of the range. */
  readonly iova: bigint;
  /** Bytes in the range. */
  readonly size: bigint;
  /** The page size one bit stands for. */
  readonly pgsize: bigint;
  /** One bit per page relative to `iova`, little-endian, padded to 64-bit words. */
  readonly bitmap: Uint32Array;
  /** Pages in the range. */
  readonly pages: number;
  /** Set bits. */
  readonly dirtyPages: number;
  /** Pages of the range covered by mappings made through this container object. */
  readonly mappedPages: number;
  /** Every mapped page was reported dirty. */
  readonly allMapped: boolean;
  /** How many ioctls the report took. */
  readonly queries: number;
}

/** What the container hands its tracker. */
export interface TrackerContext {
  /** The syscall boundary. */
  readonly sys: Syscalls;
  /** The container fd. */
  readonly fd: number;
  /** The container's IOMMU info, read before any bitmap is sized. */
  readonly info: IommuInfo;
  /** The live mappings, in IOVA order. */
  readonly mappings: () => readonly DmaMapping[];
  /** Whether tracking is already started (when a tracker replaces another). */
  readonly running?: boolean;
}

/**
 * Returns the bitmap bytes the kernel requires for a page count:
 * `DIRTY_BITMAP_BYTES(n) = ALIGN(n, 64) / 8`.
 *
 * @param pages The page count.
 * @returns Bytes, a multiple of 8.
 *
 * @example
 * ```ts
 * import { dirtyBitmapBytes } from "./dirty_page_tracker.ts";
 * console.log(dirtyBitmapBytes(256n)); // 32n
 * ```
 */
export function dirtyBitmapBytes(pages: bigint): bigint {
  return ((pages + 63n) / 64n) * 8n;
}

/**
 * Device-side dirty page tracking for one container. Get it from
 * {@linkcode VfioContainer.dirtyTracker}.
 *
 * @example Harvest the dirty pages of a mapping
 * ```ts ignore
 * const tracker = container.dirtyTracker();
 * tracker.start();
 * const report = tracker.query(dma.iova, dma.size);
 * console.log(report.dirtyPages, tracker.scope);
 * tracker.stop();
 * ```
 */
export class DirtyPageTracker {
  /** The page size one bit stands for (smallest in the migration cap's `pgsize_bitmap`). */
  readonly pgsize: bigint;
  /** The largest bitmap one query passes, in bytes. */
  readonly maxBitmapBytes: bigint;
  #ctx: TrackerContext;
  #running = false;
  #scope: DirtyScope = "unknown";
  #buf: { addr: bigint; length: bigint; view: Uint8Array } | undefined;

  private constructor(ctx: TrackerContext, pgsize: bigint, maxBitmapBytes: bigint) {
    this.#ctx = ctx;
    this.#running = ctx.running === true;
    this.pgsize = pgsize;
    this.maxBitmapBytes = maxBitmapBytes;
  }

  /**
   * Creates a tracker from the container's migration capability.
   *
   * @param ctx The container's context.
   * @param options Limits.
   * @returns The tracker (not started).
   * @throws {DirtyTrackingUnavailableError} Without a migration capability, or
   *   when its smallest page size is absent or larger than the host page size.
   * @throws {RangeError} For a `maxBitmapBytes` that is not a positive multiple of 8.
   */
  static create(ctx: TrackerContext, options: DirtyTrackerOptions = {}): DirtyPageTracker {
    const mig = ctx.info.migration;
    if (mig === undefined) {
      throw new DirtyTrackingUnavailableError("the container has no migration capability");
    }
    const pgsize = mig.pgsizeBitmap & -mig.pgsizeBitmap;
    if (pgsize === 0n) {
      throw new DirtyTrackingUnavailableError("the migration capability names no page size");
    }
    if (pgsize > BigInt(HOST_PAGE_SIZE)) {
      throw new DirtyTrackingUnavailableError(
        `the smallest dirty page size ${hex(pgsize)} is larger than the host page size ${
          hex(BigInt(HOST_PAGE_SIZE))
        }`,
      );
    }
    let max = mig.maxDirtyBitmapSize;
    if (options.maxBitmapBytes !== undefined) {
      if (options.maxBitmapBytes <= 0n || options.maxBitmapBytes % 8n !== 0n) {
        throw new RangeError(
          `Cannot limit dirty bitmaps to ${options.maxBitmapBytes} bytes: not a positive multiple of 8`,
        );
      }
      if (options.maxBitmapBytes < max) max = options.maxBitmapBytes;
    }
    max -= max % 8n;
    if (max <= 0n) {
      throw new DirtyTrackingUnavailableError(
        `the migration capability allows no bitmap (max_dirty_bitmap_size ${mig.maxDirtyBitmapSize})`,
      );
    }
    return new DirtyPageTracker(ctx, pgsize, max);
  }

  /** Whether tracking is started. */
  get running(): boolean {
    return this.#running;
  }

  /** What the bitmaps have been seen to mean. */
  get scope(): DirtyScope {
    return this.#scope;
  }

  /** The most memory one query covers, in bytes. */
  get maxBytesPerQuery(): bigint {
    return this.maxBitmapBytes * 8n * this.pgsize;
  }

  #dirtyPages(flags: number): void {
    try {
      this.#ctx.sys.ioctl(this.#ctx.fd, VFIO_IOMMU_DIRTY_PAGES, encodeDirtyPages({ flags }));
    } catch (e) {
      if (e instanceof IoctlError && e.errno === ENOTTY) {
        throw new DirtyTrackingUnavailableError(
          "VFIO_IOMMU_DIRTY_PAGES is not implemented by this container (ENOTTY: the iommufd compatibility container)",
          { cause: e },
        );
      }
      if (e instanceof IoctlError && e.errno === EACCES) {
        throw new DirtyTrackingUnavailableError(
          "the container uses type1 v1; dirty tracking needs VFIO_TYPE1v2_IOMMU (EACCES)",
          { cause: e },
        );
      }
      throw e;
    }
  }

  /**
   * Starts tracking (`VFIO_IOMMU_DIRTY_PAGES_FLAG_START`). Idempotent, as in the kernel.
   *
   * @throws {DirtyTrackingUnavailableError} When the container answers `ENOTTY` or `EACCES`.
   * @throws {IoctlError} For other kernel failures.
   */
  start(): void {
    this.#dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    this.#running = true;
  }

  /**
   * Stops tracking (`VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP`) and frees the bitmap
   * memory. Idempotent, as in the kernel.
   *
   * @throws {IoctlError} If the kernel refuses.
   */
  stop(): void {
    try {
      this.#dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
      this.#running = false;
    } finally {
      // The bitmap memory is ours alone: free it even when the kernel refused.
      this.release();
    }
  }

  /**
   * Frees the bitmap memory, leaving the kernel state alone (the container
   * calls this as it closes).
   */
  release(): void {
    if (this.#buf === undefined) return;
    const { addr, length } = this.#buf;
    this.#buf = undefined;
    this.#ctx.sys.munmap(addr, length);
  }

  /** The fixed, mmap'd bitmap buffer, grown as needed and zeroed before each call. */
  #bitmapBuffer(bytes: bigint): { addr: bigint; view: Uint8Array } {
    if (this.#buf === undefined || this.#buf.length < bytes) {
      this.release();
      const length = (bytes + 4095n) & ~4095n;
      const addr = this.#ctx.sys.mmap(
        length,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        -1,
        0n,
      );
      this.#buf = { addr, length, view: hostView(addr, Number(length)) };
    }
    this.#buf.view.fill(0, 0, Number(bytes));
    return this.#buf;
  }

  #checkRange(what: string, iova: bigint, size: bigint): void {
    if (size <= 0n || iova % this.pgsize !== 0n || size % this.pgsize !== 0n) {
      throw new RangeError(
        `Cannot ${what} at iova ${hex(iova)}: range ${hex(iova)}+${
          hex(size)
        } is empty or not aligned to the dirty page size ${hex(this.pgsize)}`,
      );
    }
    const end = iova + size;
    for (const m of this.#ctx.mappings()) {
      if ((m.iova < iova && m.end > iova) || (m.iova < end && m.end > end)) {
        throw new RangeError(
          `Cannot ${what} at iova ${hex(iova)}: range ${hex(iova)}-${
            hex(end)
          } bisects the mapping ${hex(m.iova)}-${hex(m.end)} (a range must cover whole mappings)`,
        );
      }
    }
  }

  /**
   * Splits `[iova, iova + size)` into ranges whose bitmaps fit the limit and
   * that never start or end inside a mapping.
   */
  #plan(what: string, iova: bigint, size: bigint): { iova: bigint; size: bigint }[] {
    const maxPages = (this.maxBitmapBytes / 8n) * 64n;
    const maxSpan = maxPages * this.pgsize;
    const end = iova + size;
    const mappings = this.#ctx.mappings();
    const chunks: { iova: bigint; size: bigint }[] = [];
    let start = iova;
    while (start < end) {
      let stop = start + maxSpan < end ? start + maxSpan : end;
      const cut = mappings.find((m) => m.iova < stop && m.end > stop);
      if (cut !== undefined) {
        if (cut.iova <= start) {
          throw new RangeError(
            `Cannot ${what} at iova ${hex(cut.iova)}: the mapping of ${
              hex(cut.size)
            } bytes needs more than the ${this.maxBitmapBytes}-byte bitmap one query may pass`,
          );
        }
        stop = cut.iova;
      }
      chunks.push({ iova: start, size: stop - start });
      start = stop;
    }
    return chunks;
  }

  #mappedPages(iova: bigint, size: bigint): number {
    const end = iova + size;
    let mapped = 0n;
    for (const m of this.#ctx.mappings()) {
      const from = m.iova > iova ? m.iova : iova;
      const to = m.end < end ? m.end : end;
      if (to > from) mapped += (to - from) / this.pgsize;
    }
    return Number(mapped);
  }

  #report(
    range: { iova: bigint; size: bigint; mappedPages: number },
    bitmap: Uint32Array,
    queries: number,
  ): DirtyBitmapReport {
    const { iova, size, mappedPages } = range;
    const dirtyPages = popcount(bitmap);
    const allMapped = mappedPages > 0 && dirtyPages >= mappedPages;
    if (mappedPages > 0) this.#scope = allMapped ? "all-mapped" : "partial";
    return {
      iova,
      size,
      pgsize: this.pgsize,
      bitmap,
      pages: Number(size / this.pgsize),
      dirtyPages,
      mappedPages,
      allMapped,
      queries,
    };
  }

  #run(
    what: string,
    iova: bigint,
    size: bigint,
    call: (chunk: { iova: bigint; size: bigint }, bytes: bigint, addr: bigint) => void,
  ): { bitmap: Uint32Array; queries: number } {
    this.#checkRange(what, iova, size);
    const pages = size / this.pgsize;
    const bitmap = new Uint32Array(Number(dirtyBitmapBytes(pages) / 4n));
    const chunks = this.#plan(what, iova, size);
    for (const chunk of chunks) {
      const chunkPages = chunk.size / this.pgsize;
      const bytes = dirtyBitmapBytes(chunkPages);
      const buf = this.#bitmapBuffer(bytes);
      call(chunk, bytes, buf.addr);
      const words = new Uint32Array(buf.view.buffer, buf.view.byteOffset, Number(bytes / 4n));
      orBitsAt(bitmap, Number((chunk.iova - iova) / this.pgsize), words, Number(chunkPages));
    }
    return { bitmap, queries: chunks.length };
  }

  /**
   * Reads and clears the dirty bitmap of an IOVA range
   * (`VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP`), split into as many queries as
   * the bitmap limit needs. Unmapped parts of the range report no bits.
   *
   * @param iova The first IOVA, aligned to `pgsize`.
   * @param size Bytes, aligned to `pgsize`; the range must cover whole mappings.
   * @returns The merged bitmap and its counts; updates {@linkcode DirtyPageTracker.scope}.
   * @throws {VfioStateError} When tracking is not started.
   * @throws {RangeError} For misalignment, a bisected mapping, or a mapping
   *   too large for one query.
   * @throws {IoctlError} For kernel failures.
   */
  query(iova: bigint, size: bigint): DirtyBitmapReport {
    if (!this.#running) {
      throw new VfioStateError(
        `Cannot query the dirty bitmap at iova ${hex(iova)}: tracking is not started`,
      );
    }
    const mappedPages = this.#mappedPages(iova, size);
    const { bitmap, queries } = this.#run("query dirty pages", iova, size, (c, bytes, addr) => {
      this.#ctx.sys.ioctl(
        this.#ctx.fd,
        VFIO_IOMMU_DIRTY_PAGES,
        encodeDirtyPages({
          flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
          get: {
            iova: c.iova,
            size: c.size,
            bitmap: { pgsize: this.pgsize, size: bytes, data: addr },
          },
        }),
      );
    });
    return this.#report({ iova, size, mappedPages }, bitmap, queries);
  }

  /**
   * Unmaps a range and returns its dirty bitmap
   * (`VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`).
   * Containers call this from `unmapDma(…, { dirtyBitmap: true })`.
   *
   * @param fd The container fd.
   * @param iova The first IOVA.
   * @param size Bytes.
   * @param unmapped Called after each successful chunk, so a failure part way
   *   leaves the container's bookkeeping right.
   * @returns Bytes unmapped and the bitmap.
   * @throws {IoctlError} `EINVAL` when tracking is stopped (the kernel's rule).
   */
  unmapWithBitmap(
    fd: number,
    iova: bigint,
    size: bigint,
    unmapped: (iova: bigint, size: bigint) => void = () => {},
  ): { unmapped: bigint; dirty: DirtyBitmapReport } {
    let total = 0n;
    const mappedPages = this.#mappedPages(iova, size);
    const { bitmap, queries } = this.#run("unmap DMA", iova, size, (c, bytes, addr) => {
      const arg = encodeDmaUnmap({
        flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
        iova: c.iova,
        size: c.size,
        bitmap: { pgsize: this.pgsize, size: bytes, data: addr },
      });
      this.#ctx.sys.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, arg);
      total += new DataView(arg.buffer).getBigUint64(16, true);
      unmapped(c.iova, c.size);
    });
    return { unmapped: total, dirty: this.#report({ iova, size, mappedPages }, bitmap, queries) };
  }
}
