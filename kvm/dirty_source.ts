/**
 * The shape KVM's dirty sources share with the migration engine's
 * `DirtySource` (`migration/dirty_source.ts`), stated structurally so that
 * `kvm/` depends only on `sys/`: bitmaps of 4 KiB pages as `Uint32Array`
 * words, one per memory slot, and what a harvest found.
 *
 * @module
 */

import { setBitRange } from "../sys/bits.ts";

/** A 4 KiB-page bitmap (such as `memory/`'s `DirtyBitmap`): bit `i` in word `i >> 5`. */
export interface PageBitmap {
  /** Pages tracked. */
  readonly pages: number;
  /** The words; bits at and beyond `pages` are zero. */
  readonly words: Uint32Array;
}

/** What one harvest found (the migration engine's `SourceHarvest`). */
export interface KvmHarvest {
  /** The source's name. */
  readonly source: string;
  /** Pages newly marked in the bitmaps. */
  readonly dirtyPages: number;
  /** KVM reports the pages the guest wrote. */
  readonly scope: "precise";
  /** Pages the source covers: every page of every slot. */
  readonly coveredPages: number;
}

/** The dirty-source methods both KVM sources have. */
export interface KvmDirtySource {
  /** A short name for reports. */
  readonly name: string;
  /** `"precise"`: the pages the guest wrote. */
  readonly scope: "precise";
  /** Harvests are safe while vCPUs run. */
  readonly concurrentSafe: true;
  /** Starts logging. */
  start(): void;
  /**
   * ORs the pages written since the last harvest (or `start`) into one
   * bitmap per slot, and resets the log.
   *
   * @param bitmaps One bitmap per `Vm.slots` entry, in slot order.
   * @returns What was found.
   */
  harvestInto(bitmaps: PageBitmap[]): KvmHarvest;
  /**
   * Marks every page the guest can write (all of every slot).
   *
   * @param bitmaps One bitmap per slot.
   */
  coverInto(bitmaps: PageBitmap[]): void;
  /** Stops logging. Idempotent. */
  stop(): void;
}

/**
 * Marks every page of each bitmap.
 *
 * @param bitmaps The bitmaps.
 *
 * @example
 * ```ts
 * import { coverAll } from "./dirty_source.ts";
 * const bm = { pages: 70, words: new Uint32Array(4) };
 * coverAll([bm]);
 * console.log(bm.words[2]); // 63
 * ```
 */
export function coverAll(bitmaps: readonly PageBitmap[]): void {
  for (const b of bitmaps) setBitRange(b.words, 0, b.pages);
}

/**
 * Checks that there is one bitmap per slot, each large enough.
 *
 * @param bitmaps The bitmaps.
 * @param slots The slots' sizes in pages.
 * @throws {RangeError} When they do not match.
 */
export function checkBitmaps(bitmaps: readonly PageBitmap[], slots: readonly number[]): void {
  if (bitmaps.length !== slots.length) {
    throw new RangeError(
      `Cannot harvest into ${bitmaps.length} bitmaps: the VM has ${slots.length} slots`,
    );
  }
  slots.forEach((pages, i) => {
    if (bitmaps[i].pages < pages || bitmaps[i].words.length * 32 < pages) {
      throw new RangeError(
        `Cannot harvest slot ${i} (${pages} pages) into a bitmap of ${bitmaps[i].pages} pages`,
      );
    }
  });
}
