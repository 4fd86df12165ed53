/**
 * The VFIO container as a dirty page source: the container's bitmaps for the
 * guest RAM regions mapped into it, plus the bits of every unmap with a dirty
 * bitmap made during pre-copy (a vIOMMU unmap must not lose pages).
 *
 * @module
 */

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { hex, iova as toIova } from "../../sys/address.ts";
import type { VfioContainer } from "../../vfio/container.ts";
import type { DirtyBitmapReport, DirtyPageTracker } from "../../vfio/dirty_page_tracker.ts";
import {
  type DirtyScope,
  type DirtySource,
  expandBitmapInto,
  type SourceHarvest,
} from "../engine/dirty_source.ts";

const PAGE = 4096n;

/** A guest RAM region as the source sees it. */
export interface RegionLayout {
  /** The region's guest-physical address. */
  readonly gpa: bigint;
  /** Bytes. */
  readonly size: bigint;
}

/** Options of {@linkcode VfioDirtySource}. */
export interface VfioDirtySourceOptions {
  /** IOVA = `iovaBase` + GPA, as `GuestMemory.mapInto` maps (default 0). */
  iovaBase?: bigint;
  /** A per-query bitmap limit below the kernel's (tests). */
  maxBitmapBytes?: bigint;
  /**
   * The devices whose DMA the container sees (default: its groups, as
   * `group N`): a finer source naming the same devices replaces it.
   */
  devices?: readonly string[];
}

/**
 * The devices of a container, as device-side sources name them: `group N`
 * per attached group (its path when it has no number).
 *
 * @param container The container.
 * @returns One name per attached group.
 *
 * @example
 * ```ts ignore
 * containerDevices(container); // ["group 26"]
 * ```
 */
export function containerDevices(container: VfioContainer): string[] {
  return container.groups.map((g) => g.id === undefined ? g.path : `group ${g.id}`);
}

/**
 * Device-side dirty pages from a VFIO container. The bitmap geometry comes
 * from the container's migration capability only (smallest page size, max
 * bitmap size, split queries).
 *
 * @example
 * ```ts ignore
 * const source = new VfioDirtySource(container, memory.regions);
 * source.start();
 * const harvest = source.harvestInto(bitmaps);
 * console.log(harvest.scope); // "all-mapped" with a vfio-pci device
 * ```
 */
export class VfioDirtySource implements DirtySource {
  /** The source's name. */
  readonly name = "vfio-container";
  /** The devices whose DMA it sees. */
  readonly devices: readonly string[];
  #container: VfioContainer;
  #regions: readonly RegionLayout[];
  #iovaBase: bigint;
  #tracker: DirtyPageTracker;
  #maxBitmapBytes: bigint | undefined;
  #pending: DirtyBitmapReport[] = [];
  #scope: DirtyScope = "unknown";

  /**
   * Creates the source (reads the container's migration capability).
   *
   * @param container The container the RAM is mapped into.
   * @param regions The guest RAM regions, in order.
   * @param options The IOVA base and limits.
   * @throws {DirtyTrackingUnavailableError} Without a migration capability.
   */
  constructor(
    container: VfioContainer,
    regions: readonly RegionLayout[],
    options: VfioDirtySourceOptions = {},
  ) {
    this.#container = container;
    this.#regions = regions;
    this.#iovaBase = options.iovaBase ?? 0n;
    // The container's one tracker; a per-source bitmap limit applies per query.
    this.#tracker = container.dirtyTracker();
    this.#maxBitmapBytes = options.maxBitmapBytes;
    this.devices = options.devices ?? containerDevices(container);
  }

  /** Its scope, from the container's classification. */
  get scope(): DirtyScope {
    return this.#scope;
  }

  /** The tracker's page size in bytes. */
  get pageSize(): bigint {
    return this.#tracker.pgsize;
  }

  /** Starts device-side tracking. */
  start(): void {
    this.#tracker.start();
  }

  /** Stops device-side tracking. Idempotent. */
  stop(): void {
    if (this.#tracker.running) this.#tracker.stop();
  }

  /**
   * Unmaps an IOVA range and keeps its dirty bits for the next harvest, as a
   * vIOMMU unmap during pre-copy must.
   *
   * @param iova The first IOVA.
   * @param size Bytes.
   * @returns Bytes unmapped.
   * @throws {IoctlError} If the kernel refuses.
   */
  unmapDma(iova: bigint, size: bigint): bigint {
    const r = this.#container.unmapDma(toIova(iova), size, { dirtyBitmap: true });
    if (r.dirty) this.#pending.push(r.dirty);
    return r.unmapped;
  }

  /** Maps a report's bits onto the regions it overlaps. */
  #mergeReport(report: DirtyBitmapReport, bitmaps: DirtyBitmap[]): number {
    let n = 0;
    const factor = Number(report.pgsize / PAGE);
    const gpaStart = report.iova - this.#iovaBase;
    this.#regions.forEach((r, i) => {
      const from = r.gpa > gpaStart ? r.gpa : gpaStart;
      const end = gpaStart + report.size;
      const to = r.gpa + r.size < end ? r.gpa + r.size : end;
      if (to <= from) return;
      const before = bitmaps[i].count();
      if (
        report.allMapped && from === r.gpa && to === r.gpa + r.size &&
        report.mappedPages * factor >= r.size / PAGE
      ) {
        bitmaps[i].fillAll(); // every page of the region: O(words), no bit walk
      } else if (
        factor === 1 && from === gpaStart && gpaStart === r.gpa && report.size === r.size
      ) {
        bitmaps[i].orMerge(report.bitmap);
      } else {
        // Bit k of the report is GPA gpaStart + k * pgsize.
        const skip = Number((from - gpaStart) / report.pgsize);
        const bits = Number((to - from + report.pgsize - 1n) / report.pgsize);
        const shifted = new Uint32Array(Math.ceil(bits / 32) + 1);
        for (let k = 0; k < bits; k++) {
          const b = skip + k;
          if (report.bitmap[b >>> 5] & (1 << (b & 31))) shifted[k >>> 5] |= 1 << (k & 31);
        }
        expandBitmapInto(bitmaps[i], Number((from - r.gpa) / PAGE), shifted, { bits, factor });
      }
      n += bitmaps[i].count() - before;
    });
    return n;
  }

  /**
   * ORs the container's dirty pages for every mapped region, and the bits of
   * unmaps since the last harvest, into the bitmaps.
   *
   * @param bitmaps One 4 KiB bitmap per region.
   * @returns What was found; `scope` is `all-mapped` when the container
   *   reported every mapped page.
   * @throws {VfioStateError} When tracking is not started.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    let dirty = 0;
    let covered = 0;
    let allMapped = true;
    for (const r of this.#regions) {
      const report = this.#tracker.query(
        this.#iovaBase + r.gpa,
        r.size,
        this.#maxBitmapBytes === undefined ? {} : { maxBitmapBytes: this.#maxBitmapBytes },
      );
      covered += report.mappedPages * Number(report.pgsize / PAGE);
      if (report.mappedPages > 0 && !report.allMapped) allMapped = false;
      dirty += this.#mergeReport(report, bitmaps);
    }
    for (const report of this.#pending.splice(0)) dirty += this.#mergeReport(report, bitmaps);
    if (covered > 0) this.#scope = allMapped ? "all-mapped" : "precise";
    return { source: this.name, dirtyPages: dirty, scope: this.#scope, coveredPages: covered };
  }

  /**
   * ORs the pages mapped into the container into the bitmaps.
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    markMapped(this.#container, this.#regions, { bitmaps, iovaBase: this.#iovaBase });
  }

  /** Describes the source for reports. */
  toString(): string {
    return `${this.name} (pgsize ${hex(this.#tracker.pgsize)}, scope ${this.#scope})`;
  }
}

/**
 * ORs the pages of every mapping of a container into per-region bitmaps.
 *
 * @param container The container.
 * @param regions The guest RAM regions.
 * @param options The bitmaps, and the IOVA base (IOVA = base + GPA).
 *
 * @example
 * ```ts ignore
 * markMapped(container, memory.regions, { bitmaps, iovaBase: 0n });
 * ```
 */
export function markMapped(
  container: VfioContainer,
  regions: readonly RegionLayout[],
  options: { bitmaps: DirtyBitmap[]; iovaBase: bigint },
): void {
  for (const m of container.mappings) {
    const gpa = m.iova - options.iovaBase;
    regions.forEach((r, i) => {
      const from = r.gpa > gpa ? r.gpa : gpa;
      const to = r.gpa + r.size < gpa + m.size ? r.gpa + r.size : gpa + m.size;
      if (to > from) {
        options.bitmaps[i].setRange(Number((from - r.gpa) / PAGE), Number((to - from) / PAGE));
      }
    });
  }
}
