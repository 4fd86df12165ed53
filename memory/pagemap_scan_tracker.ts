/**
 * Dirty tracking with userfaultfd asynchronous write-protect and the
 * `PAGEMAP_SCAN` ioctl (Linux 6.7+).
 *
 * @module
 */

import { PAGE_IS_WRITTEN, PagemapScanner, PM_SCAN_CHECK_WPASYNC } from "../sys/pagemap.ts";
import {
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_REGISTER_MODE_WP,
  Userfaultfd,
} from "../sys/userfaultfd.ts";
import { explainPagemapScan, explainUffdApi, explainUserfaultfd } from "./_privilege.ts";
import type { DirtyBitmap } from "./dirty_bitmap.ts";
import { type DirtyTracker, type HarvestOptions, harvestTargets } from "./dirty_tracker.ts";
import { DirtyTrackerUnavailableError } from "./errors.ts";
import type { GuestMemory } from "./guest_memory.ts";
import type { Syscalls } from "../sys/syscalls.ts";

/** The features requested from `UFFDIO_API`. */
export const PAGEMAP_SCAN_UFFD_FEATURES = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

/**
 * Opens and configures a userfaultfd for async write-protect, translating
 * failures into {@linkcode DirtyTrackerUnavailableError} with what to grant.
 */
function openAsyncWp(sys: Syscalls): Userfaultfd {
  let uffd: Userfaultfd;
  try {
    uffd = Userfaultfd.open({ syscalls: sys });
  } catch (e) {
    throw new DirtyTrackerUnavailableError("pagemap-scan", explainUserfaultfd(e, sys), {
      cause: e,
    });
  }
  try {
    uffd.api(PAGEMAP_SCAN_UFFD_FEATURES);
  } catch (e) {
    uffd.close();
    throw new DirtyTrackerUnavailableError("pagemap-scan", explainUffdApi(e, sys), { cause: e });
  }
  return uffd;
}

/**
 * Tracks CPU writes with userfaultfd async write-protect: `start()` registers
 * every region (`UFFDIO_REGISTER_MODE_WP`) and write-protects it; a write to a
 * protected page is resolved by the kernel without a handler, leaving the
 * page "written"; `harvest()` is one `PAGEMAP_SCAN` per region (more only when
 * the result vector fills) that returns the written runs and re-protects them
 * in the same call, so it is atomic with respect to concurrent writers.
 *
 * Exact on 4 KiB pages: reports exactly the pages written. Documented false
 * positive: on huge-page regions a write marks its whole 2 MiB page. It sees
 * writes by any thread of this process (Workers included) through this
 * mapping; not writes by other processes through their own mapping of a
 * memfd, nor device DMA.
 *
 * Requires Linux 6.7+, `--allow-ffi --allow-read`, and userfaultfd (allowed
 * unprivileged with `UFFD_USER_MODE_ONLY` since 5.11; otherwise
 * `vm.unprivileged_userfaultfd=1` or access to /dev/userfaultfd).
 *
 * @example Track and harvest
 * ```ts ignore
 * using tracker = new PagemapScanTracker(memory);
 * tracker.start();
 * memory.writeU8(guestAddress(0x5000n), 1);
 * console.log(tracker.harvest()[0].pageIndexes()); // [5]
 * ```
 */
export class PagemapScanTracker implements DirtyTracker {
  /** Always `"pagemap-scan"`. */
  readonly kind = "pagemap-scan" as const;
  /** Always `true`: scan and re-protect are one ioctl. */
  readonly concurrentSafe = true;
  #memory: GuestMemory;
  #sys: Syscalls;
  #uffd?: Userfaultfd;
  #scanner?: PagemapScanner;
  #closeHook?: Disposable;

  /**
   * Makes a stopped tracker.
   *
   * @param memory The guest memory to track.
   * @param options `syscalls` (default: the memory's).
   */
  constructor(memory: GuestMemory, options: { syscalls?: Syscalls } = {}) {
    this.#memory = memory;
    this.#sys = options.syscalls ?? memory.syscalls;
  }

  /**
   * Whether tracking is on.
   *
   * @returns `true` between `start()` and `stop()`.
   */
  get active(): boolean {
    return this.#uffd !== undefined;
  }

  /**
   * Registers and write-protects every region (about 26 to 45 ms per GiB
   * here). A second call is a no-op.
   *
   * @throws {DirtyTrackerUnavailableError} Saying what the kernel or the
   * process lacks.
   * @throws {TypeError} If the memory is closed.
   */
  start(): void {
    if (this.active) return;
    if (this.#memory.closed) throw new TypeError("Cannot start dirty tracking on closed memory");
    const sys = this.#sys;
    const uffd = openAsyncWp(sys);
    let scanner: PagemapScanner | undefined;
    try {
      for (const r of this.#memory.regions) {
        const range = { start: r.hostAddress as bigint, len: r.size };
        try {
          uffd.register(range, UFFDIO_REGISTER_MODE_WP);
        } catch (e) {
          throw new DirtyTrackerUnavailableError(
            "pagemap-scan",
            `UFFDIO_REGISTER in write-protect mode failed for ${r} (${r.backing}): ${
              e instanceof Error ? e.message : e
            }`,
            { cause: e },
          );
        }
        uffd.writeProtect(range, true);
      }
      try {
        scanner = new PagemapScanner({ syscalls: sys });
      } catch (e) {
        throw new DirtyTrackerUnavailableError(
          "pagemap-scan",
          `cannot set up PAGEMAP_SCAN on /proc/self/pagemap (${
            e instanceof Error ? e.message : e
          })`,
          { cause: e },
        );
      }
      // Probe the ioctl now, so a kernel without it fails start(), not harvest().
      const first = this.#memory.regions[0];
      try {
        // Without PM_SCAN_WP_MATCHING: reports, but changes nothing.
        scanner.scan(first.hostAddress, first.hostAddress + 4096n, {
          flags: PM_SCAN_CHECK_WPASYNC,
          categoryMask: PAGE_IS_WRITTEN,
          returnMask: PAGE_IS_WRITTEN,
        }, () => {});
      } catch (e) {
        throw new DirtyTrackerUnavailableError("pagemap-scan", explainPagemapScan(e, sys), {
          cause: e,
        });
      }
    } catch (e) {
      try {
        scanner?.close();
      } catch { /* report the start failure */ }
      try {
        uffd.close();
      } catch { /* report the start failure */ }
      throw e;
    }
    this.#uffd = uffd;
    this.#scanner = scanner;
    this.#closeHook = this.#memory.onClose(() => this.stop());
  }

  /**
   * Returns the pages written since `start()` or the last harvest and
   * write-protects them again, atomically per page.
   *
   * @param options `into`: bitmaps to OR into.
   * @returns One bitmap per region.
   * @throws {TypeError} If the tracker is not active.
   * @throws {IoctlError} If `PAGEMAP_SCAN` fails.
   */
  harvest(options?: HarvestOptions): DirtyBitmap[] {
    const scanner = this.#scanner;
    if (scanner === undefined) throw new TypeError("Cannot harvest: the tracker is not started");
    const out = harvestTargets(this.#memory, options);
    const regions = this.#memory.regions;
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i];
      const bm = out[i];
      const base = Number(r.hostAddress);
      scanner.harvestWritten(r.hostAddress, r.hostAddress + r.size, (s, e) => {
        bm.setRange((s - base) / 4096, (e - s) / 4096);
      });
    }
    return out;
  }

  /**
   * Unregisters and closes the userfaultfd and pagemap (idempotent). Every
   * release is tried; the first failure is thrown afterwards.
   *
   * @throws {SyscallError} From `close` or `munmap`.
   */
  stop(): void {
    const uffd = this.#uffd;
    if (uffd === undefined) return;
    this.#uffd = undefined;
    this.#closeHook?.[Symbol.dispose]();
    this.#closeHook = undefined;
    const scanner = this.#scanner;
    this.#scanner = undefined;
    let failure: unknown;
    try {
      scanner?.close();
    } catch (e) {
      failure = e;
    }
    if (!this.#memory.closed) {
      for (const r of this.#memory.regions) {
        try {
          uffd.unregister({ start: r.hostAddress, len: r.size });
        } catch { /* closing the fd below drops the registration anyway */ }
      }
    }
    try {
      uffd.close();
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) throw failure;
  }

  /** Same as {@linkcode PagemapScanTracker.stop}. */
  [Symbol.dispose](): void {
    this.stop();
  }
}
