/**
 * Device dirty pages from an iommufd hardware page table: the pages the
 * IOMMU saw the device write, and nothing else, so the source is precise by
 * construction. Shaped like the migration engine's dirty sources
 * (`start`, `harvestInto(bitmaps)`, `coverInto`, `stop`) without depending
 * on the engine: it ORs 4 KiB-page bits into one bitmap per guest RAM region.
 *
 * Unmapping while tracking reads the range's bits first (with
 * `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`, as the kernel recommends before an
 * unmap) and keeps them for the next harvest, so no page is lost.
 *
 * @module
 */

import { hex, type Iova, iova as toIova } from "../../sys/address.ts";
import { orBitsAt, popcount } from "../../sys/bits.ts";
import { HOST_PAGE_SIZE } from "../../sys/constants.ts";
import { VfioStateError } from "../errors.ts";
import type { HwPagetable, IommufdDirtyReport } from "./hw_pagetable.ts";
import type { IommufdIoas } from "./ioas.ts";

const PAGE = BigInt(HOST_PAGE_SIZE);

/** A 4 KiB-page bitmap the tracker ORs into (the engine's `DirtyBitmap` is one). */
export interface PageBitmap {
  /** Pages tracked. */
  readonly pages: number;
  /** One bit per page: bit `i & 31` of word `i >> 5`. */
  readonly words: Uint32Array;
}

/** A guest RAM region as the tracker sees it. */
export interface TrackedRegion {
  /** The region's guest-physical address; its IOVA is `iovaBase + gpa`. */
  readonly gpa: bigint;
  /** Bytes (a multiple of 4 KiB). */
  readonly size: bigint;
}

/** What one harvest found (the engine's `SourceHarvest`). */
export interface IommufdHarvest {
  /** The source's name. */
  readonly source: string;
  /** Pages the IOMMU reported dirty (4 KiB pages), unmapped ranges included. */
  readonly dirtyPages: number;
  /** Always `precise`: only pages the device wrote. */
  readonly scope: "precise";
  /** Pages of the regions mapped in the IOAS. */
  readonly coveredPages: number;
}

/** Options of {@linkcode IommufdDirtyTracker}. */
export interface IommufdDirtyTrackerOptions {
  /** IOVA = `iovaBase` + GPA (default 0). */
  iovaBase?: bigint;
  /** The largest bitmap one `IOMMU_HWPT_GET_DIRTY_BITMAP` passes (default 1 MiB: 32 GiB of RAM). */
  maxBitmapBytes?: bigint;
}

/**
 * Precise device-side dirty tracking through an iommufd HWPT allocated with
 * dirty tracking.
 *
 * @example Harvest what the device wrote
 * ```ts ignore
 * const tracker = new IommufdDirtyTracker(hwpt, ioas, [{ gpa: 0n, size: ram }], { iovaBase });
 * tracker.start();
 * const harvest = tracker.harvestInto([bitmap]);
 * console.log(harvest.dirtyPages);
 * tracker.stop();
 * ```
 */
export class IommufdDirtyTracker {
  /** The source's name. */
  readonly name = "iommufd-hwpt";
  /** A harvest reads and clears each PTE's dirty bit atomically: writes racing it are kept. */
  readonly concurrentSafe = true;
  #hwpt: HwPagetable;
  #ioas: IommufdIoas;
  #regions: readonly TrackedRegion[];
  #iovaBase: bigint;
  #chunk: bigint;
  #pending: IommufdDirtyReport[] = [];

  /**
   * Creates the tracker (not started).
   *
   * @param hwpt A HWPT allocated with `dirtyTracking: true`, the device attached to it.
   * @param ioas The IOAS the RAM is mapped in (for unmaps).
   * @param regions The guest RAM regions, in order, and options.
   * @param options The IOVA base and the per-call bitmap limit.
   * @throws {RangeError} For a region not made of whole 4 KiB pages, or a bad limit.
   */
  constructor(
    hwpt: HwPagetable,
    ioas: IommufdIoas,
    regions: readonly TrackedRegion[],
    options: IommufdDirtyTrackerOptions = {},
  ) {
    for (const r of regions) {
      if (r.size <= 0n || r.gpa % PAGE !== 0n || r.size % PAGE !== 0n) {
        throw new RangeError(
          `Cannot track region ${hex(r.gpa)}+${hex(r.size)}: not whole 4 KiB pages`,
        );
      }
    }
    const max = options.maxBitmapBytes ?? 1n << 20n;
    if (max <= 0n || max % 8n !== 0n) {
      throw new RangeError(
        `Cannot limit dirty bitmaps to ${max} bytes: not a positive multiple of 8`,
      );
    }
    this.#hwpt = hwpt;
    this.#ioas = ioas;
    this.#regions = regions;
    this.#iovaBase = options.iovaBase ?? 0n;
    this.#chunk = max * 8n * PAGE;
  }

  /** Always `precise`. */
  get scope(): "precise" {
    return "precise";
  }

  /** Whether tracking is enabled on the HWPT. */
  get running(): boolean {
    return this.#hwpt.tracking;
  }

  /**
   * Enables dirty tracking on the HWPT (a clean start).
   *
   * @throws {DirtyTrackingUnavailableError} When the HWPT cannot track.
   * @throws {IoctlError} If the kernel refuses.
   */
  start(): void {
    this.#pending = [];
    this.#hwpt.setDirtyTracking(true);
  }

  /**
   * Disables dirty tracking. Idempotent.
   *
   * @throws {IoctlError} If the kernel refuses.
   */
  stop(): void {
    if (this.#hwpt.tracking) this.#hwpt.setDirtyTracking(false);
    this.#pending = [];
  }

  /**
   * Reads (and clears) the mapped parts of a range, one mapping at a time
   * (the kernel stops at the first hole in the IOAS, see
   * `HwPagetable.readDirty`), in chunks of at most the bitmap limit.
   */
  #read(iova: bigint, size: bigint, noClear: boolean): IommufdDirtyReport[] {
    const out: IommufdDirtyReport[] = [];
    const end = iova + size;
    for (const m of this.#ioas.mappings) {
      const from = m.iova > iova ? m.iova : iova;
      const to = m.end < end ? m.end : end;
      for (let at = from; at < to; at += this.#chunk) {
        const n = to - at < this.#chunk ? to - at : this.#chunk;
        out.push(this.#hwpt.readDirty(at, n, { noClear }));
      }
    }
    return out;
  }

  /** ORs a report's bits into the regions it overlaps; returns the bits it carried. */
  #merge(report: IommufdDirtyReport, bitmaps: readonly PageBitmap[]): number {
    const gpa = report.iova - this.#iovaBase;
    const end = gpa + report.length;
    this.#regions.forEach((r, i) => {
      const from = r.gpa > gpa ? r.gpa : gpa;
      const to = r.gpa + r.size < end ? r.gpa + r.size : end;
      if (to <= from) return;
      const skip = Number((from - gpa) / PAGE);
      const bits = Number((to - from) / PAGE);
      const src = skip === 0 ? report.bitmap : shiftDown(report.bitmap, skip, bits);
      orBitsAt(bitmaps[i].words, Number((from - r.gpa) / PAGE), src, bits);
    });
    return report.dirtyPages;
  }

  /**
   * ORs the pages the device wrote since the last harvest (or `start`) into
   * the bitmaps, with those of unmaps made through
   * {@linkcode IommufdDirtyTracker.unmap}, and clears the IOMMU's record.
   * Only pages mapped in the IOAS through its object are read.
   *
   * @param bitmaps One 4 KiB-page bitmap per region, in region order.
   * @returns What was found.
   * @throws {VfioStateError} When tracking is not started.
   * @throws {RangeError} When a bitmap is shorter than its region.
   * @throws {IoctlError} If the kernel refuses.
   */
  harvestInto(bitmaps: readonly PageBitmap[]): IommufdHarvest {
    if (!this.#hwpt.tracking) {
      throw new VfioStateError("Cannot harvest iommufd dirty pages: tracking is not started");
    }
    this.#regions.forEach((r, i) => {
      if (bitmaps[i] === undefined || BigInt(bitmaps[i].pages) * PAGE < r.size) {
        throw new RangeError(
          `Cannot harvest into bitmap ${i}: region ${hex(r.gpa)} has ${r.size / PAGE} pages`,
        );
      }
    });
    let dirty = 0;
    for (const r of this.#regions) {
      for (const report of this.#read(this.#iovaBase + r.gpa, r.size, false)) {
        dirty += this.#merge(report, bitmaps);
      }
    }
    for (const report of this.#pending.splice(0)) dirty += this.#merge(report, bitmaps);
    return {
      source: this.name,
      dirtyPages: dirty,
      scope: "precise",
      coveredPages: this.#covered(),
    };
  }

  #covered(): number {
    let pages = 0n;
    for (const m of this.#ioas.mappings) {
      for (const r of this.#regions) {
        const lo = this.#iovaBase + r.gpa;
        const hi = lo + r.size;
        const from = m.iova > lo ? m.iova : lo;
        const to = m.end < hi ? m.end : hi;
        if (to > from) pages += (to - from) / PAGE;
      }
    }
    return Number(pages);
  }

  /**
   * Marks the pages of the regions that are mapped in the IOAS.
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: readonly PageBitmap[]): void {
    for (const m of this.#ioas.mappings) {
      this.#regions.forEach((r, i) => {
        const lo = this.#iovaBase + r.gpa;
        const from = m.iova > lo ? m.iova : lo;
        const to = m.end < lo + r.size ? m.end : lo + r.size;
        if (to <= from) return;
        const first = Number((from - lo) / PAGE);
        const n = Number((to - from) / PAGE);
        const ones = new Uint32Array(Math.ceil(n / 32)).fill(0xffff_ffff);
        orBitsAt(bitmaps[i].words, first, ones, n);
      });
    }
  }

  /**
   * Unmaps an IOVA range from the IOAS while tracking, keeping its dirty bits
   * for the next harvest: they are read first with
   * `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`, then the range is unmapped.
   * Without tracking it is a plain unmap.
   *
   * @param iova The first IOVA.
   * @param size Bytes; the range must cover whole mappings.
   * @returns Bytes unmapped.
   * @throws {IoctlError} If the kernel refuses the read (nothing is unmapped)
   *   or the unmap (the bits read are kept for the next harvest).
   */
  unmap(iova: Iova | bigint, size: bigint): bigint {
    if (this.#hwpt.tracking) this.#pending.push(...this.#read(iova, size, true));
    return this.#ioas.unmap(toIova(iova), size);
  }
}

/** Bits `[skip, skip + bits)` of `src`, moved down to bit 0. */
function shiftDown(src: Uint32Array, skip: number, bits: number): Uint32Array {
  const out = new Uint32Array(Math.ceil(bits / 32) + 1);
  for (let k = 0; k < bits; k++) {
    const b = skip + k;
    if (src[b >>> 5] & (1 << (b & 31))) out[k >>> 5] |= 1 << (k & 31);
  }
  return out;
}

/**
 * Counts the set bits of a page bitmap.
 *
 * @param bitmap The bitmap.
 * @returns Set bits.
 *
 * @example
 * ```ts
 * import { countPages } from "./dirty_tracker.ts";
 * console.log(countPages({ pages: 64, words: new Uint32Array([5, 0]) })); // 2
 * ```
 */
export function countPages(bitmap: PageBitmap): number {
  return popcount(bitmap.words);
}
