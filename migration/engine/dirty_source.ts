/**
 * Dirty page sources, merged per iteration: the CPU tracker, the VFIO
 * container, and the bits harvested by unmaps during pre-copy. Each source
 * ORs its pages into one 4 KiB bitmap per guest RAM region.
 *
 * @module
 */

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";

import type { DirtyScope } from "../../sys/dirty_scope.ts";

export type { DirtyScope };

/** What one harvest of one source found. */
export interface SourceHarvest {
  /** The source's name. */
  readonly source: string;
  /** Pages it reported dirty (in 4 KiB pages). */
  readonly dirtyPages: number;
  /** Its scope as of this harvest. */
  readonly scope: DirtyScope;
  /** Pages it covers (the mapped RAM for a VFIO source). */
  readonly coveredPages: number;
}

/** A source of dirty pages for pre-copy. */
export interface DirtySource {
  /** A short name for reports, such as `cpu:pagemap-scan` or `vfio-container`. */
  readonly name: string;
  /** Its scope, as observed so far. */
  readonly scope: DirtyScope;
  /**
   * `false` when a harvest can miss a write racing it (soft-dirty reads, then
   * clears, in two calls): pre-copy then pauses the workload around each
   * harvest. Absent means safe.
   */
  readonly concurrentSafe?: boolean;
  /**
   * For a device-side source: the devices whose DMA writes it sees (an IOMMU
   * group such as `group 26`, or a device name). Where several device-side
   * sources see the same device in a region, only the finest one serves it
   * (`selectDeviceSources`). Absent for a CPU-side source, which always serves.
   */
  readonly devices?: readonly string[];
  /**
   * `true` when the scope is `precise` by construction (IOMMU dirty bits,
   * device DMA logging), not only as observed: type1's pinned scope turns
   * all-mapped as soon as a vfio-pci group joins the container.
   */
  readonly preciseByConstruction?: boolean;
  /** Starts tracking. */
  start(): void;
  /**
   * ORs the pages dirtied since the previous harvest (or `start`) into the
   * per-region bitmaps, and resets the source.
   *
   * @param bitmaps One 4 KiB bitmap per guest RAM region, in region order.
   * @returns What the source found.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest;
  /**
   * Marks, per region, the pages this source covers (for an `all-mapped`
   * source: the pages resent in full at stop-and-copy).
   *
   * @param bitmaps One bitmap per region to OR the covered pages into.
   */
  coverInto(bitmaps: DirtyBitmap[]): void;
  /** Stops tracking. Idempotent. */
  stop(): void;
}

/**
 * ORs a bitmap of coarser pages into a 4 KiB bitmap, expanding each bit to
 * `factor` bits (for a source whose page is `factor` × 4 KiB).
 *
 * @param dst The 4 KiB bitmap.
 * @param firstPage The 4 KiB page of `dst` that bit 0 of `src` stands for.
 * @param src The coarse bitmap's words.
 * @param options `bits`: how many coarse bits are valid; `factor`: 4 KiB pages per bit.
 * @throws {RangeError} For a factor that is not a positive integer.
 *
 * @example Expand a 2 MiB-page bitmap
 * ```ts
 * import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
 * import { expandBitmapInto } from "./dirty_source.ts";
 * const dst = new DirtyBitmap(1024);
 * expandBitmapInto(dst, 0, new Uint32Array([0b10]), { bits: 2, factor: 512 });
 * console.log(dst.count()); // 512
 * ```
 */
export function expandBitmapInto(
  dst: DirtyBitmap,
  firstPage: number,
  src: Uint32Array,
  options: { bits: number; factor: number },
): void {
  const { bits, factor } = options;
  if (!Number.isInteger(factor) || factor < 1) {
    throw new RangeError(`Cannot expand a bitmap by ${factor}: not a positive integer`);
  }
  for (let w = 0; w < src.length && w * 32 < bits; w++) {
    let v = src[w];
    while (v !== 0) {
      const low = v & -v;
      const bit = w * 32 + 31 - Math.clz32(low);
      v ^= low;
      if (bit >= bits) break;
      const first = firstPage + bit * factor;
      const count = Math.min(factor, dst.pages - first);
      if (count > 0) dst.setRange(first, count);
    }
  }
}
