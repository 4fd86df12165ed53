/**
 * Picks the best dirty tracker that works on the running kernel.
 *
 * @module
 */

import type { Syscalls } from "../sys/syscalls.ts";
import type { DirtyTracker, DirtyTrackerKind } from "./dirty_tracker.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { PagemapScanTracker } from "./pagemap_scan_tracker.ts";
import { SoftDirtyTracker } from "./soft_dirty_tracker.ts";
import { SoftwareDirtyLog } from "./software_dirty_log.ts";

/** Why a tracker was not chosen. */
export interface RejectedTracker {
  /** The tracker kind. */
  kind: DirtyTrackerKind;
  /** What is missing, and how to grant it where it can be granted. */
  reason: string;
}

/** What {@linkcode selectDirtyTracker} chose, and why the others were rejected. */
export interface TrackerSelection {
  /** The tracker, already started. */
  tracker: DirtyTracker;
  /** Its kind. */
  chosen: DirtyTrackerKind;
  /** The better trackers that did not work, best first. */
  rejected: RejectedTracker[];
}

/** The order `auto` tries trackers in: most precise and cheapest first. */
export const AUTO_TRACKER_ORDER: readonly DirtyTrackerKind[] = [
  "pagemap-scan",
  "soft-dirty",
  "software",
];

/**
 * Makes a (stopped) tracker of a given kind.
 *
 * @param memory The guest memory.
 * @param kind The tracker kind.
 * @param options `syscalls` (default: the memory's).
 * @returns The tracker.
 *
 * @example The software log
 * ```ts ignore
 * const t = createDirtyTracker(memory, "software");
 * ```
 */
export function createDirtyTracker(
  memory: GuestMemory,
  kind: DirtyTrackerKind,
  options: { syscalls?: Syscalls } = {},
): DirtyTracker {
  switch (kind) {
    case "pagemap-scan":
      return new PagemapScanTracker(memory, options);
    case "soft-dirty":
      return new SoftDirtyTracker(memory, options);
    case "software":
      return new SoftwareDirtyLog(memory);
  }
}

/**
 * Starts the first tracker in `order` that works (`auto`): PAGEMAP_SCAN with
 * async userfaultfd write-protect, then soft-dirty, then the software log
 * (which always works, but only sees writes through the `GuestMemory` API).
 *
 * @param memory The guest memory.
 * @param options `order`: kinds to try, best first (default
 *   {@linkcode AUTO_TRACKER_ORDER}); `syscalls` (default: the memory's).
 * @returns The started tracker, its kind and the rejections with reasons.
 * @throws {DirtyTrackerUnavailableError} The last failure, if none in `order` works.
 *
 * @example Report the choice
 * ```ts
 * import { GuestMemory } from "./guest_memory.ts";
 * import { selectDirtyTracker } from "./auto_tracker.ts";
 * import { guestAddress } from "../sys/address.ts";
 * using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: 0x10000n }]);
 * const { tracker, chosen, rejected } = selectDirtyTracker(mem);
 * using _ = tracker;
 * console.log(chosen, rejected.map((r) => `${r.kind}: ${r.reason}`));
 * ```
 */
export function selectDirtyTracker(
  memory: GuestMemory,
  options: { order?: readonly DirtyTrackerKind[]; syscalls?: Syscalls } = {},
): TrackerSelection {
  const order = options.order ?? AUTO_TRACKER_ORDER;
  const made = options.syscalls === undefined ? {} : { syscalls: options.syscalls };
  const rejected: RejectedTracker[] = [];
  let last: unknown;
  for (const kind of order) {
    const tracker = createDirtyTracker(memory, kind, made);
    try {
      tracker.start();
      return { tracker, chosen: kind, rejected };
    } catch (e) {
      last = e;
      rejected.push({
        kind,
        reason: e instanceof Error && "reason" in e ? String(e.reason) : String(e),
      });
    }
  }
  throw last ?? new RangeError("Cannot select a dirty tracker from an empty order");
}
