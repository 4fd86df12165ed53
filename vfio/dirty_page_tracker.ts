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
import { orBitsAt, popcount } from "../sys/bits.ts";
import {
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
} from "./constants.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "./errors.ts";
import { VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_UNMAP_DMA } from "./ioctls.ts";
import {
  dirtyBitmapBytes,
  type DirtyBitmapReport,
  type DirtyScope,
  type DirtyTrackerOptions,
  type TrackerContext,
} from "./dirty_bitmap_report.ts";
import {
  checkDirtyRange,
  mappedPages as countMappedPages,
  planDirtyQueries,
  type QueryGeometry,
} from "./dirty_query_plan.ts";
import { encodeDirtyPages } from "./uapi/dirty_pages.ts";
import { encodeDmaUnmap } from "./uapi/dma.ts";
import { onRelease } from "./_links.ts";

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
  #released = false;
  #scope: DirtyScope = "unknown";
  #buf: { addr: bigint; length: bigint; view: Uint8Array } | undefined;

  private constructor(ctx: TrackerContext, pgsize: bigint, maxBitmapBytes: bigint) {
    this.#ctx = ctx;
    this.pgsize = pgsize;
    this.maxBitmapBytes = maxBitmapBytes;
    // The container closed or released its IOMMU: the kernel's tracking is
    // gone with it, and so is this tracker's bitmap memory.
    onRelease(this, () => {
      this.#released = true;
      this.#running = false;
      this.#freeBuffer();
    });
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

  #live(what: string): void {
    if (this.#released) {
      throw new VfioStateError(
        `Cannot ${what}: the container's IOMMU was released (its last group detached, or it closed)`,
      );
    }
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
    this.#live("start dirty tracking");
    this.#dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    this.#running = true;
  }

  /**
   * Stops tracking (`VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP`) and frees the bitmap
   * memory. Idempotent, as in the kernel; a no-op once the container's IOMMU
   * is released (the kernel stopped tracking with it).
   *
   * @throws {IoctlError} If the kernel refuses.
   */
  stop(): void {
    if (this.#released) return;
    try {
      this.#dirtyPages(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
      this.#running = false;
    } finally {
      // The bitmap memory is ours alone: free it even when the kernel refused.
      this.#freeBuffer();
    }
  }

  /** Frees the bitmap memory, leaving the kernel state alone. */
  #freeBuffer(): void {
    if (this.#buf === undefined) return;
    const { addr, length } = this.#buf;
    this.#buf = undefined;
    this.#ctx.sys.munmap(addr, length);
  }

  /** The fixed, mmap'd bitmap buffer, grown as needed and zeroed before each call. */
  #bitmapBuffer(bytes: bigint): { addr: bigint; view: Uint8Array } {
    if (this.#buf === undefined || this.#buf.length < bytes) {
      this.#freeBuffer();
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

  #geometry(what: string, maxBitmapBytes = this.maxBitmapBytes): QueryGeometry {
    return { what, pgsize: this.pgsize, maxBitmapBytes, mappings: this.#ctx.mappings() };
  }

  #report(
    range: { iova: bigint; size: bigint; mappedPages: number },
    bitmap: Uint32Array,
    queries: number,
  ): DirtyBitmapReport {
    const { iova, size, mappedPages } = range;
    const dirtyPages = popcount(bitmap);
    const allMapped = mappedPages > 0 && dirtyPages >= mappedPages;
    if (mappedPages > 0) this.#scope = allMapped ? "all-mapped" : "precise";
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
    range: { iova: bigint; size: bigint; maxBitmapBytes?: bigint },
    call: (chunk: { iova: bigint; size: bigint }, bytes: bigint, addr: bigint) => void,
  ): { bitmap: Uint32Array; queries: number } {
    const { iova, size } = range;
    const geometry = this.#geometry(what, range.maxBitmapBytes);
    checkDirtyRange(geometry, iova, size);
    const pages = size / this.pgsize;
    const bitmap = new Uint32Array(Number(dirtyBitmapBytes(pages) / 4n));
    const chunks = planDirtyQueries(geometry, iova, size);
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
   * @param options `maxBitmapBytes`: a lower bitmap limit for this query (a
   *   positive multiple of 8), to bound memory or to test the splitting.
   * @returns The merged bitmap and its counts; updates {@linkcode DirtyPageTracker.scope}.
   * @throws {VfioStateError} When tracking is not started, or the IOMMU is released.
   * @throws {RangeError} For misalignment, a bisected mapping, a mapping
   *   too large for one query, or a bad `maxBitmapBytes`.
   * @throws {IoctlError} For kernel failures.
   */
  query(iova: bigint, size: bigint, options: DirtyTrackerOptions = {}): DirtyBitmapReport {
    this.#live(`query the dirty bitmap at iova ${hex(iova)}`);
    const limit = options.maxBitmapBytes;
    if (limit !== undefined && (limit <= 0n || limit % 8n !== 0n)) {
      throw new RangeError(
        `Cannot limit a dirty query to ${limit} bytes of bitmap: not a positive multiple of 8`,
      );
    }
    if (!this.#running) {
      throw new VfioStateError(
        `Cannot query the dirty bitmap at iova ${hex(iova)}: tracking is not started`,
      );
    }
    const mappedPages = countMappedPages(this.#geometry("count"), iova, size);
    const range = {
      iova,
      size,
      maxBitmapBytes: limit !== undefined && limit < this.maxBitmapBytes
        ? limit
        : this.maxBitmapBytes,
    };
    const { bitmap, queries } = this.#run("query dirty pages", range, (c, bytes, addr) => {
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
    const mappedPages = countMappedPages(this.#geometry("count"), iova, size);
    this.#live(`unmap DMA at iova ${hex(iova)} with its dirty bitmap`);
    const { bitmap, queries } = this.#run("unmap DMA", { iova, size }, (c, bytes, addr) => {
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

export * from "./dirty_bitmap_report.ts";
