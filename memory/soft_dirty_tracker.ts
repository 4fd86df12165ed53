/**
 * Dirty tracking with the kernel's soft-dirty bits: `echo 4 >
 * /proc/self/clear_refs`, then bit 55 of each `/proc/self/pagemap` entry.
 * Needs `CONFIG_MEM_SOFT_DIRTY` (Debian 6.1 has it; this project's 6.18 host
 * kernels do not).
 *
 * @module
 */

import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import { hostView } from "../sys/host_memory.ts";
import { CLEAR_REFS_SOFT_DIRTY, PagemapReader, writeClearRefs } from "../sys/pagemap.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { kernelRelease } from "./_privilege.ts";
import { DirtyBitmap } from "./dirty_bitmap.ts";
import { type DirtyTracker, type HarvestOptions, harvestTargets } from "./dirty_tracker.ts";
import { DirtyTrackerUnavailableError } from "./errors.ts";
import type { GuestMemory } from "./guest_memory.ts";

/** Pagemap entries read per `pread`. */
const CHUNK_PAGES = 32768;
/** Bit 55 of an entry is bit 23 of its high word. */
const SOFT_DIRTY_HIGH = 1 << 23;

interface Entry {
  memory: GuestMemory;
  pending: DirtyBitmap[];
}

// clear_refs clears the soft-dirty bits of the whole process, so every clear
// first folds the bits of every active tracker on the same kernel into its
// pending bitmaps. A kernel is a Syscalls object: trackers on libc share one
// process; each fake kernel is a world of its own. (Trackers in other
// Workers of the process are not coordinated: use at most one isolate with
// soft-dirty trackers.)
interface Kernel {
  sys: Syscalls;
  active: Set<Entry>;
  reader?: PagemapReader;
  chunk?: Uint32Array;
}
const kernels = new WeakMap<Syscalls, Kernel>();

function kernelOf(sys: Syscalls): Kernel {
  let k = kernels.get(sys);
  if (k === undefined) {
    k = { sys, active: new Set() };
    kernels.set(sys, k);
  }
  return k;
}

function readerOf(k: Kernel): PagemapReader {
  return k.reader ??= new PagemapReader({ syscalls: k.sys });
}

/** Closes the shared pagemap fd once no tracker of the kernel is active. */
function releaseIdle(k: Kernel): void {
  if (k.active.size !== 0 || k.reader === undefined) return;
  const reader = k.reader;
  k.reader = undefined;
  reader.close();
}

function collect(k: Kernel, e: Entry): void {
  const reader = readerOf(k);
  const chunk = k.chunk ??= new Uint32Array(CHUNK_PAGES * 2);
  const regions = e.memory.regions;
  for (let r = 0; r < regions.length; r++) {
    const region = regions[r];
    const words = e.pending[r].words;
    for (let first = 0; first < region.pages; first += CHUNK_PAGES) {
      const n = Math.min(CHUNK_PAGES, region.pages - first);
      const buf = n === CHUNK_PAGES ? chunk : chunk.subarray(0, n * 2);
      reader.read(region.hostAddress + BigInt(first) * 4096n, buf);
      for (let i = 0; i < n; i++) {
        if ((buf[2 * i + 1] & SOFT_DIRTY_HIGH) !== 0) {
          const p = first + i;
          words[p >>> 5] |= 1 << (p & 31);
        }
      }
    }
  }
}

/** Folds every active tracker's bits into its pending bitmaps, then clears. */
function collectAllAndClear(k: Kernel): void {
  for (const e of k.active) collect(k, e);
  writeClearRefs(CLEAR_REFS_SOFT_DIRTY, { syscalls: k.sys });
}

/** The result of {@linkcode probeSoftDirty}. */
export type SoftDirtyProbe = { ok: true } | { ok: false; reason: string };

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Checks whether soft-dirty works on this kernel by clearing the bits,
 * writing a scratch page and looking for bit 55 (clear_refs accepts `4` even
 * where soft-dirty is not compiled in, so only a write shows it). Active
 * soft-dirty trackers on the same `syscalls` keep their bits (they are
 * folded in first).
 *
 * @param options `syscalls` (default libc).
 * @returns `{ ok: true }`, or why not.
 *
 * @example Probe
 * ```ts ignore
 * const probe = probeSoftDirty();
 * if (!probe.ok) console.log(probe.reason);
 * ```
 */
export function probeSoftDirty(options: { syscalls?: Syscalls } = {}): SoftDirtyProbe {
  const k = kernelOf(options.syscalls ?? defaultSyscalls());
  const sys = k.sys;
  let addr: bigint;
  try {
    addr = sys.mmap(4096n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  } catch (e) {
    return { ok: false, reason: `cannot map a scratch page for the probe (${message(e)})` };
  }
  try {
    const page = hostView(addr, 4096);
    page[0] = 1;
    try {
      collectAllAndClear(k);
    } catch (e) {
      return { ok: false, reason: `cannot write "4" to /proc/self/clear_refs (${message(e)})` };
    }
    page[1] = 2;
    const entry = new Uint32Array(2);
    try {
      readerOf(k).read(addr, entry);
    } catch (e) {
      return { ok: false, reason: `cannot read /proc/self/pagemap (${message(e)})` };
    }
    if ((entry[1] & SOFT_DIRTY_HIGH) === 0) {
      return {
        ok: false,
        reason: `soft-dirty is not compiled in (CONFIG_MEM_SOFT_DIRTY) on kernel ${
          kernelRelease(sys)
        }: /proc/self/clear_refs accepted "4" but pagemap bit 55 stayed clear after a write`,
      };
    }
    return { ok: true };
  } finally {
    try {
      sys.munmap(addr, 4096n);
    } finally {
      releaseIdle(k);
    }
  }
}

/**
 * Tracks CPU writes with soft-dirty bits. `start()` clears them
 * (`clear_refs`); `harvest()` reads the region's pagemap entries and clears
 * again. clear_refs is process-wide, so all soft-dirty trackers of a thread
 * are coordinated: each clear first folds every tracker's bits into its
 * pending bitmaps.
 *
 * Documented false positives: pages of a VMA the kernel flags `VM_SOFTDIRTY`
 * (after mremap or a VMA merge); with transparent huge pages (THP
 * `always`), a whole 2 MiB page when khugepaged collapses written pages into
 * it (turn THP off with `prctl(PR_SET_THP_DISABLE)` to avoid it); and,
 * since clear_refs skips hugetlb, every page of huge-page regions. Not concurrent-safe: a page first written by
 * another thread between the pagemap read and the clear can be missed, so
 * pause other writers (Workers) across `harvest()`; writes from the
 * harvesting thread itself are never missed.
 *
 * Requires `CONFIG_MEM_SOFT_DIRTY`, `--allow-ffi --allow-read --allow-write`.
 *
 * @example Track and harvest
 * ```ts ignore
 * using tracker = new SoftDirtyTracker(memory);
 * tracker.start();
 * memory.writeU8(guestAddress(0x5000n), 1);
 * console.log(tracker.harvest()[0].test(5)); // true
 * ```
 */
export class SoftDirtyTracker implements DirtyTracker {
  /** Always `"soft-dirty"`. */
  readonly kind = "soft-dirty" as const;
  /** Always `false`: read and clear are two system calls. */
  readonly concurrentSafe = false;
  #memory: GuestMemory;
  #kernel: Kernel;
  #entry?: Entry;
  #closeHook?: Disposable;
  #skipProbe: boolean;

  /**
   * Makes a stopped tracker.
   *
   * @param memory The guest memory to track.
   * @param options `syscalls` (default: the memory's); `unsafeSkipProbe`:
   * start even where soft-dirty does not work (then no page is ever
   * reported); only for measuring harvest cost on such kernels.
   */
  constructor(
    memory: GuestMemory,
    options: { syscalls?: Syscalls; unsafeSkipProbe?: boolean } = {},
  ) {
    this.#memory = memory;
    this.#kernel = kernelOf(options.syscalls ?? memory.syscalls);
    this.#skipProbe = options.unsafeSkipProbe ?? false;
  }

  /**
   * Whether tracking is on.
   *
   * @returns `true` between `start()` and `stop()`.
   */
  get active(): boolean {
    return this.#entry !== undefined;
  }

  /**
   * Probes soft-dirty, then clears the bits. A second call is a no-op.
   *
   * @throws {DirtyTrackerUnavailableError} When soft-dirty does not work here.
   * @throws {TypeError} If the memory is closed.
   */
  start(): void {
    if (this.active) return;
    if (this.#memory.closed) throw new TypeError("Cannot start dirty tracking on closed memory");
    const k = this.#kernel;
    const probe: SoftDirtyProbe = this.#skipProbe ? { ok: true } : probeSoftDirty({
      syscalls: k.sys,
    });
    if (!probe.ok) throw new DirtyTrackerUnavailableError("soft-dirty", probe.reason);
    try {
      collectAllAndClear(k);
    } catch (e) {
      releaseIdle(k);
      throw new DirtyTrackerUnavailableError(
        "soft-dirty",
        `cannot clear the soft-dirty bits (${message(e)})`,
        { cause: e },
      );
    }
    const entry = {
      memory: this.#memory,
      pending: this.#memory.regions.map((r) => new DirtyBitmap(r.pages)),
    };
    k.active.add(entry);
    this.#entry = entry;
    this.#closeHook = this.#memory.onClose(() => this.stop());
  }

  /**
   * Returns the pages whose soft-dirty bit is set (plus any folded in by
   * other trackers' clears) and clears the bits.
   *
   * @param options `into`: bitmaps to OR into.
   * @returns One bitmap per region.
   * @throws {TypeError} If the tracker is not active.
   * @throws {SyscallError} If pagemap or clear_refs fail.
   */
  harvest(options?: HarvestOptions): DirtyBitmap[] {
    const entry = this.#entry;
    if (entry === undefined) throw new TypeError("Cannot harvest: the tracker is not started");
    collectAllAndClear(this.#kernel);
    const out = harvestTargets(this.#memory, options);
    for (let i = 0; i < out.length; i++) {
      out[i].orMerge(entry.pending[i]);
      entry.pending[i].clearAll();
    }
    return out;
  }

  /**
   * Stops tracking (idempotent). The last tracker on a kernel closes the
   * pagemap fd the trackers share.
   *
   * @throws {SyscallError} From closing pagemap (tracking is stopped anyway).
   */
  stop(): void {
    if (this.#entry === undefined) return;
    this.#kernel.active.delete(this.#entry);
    this.#entry = undefined;
    this.#closeHook?.[Symbol.dispose]();
    this.#closeHook = undefined;
    releaseIdle(this.#kernel);
  }

  /** Same as {@linkcode SoftDirtyTracker.stop}. */
  [Symbol.dispose](): void {
    this.stop();
  }
}
