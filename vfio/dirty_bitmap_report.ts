/**
 * The types around device-side dirty tracking: options, the observed scope,
 * a bitmap report, and the kernel's bitmap sizing rule.
 *
 * @module
 */

import type { Syscalls } from "../sys/syscalls.ts";
import type { DmaMapping } from "./dma_mapping.ts";
import type { IommuInfo } from "./uapi/iommu_info.ts";

/** Options for `DirtyPageTracker`. */
export interface DirtyTrackerOptions {
  /**
   * A per-query bitmap limit in bytes below the kernel's
   * `max_dirty_bitmap_size` (a multiple of 8), to bound memory or to test
   * the splitting of queries.
   */
  maxBitmapBytes?: bigint;
}

export type { DirtyScope } from "../sys/dirty_scope.ts";

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
