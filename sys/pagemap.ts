/**
 * `/proc/self/pagemap`: 64-bit entries per page (soft-dirty is bit 55), the
 * `PAGEMAP_SCAN` ioctl (Linux 6.7) and `/proc/self/clear_refs`.
 *
 * `PAGEMAP_SCAN` mirrors `struct pm_scan_arg` and `struct page_region` from
 * upstream `linux/fs.h` (the installed 6.1 headers predate it);
 * `memory/uapi_layout_test.ts` pins the numbers against a C program.
 *
 * Requires `--allow-ffi` and `--allow-read` (`--allow-write` for clear_refs).
 *
 * @module
 */

import { MAP_ANONYMOUS, MAP_PRIVATE, O_CLOEXEC, O_RDONLY } from "./constants.ts";
import { EIO } from "./errno.ts";
import { SyscallError } from "./errors.ts";
import { hostView } from "./host_memory.ts";
import { defaultSyscalls } from "./libc.ts";
import { type ProcOptions, writeProcFile } from "./procfs.ts";
import type { IoctlRequest, PagemapSyscalls } from "./syscalls.ts";

/** `_IOWR('f', 16, struct pm_scan_arg)`. */
export const PAGEMAP_SCAN: IoctlRequest = { name: "PAGEMAP_SCAN", code: 0xc0606610n };
/** `sizeof(struct pm_scan_arg)`. */
export const PM_SCAN_ARG_SIZE = 96;
/** `sizeof(struct page_region)`. */
export const PAGE_REGION_SIZE = 24;
/** Category: the page was written since it was write-protected (uffd-wp). */
export const PAGE_IS_WRITTEN = 1 << 1;
/** Flag: write-protect the pages that match. */
export const PM_SCAN_WP_MATCHING = 1 << 0;
/** Flag: fail rather than skip a page whose VMA is not registered for async WP. */
export const PM_SCAN_CHECK_WPASYNC = 1 << 1;
/** Bit of a pagemap entry: the pte is soft-dirty. */
export const PM_SOFT_DIRTY_BIT = 55;
/** Bit of a pagemap entry: the page is present. */
export const PM_PRESENT_BIT = 63;
/** `echo 4 > /proc/PID/clear_refs`: clear every soft-dirty bit of the process. */
export const CLEAR_REFS_SOFT_DIRTY = 4;

/** The pagemap of this process. */
export const PAGEMAP_PATH = "/proc/self/pagemap";
/** The clear_refs file of this process. */
export const CLEAR_REFS_PATH = "/proc/self/clear_refs";
/** Entries of `struct page_region` per `PAGEMAP_SCAN` call. */
const VEC_LEN = 4096;

/** Options of the pagemap readers. */
export interface PagemapOptions {
  /** The syscall boundary (default libc). */
  syscalls?: PagemapSyscalls;
}

/**
 * Runs `PAGEMAP_SCAN` over ranges of this process with a reusable argument and
 * result vector in mmap'd memory (stable addresses, so each call stays on the
 * FFI fast path).
 *
 * @example Collect and re-protect written ranges
 * ```ts ignore
 * import { PagemapScanner } from "./pagemap.ts";
 * using scan = new PagemapScanner();
 * scan.harvestWritten(start, end, (s, e) => console.log(s, e));
 * ```
 */
export class PagemapScanner implements Disposable {
  #sys: PagemapSyscalls;
  #fd: number;
  #scratch: bigint;
  #scratchSize: bigint;
  #arg: DataView;
  #vec: Uint32Array;
  #vecAddr: bigint;

  /**
   * Opens `/proc/self/pagemap` and maps the scratch memory.
   *
   * @param options `syscalls` (default libc).
   * @throws {SyscallError} When pagemap cannot be opened or memory mapped
   *   (nothing is left open then).
   */
  constructor(options: PagemapOptions = {}) {
    const sys = options.syscalls ?? defaultSyscalls();
    this.#sys = sys;
    this.#fd = sys.open(PAGEMAP_PATH, O_RDONLY | O_CLOEXEC);
    const size = 4096 + VEC_LEN * PAGE_REGION_SIZE;
    this.#scratchSize = BigInt(size);
    let addr: bigint;
    try {
      addr = sys.mmap(this.#scratchSize, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    } catch (e) {
      try {
        sys.close(this.#fd);
      } catch { /* report the mmap failure */ }
      throw e;
    }
    this.#scratch = addr;
    // SAFETY: the scratch mapping lives until close(), after which no view is used.
    const bytes = hostView(addr, size);
    this.#arg = new DataView(bytes.buffer, 0, PM_SCAN_ARG_SIZE);
    this.#vec = new Uint32Array(bytes.buffer, 4096, (VEC_LEN * PAGE_REGION_SIZE) / 4);
    this.#vecAddr = addr + 4096n;
  }

  /**
   * Reports `[start, end)` runs of pages written since they were last
   * write-protected, and write-protects them again in the same call
   * (`PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC`, category and return masks
   * `PAGE_IS_WRITTEN`: the masks the kernel's fast path handles).
   *
   * @param start Page-aligned host address.
   * @param end Exclusive end.
   * @param onRange Called with each written run, as numbers (user addresses fit in 2^53).
   * @returns The number of runs reported.
   * @throws {IoctlError} `PAGEMAP_SCAN` failures (`ENOTTY` before Linux 6.7,
   * `EPERM` where a page is not registered for async write-protect).
   */
  harvestWritten(
    start: bigint,
    end: bigint,
    onRange: (start: number, end: number) => void,
  ): number {
    return this.scan(start, end, {
      flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
      categoryMask: PAGE_IS_WRITTEN,
      returnMask: PAGE_IS_WRITTEN,
    }, onRange);
  }

  /**
   * Runs `PAGEMAP_SCAN` with the given flags and masks until the whole range
   * has been walked.
   *
   * @param start Page-aligned host address.
   * @param end Exclusive end.
   * @param options `flags`, `categoryMask`, `returnMask` (and optional
   * `categoryInverted`, `categoryAnyofMask`).
   * @param onRange Called with each reported run.
   * @returns The number of runs reported.
   * @throws {IoctlError} From the kernel.
   */
  scan(
    start: bigint,
    end: bigint,
    options: {
      flags: number;
      categoryMask: number;
      returnMask: number;
      categoryInverted?: number;
      categoryAnyofMask?: number;
    },
    onRange: (start: number, end: number) => void,
  ): number {
    if (this.#fd < 0) throw new TypeError("Cannot scan: the PagemapScanner is closed");
    const a = this.#arg;
    const vec = this.#vec;
    const sys = this.#sys;
    let runs = 0;
    let from = start;
    while (from < end) {
      a.setBigUint64(0, BigInt(PM_SCAN_ARG_SIZE), true);
      a.setBigUint64(8, BigInt(options.flags), true);
      a.setBigUint64(16, from, true);
      a.setBigUint64(24, end, true);
      a.setBigUint64(32, 0n, true);
      a.setBigUint64(40, this.#vecAddr, true);
      a.setBigUint64(48, BigInt(VEC_LEN), true);
      a.setBigUint64(56, 0n, true);
      a.setBigUint64(64, BigInt(options.categoryInverted ?? 0), true);
      a.setBigUint64(72, BigInt(options.categoryMask), true);
      a.setBigUint64(80, BigInt(options.categoryAnyofMask ?? 0), true);
      a.setBigUint64(88, BigInt(options.returnMask), true);
      const n = sys.ioctlValue(this.#fd, PAGEMAP_SCAN, this.#scratch);
      for (let i = 0; i < n; i++) {
        const w = i * 6;
        onRange(vec[w] + vec[w + 1] * 4294967296, vec[w + 2] + vec[w + 3] * 4294967296);
      }
      runs += n;
      const walkEnd = a.getBigUint64(32, true);
      if (walkEnd <= from) break; // defensive: the kernel made no progress
      from = walkEnd;
    }
    return runs;
  }

  /**
   * Closes pagemap and unmaps the scratch memory (idempotent). Both are
   * tried; the first failure is thrown afterwards.
   *
   * @throws {SyscallError} From `close` or `munmap`.
   */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    let failure: unknown;
    try {
      this.#sys.close(fd);
    } catch (e) {
      failure = e;
    }
    try {
      this.#sys.munmap(this.#scratch, this.#scratchSize);
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) throw failure;
  }

  /** Same as {@linkcode PagemapScanner.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Reads pagemap entries with `pread` into caller memory.
 *
 * @example Read the entries of 16 pages
 * ```ts ignore
 * import { PagemapReader } from "./pagemap.ts";
 * using pm = new PagemapReader();
 * const words = new Uint32Array(32);
 * pm.read(addr, words);
 * ```
 */
export class PagemapReader implements Disposable {
  #sys: PagemapSyscalls;
  #fd: number;

  /**
   * Opens `/proc/self/pagemap`.
   *
   * @param options `syscalls` (default libc).
   * @throws {SyscallError} With the path and errno.
   */
  constructor(options: PagemapOptions = {}) {
    this.#sys = options.syscalls ?? defaultSyscalls();
    this.#fd = this.#sys.open(PAGEMAP_PATH, O_RDONLY | O_CLOEXEC);
  }

  /**
   * Reads the entries of `into.length / 2` pages starting at `vaddr`.
   *
   * @param vaddr Page-aligned host address of the first page.
   * @param into Two 32-bit words per page (low, high), little-endian.
   * @throws {SyscallError} On a failed or short read.
   */
  read(vaddr: bigint, into: Uint32Array): void {
    if (this.#fd < 0) throw new TypeError("Cannot read pagemap: the PagemapReader is closed");
    const want = into.byteLength;
    const bytes = new Uint8Array(into.buffer, into.byteOffset, want);
    let n: number;
    try {
      n = this.#sys.pread(this.#fd, bytes, (vaddr / 4096n) * 8n);
    } catch (e) {
      if (!(e instanceof SyscallError)) throw e;
      throw new SyscallError("pread", e.errno, { path: PAGEMAP_PATH, cause: e });
    }
    if (n !== want) throw new SyscallError("pread", EIO, /* short read */ { path: PAGEMAP_PATH });
  }

  /**
   * Closes pagemap (idempotent).
   *
   * @throws {SyscallError} From `close`.
   */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
  }

  /** Same as {@linkcode PagemapReader.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Writes a value to `/proc/self/clear_refs` (`4` clears every soft-dirty bit
 * of the process; it succeeds even on kernels without soft-dirty support).
 *
 * @param value The clear_refs command, such as {@linkcode CLEAR_REFS_SOFT_DIRTY}.
 * @param options `syscalls` (default libc).
 * @throws {SyscallError} When the file cannot be opened or written.
 *
 * @example Clear soft-dirty bits
 * ```ts ignore
 * import { CLEAR_REFS_SOFT_DIRTY, writeClearRefs } from "./pagemap.ts";
 * writeClearRefs(CLEAR_REFS_SOFT_DIRTY);
 * ```
 */
export function writeClearRefs(value: number, options: ProcOptions = {}): void {
  writeProcFile(CLEAR_REFS_PATH, `${value}\n`, options);
}
