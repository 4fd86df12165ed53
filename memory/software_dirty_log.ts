/**
 * The software dirty log: writes made through the `GuestMemory` API mark
 * pages. It works on every kernel and never misses such a write.
 *
 * @module
 */

import { DirtyBitmap } from "./dirty_bitmap.ts";
import { type DirtyTracker, type HarvestOptions, harvestTargets } from "./dirty_tracker.ts";
import type { GuestMemory } from "./guest_memory.ts";

/**
 * A structured-clonable handle to a software log's shared bitmaps, for
 * {@linkcode joinSoftwareDirtyLog} in a Worker.
 */
export interface SoftwareDirtyLogHandle {
  /** One `SharedArrayBuffer` of bitmap words per region. */
  words: SharedArrayBuffer[];
  /** Pages per region. */
  pages: number[];
}

/** Sets page bits `[first, last]` in shared words with `Atomics.or`. */
function markPages(words: Uint32Array, first: number, last: number): void {
  let i = first >>> 5;
  const end = last >>> 5;
  for (; i <= end; i++) {
    const lo = i === first >>> 5 ? first & 31 : 0;
    const hi = i === end ? last & 31 : 31;
    const mask = ((0xffffffff >>> (31 - hi)) & (0xffffffff << lo)) >>> 0;
    if (((words[i] & mask) >>> 0) !== mask) Atomics.or(words, i, mask);
  }
}

function observerFor(
  words: Uint32Array[],
): (region: number, offset: number, length: number) => void {
  return (region, offset, length) => {
    if (length === 0) return;
    markPages(words[region], Math.floor(offset / 4096), Math.floor((offset + length - 1) / 4096));
  };
}

/**
 * Tracks writes made through one `GuestMemory` object (and through any
 * `GuestMemory.attach()`ed copy in a Worker that called
 * {@linkcode joinSoftwareDirtyLog}).
 *
 * Exact for writes through `write`, `fill` and `writeU*`: a page is reported
 * if and only if such a write touched it. Documented false positive:
 * `view()` counts as a write of its whole range when it is created. Not
 * seen: writes through a view kept past a harvest, through raw host
 * addresses, or by devices. Concurrent-safe: marking is an `Atomics.or`
 * after the data is written, and harvest takes each word with
 * `Atomics.exchange`.
 *
 * @example Track API writes
 * ```ts
 * import { GuestMemory } from "./guest_memory.ts";
 * import { SoftwareDirtyLog } from "./software_dirty_log.ts";
 * import { guestAddress } from "../sys/address.ts";
 * using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: 0x10000n }]);
 * using log = new SoftwareDirtyLog(mem);
 * log.start();
 * mem.writeU8(guestAddress(0x3000n), 1);
 * console.log(log.harvest()[0].pageIndexes()); // [3]
 * ```
 */
export class SoftwareDirtyLog implements DirtyTracker {
  /** Always `"software"`. */
  readonly kind = "software" as const;
  /** Always `true`. */
  readonly concurrentSafe = true;
  #memory: GuestMemory;
  #words: Uint32Array[] = [];
  #observer?: Disposable;
  #closeHook?: Disposable;

  /**
   * Makes a stopped log for `memory`.
   *
   * @param memory The guest memory whose API writes are logged.
   */
  constructor(memory: GuestMemory) {
    this.#memory = memory;
  }

  /**
   * Whether the log is recording.
   *
   * @returns `true` between `start()` and `stop()`.
   */
  get active(): boolean {
    return this.#observer !== undefined;
  }

  /**
   * Starts logging; a second call is a no-op.
   *
   * @throws {TypeError} If the memory is closed.
   */
  start(): void {
    if (this.active) return;
    if (this.#memory.closed) throw new TypeError("Cannot start a dirty log on closed memory");
    this.#words = this.#memory.regions.map((r) =>
      new Uint32Array(new SharedArrayBuffer(DirtyBitmap.wordsFor(r.pages) * 4))
    );
    this.#observer = this.#memory.observeWrites(observerFor(this.#words));
    this.#closeHook = this.#memory.onClose(() => this.stop());
  }

  /**
   * Handles for Workers to log into this log.
   *
   * @returns The shared bitmaps.
   * @throws {TypeError} If the log is not active.
   */
  share(): SoftwareDirtyLogHandle {
    if (!this.active) throw new TypeError("Cannot share a dirty log that is not started");
    return {
      words: this.#words.map((w) => w.buffer as SharedArrayBuffer),
      pages: this.#memory.regions.map((r) => r.pages),
    };
  }

  /**
   * Takes the pages logged since the last harvest, word by word with
   * `Atomics.exchange`.
   *
   * @param options `into`: bitmaps to OR into.
   * @returns One bitmap per region.
   * @throws {TypeError} If the log is not active.
   */
  harvest(options?: HarvestOptions): DirtyBitmap[] {
    if (!this.active) throw new TypeError("Cannot harvest a dirty log that is not started");
    const out = harvestTargets(this.#memory, options);
    for (let r = 0; r < out.length; r++) {
      const src = this.#words[r];
      const dst = out[r].words;
      const n = src.length; // a multiple of 2
      for (let i = 0; i < n; i += 2) {
        if ((src[i] | src[i + 1]) === 0) continue;
        if (src[i] !== 0) dst[i] |= Atomics.exchange(src, i, 0);
        if (src[i + 1] !== 0) dst[i + 1] |= Atomics.exchange(src, i + 1, 0);
      }
    }
    return out;
  }

  /** Stops logging (idempotent). */
  stop(): void {
    this.#observer?.[Symbol.dispose]();
    this.#closeHook?.[Symbol.dispose]();
    this.#observer = undefined;
    this.#closeHook = undefined;
  }

  /** Same as {@linkcode SoftwareDirtyLog.stop}. */
  [Symbol.dispose](): void {
    this.stop();
  }
}

/**
 * Logs writes made through `memory` (typically a `GuestMemory.attach()`ed
 * copy in a Worker) into a {@linkcode SoftwareDirtyLog} of the main thread.
 *
 * @param memory The attached memory.
 * @param handle From `SoftwareDirtyLog.share()`.
 * @returns A disposable that stops logging.
 * @throws {RangeError} If the handle does not match the memory's regions.
 *
 * @example In a Worker
 * ```ts ignore
 * const mem = GuestMemory.attach(msg.memory);
 * using _log = joinSoftwareDirtyLog(mem, msg.log);
 * mem.writeU8(guestAddress(0n), 1); // logged in the main thread's log
 * ```
 */
export function joinSoftwareDirtyLog(
  memory: GuestMemory,
  handle: SoftwareDirtyLogHandle,
): Disposable {
  const rs = memory.regions;
  if (handle.pages.length !== rs.length || handle.pages.some((p, i) => p !== rs[i].pages)) {
    throw new RangeError("Cannot join a dirty log made for different regions");
  }
  return memory.observeWrites(observerFor(handle.words.map((b) => new Uint32Array(b))));
}
