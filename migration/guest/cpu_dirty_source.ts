/**
 * The CPU side as a dirty page source: a `memory/` dirty tracker.
 *
 * @module
 */

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { DirtyTracker } from "../../memory/dirty_tracker.ts";
import type { DirtySource, SourceHarvest } from "../engine/dirty_source.ts";

/**
 * Wraps a CPU dirty tracker (PAGEMAP_SCAN, soft-dirty or the software log).
 *
 * @example
 * ```ts ignore
 * const { tracker } = selectDirtyTracker(memory);
 * const cpu = new CpuDirtySource(tracker);
 * ```
 */
export class CpuDirtySource implements DirtySource {
  /** `cpu:` and the tracker kind. */
  readonly name: string;
  /** CPU trackers report the pages written. */
  readonly scope = "precise" as const;
  /** Whether a harvest is atomic against writers on other threads. */
  readonly concurrentSafe: boolean;
  #tracker: DirtyTracker;

  /**
   * Wraps a tracker.
   *
   * @param tracker The tracker; this source starts and stops it.
   */
  constructor(tracker: DirtyTracker) {
    this.#tracker = tracker;
    this.name = `cpu:${tracker.kind}`;
    this.concurrentSafe = tracker.concurrentSafe;
  }

  /** Starts the tracker (a tracker `selectDirtyTracker` returned is already started). */
  start(): void {
    if (!this.#tracker.active) this.#tracker.start();
  }

  /**
   * ORs the pages written since the last harvest into the bitmaps.
   *
   * @param bitmaps One bitmap per region.
   * @returns What was found.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    const before = bitmaps.reduce((n, b) => n + b.count(), 0);
    this.#tracker.harvest({ into: bitmaps });
    const after = bitmaps.reduce((n, b) => n + b.count(), 0);
    const pages = bitmaps.reduce((n, b) => n + b.pages, 0);
    return { source: this.name, dirtyPages: after - before, scope: "precise", coveredPages: pages };
  }

  /**
   * Covers every page (the CPU can write anywhere).
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    for (const b of bitmaps) b.fillAll();
  }

  /** Stops the tracker. Idempotent. */
  stop(): void {
    if (this.#tracker.active) this.#tracker.stop();
  }
}
