/**
 * The CPU-side dirty tracking interface: which guest pages the CPU (this
 * process's threads) wrote since tracking started or since the last harvest.
 *
 * @module
 */

import { DirtyBitmap } from "./dirty_bitmap.ts";
import type { GuestMemory } from "./guest_memory.ts";

/** The tracker implementations. */
export type DirtyTrackerKind = "pagemap-scan" | "soft-dirty" | "software";

/** Options of {@linkcode DirtyTracker.harvest}. */
export interface HarvestOptions {
  /**
   * Bitmaps (one per region, as from {@linkcode createDirtyBitmaps}) to OR
   * the harvest into instead of allocating new ones.
   */
  into?: DirtyBitmap[];
}

/**
 * Tracks writes to guest memory at 4 KiB page granularity.
 *
 * The contract every implementation keeps: a page written after `start()`
 * (or after the previous `harvest()` returned) is set in the next harvest's
 * bitmap. Extra pages (false positives) appear only where the implementation
 * documents them.
 *
 * @example Harvest twice
 * ```ts ignore
 * using tracker = selectDirtyTracker(memory).tracker;
 * tracker.start();
 * memory.writeU32(guestAddress(0x1000n), 7);
 * const [bm] = tracker.harvest(); // page 1 set
 * const [again] = tracker.harvest(); // clean
 * ```
 */
export interface DirtyTracker extends Disposable {
  /** Which implementation this is. */
  readonly kind: DirtyTrackerKind;
  /** Whether tracking is on (between `start()` and `stop()`). */
  readonly active: boolean;
  /**
   * Whether `harvest()` is atomic with respect to writers running on other
   * threads (a write racing a harvest lands in this harvest or the next).
   * `false` for soft-dirty, whose read-then-clear is two system calls: pause
   * other writers across `harvest()` there.
   */
  readonly concurrentSafe: boolean;
  /**
   * Starts tracking: pages written from now on will be reported.
   *
   * @throws {DirtyTrackerUnavailableError} When the kernel or privileges do
   * not allow this tracker.
   */
  start(): void;
  /**
   * Returns, per region, the pages written since `start()` or the previous
   * harvest, and resets tracking so the next harvest starts from now.
   *
   * @param options `into`: bitmaps to OR into.
   * @returns One bitmap per region, in `memory.regions` order.
   * @throws {TypeError} If the tracker is not active.
   */
  harvest(options?: HarvestOptions): DirtyBitmap[];
  /** Stops tracking and releases kernel resources (idempotent). */
  stop(): void;
}

/**
 * Makes one clear bitmap per region of `memory`.
 *
 * @param memory The guest memory.
 * @returns The bitmaps, in `memory.regions` order.
 *
 * @example One bitmap per region
 * ```ts ignore
 * const bitmaps = createDirtyBitmaps(memory);
 * ```
 */
export function createDirtyBitmaps(memory: GuestMemory): DirtyBitmap[] {
  return memory.regions.map((r) => new DirtyBitmap(r.pages));
}

/** Validates `into` or makes fresh bitmaps. */
export function harvestTargets(memory: GuestMemory, options: HarvestOptions = {}): DirtyBitmap[] {
  const into = options.into;
  if (into === undefined) return createDirtyBitmaps(memory);
  const rs = memory.regions;
  if (into.length !== rs.length || into.some((b, i) => b.pages !== rs[i].pages)) {
    throw new RangeError("Cannot harvest into bitmaps that do not match the regions");
  }
  return into;
}
