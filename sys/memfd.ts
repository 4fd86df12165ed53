/**
 * memfd_create(2), madvise(2) and lseek(2) holes, through the syscall
 * boundary, for memory that must be shared or prefaulted.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { ENXIO } from "./errno.ts";
import { SyscallError } from "./errors.ts";
import { defaultSyscalls } from "./libc.ts";
import type { MemorySyscalls } from "./syscalls.ts";

/** `memfd_create(2)`: close on exec. */
export const MFD_CLOEXEC = 1;
/** `memfd_create(2)`: back the file with huge pages (hugetlbfs). */
export const MFD_HUGETLB = 4;
/** `madvise(2)`: no special treatment (changes nothing; fails on an unmapped range). */
export const MADV_NORMAL = 0;
/** `madvise(2)`: populate page tables writable, faulting pages in (Linux 5.14). */
export const MADV_POPULATE_WRITE = 23;
/** `lseek` whence: from the start of the file. */
export const SEEK_SET = 0;
/** `lseek` whence: the next offset holding data. */
export const SEEK_DATA = 3;
/** `lseek` whence: the next offset in a hole. */
export const SEEK_HOLE = 4;

/**
 * Creates a memfd of `size` bytes (`memfd_create` then `ftruncate`).
 *
 * @param name The name shown in /proc/self/maps (`/memfd:NAME`).
 * @param options `size` in bytes; `hugetlb` for `MFD_HUGETLB`; `syscalls`
 *   (default libc).
 * @returns The fd (`MFD_CLOEXEC`); close it with the same `syscalls`.
 * @throws {SyscallError} From `memfd_create` or `ftruncate` (the fd is closed then).
 *
 * @example A 1 MiB memfd
 * ```ts ignore
 * import { memfdCreate } from "./memfd.ts";
 * import { defaultSyscalls } from "./libc.ts";
 * const fd = memfdCreate("ram", { size: 1n << 20n });
 * defaultSyscalls().close(fd);
 * ```
 */
export function memfdCreate(
  name: string,
  options: { size: bigint; hugetlb?: boolean; syscalls?: MemorySyscalls },
): number {
  const sys = options.syscalls ?? defaultSyscalls();
  const fd = sys.memfdCreate(name, MFD_CLOEXEC | (options.hugetlb ? MFD_HUGETLB : 0));
  try {
    sys.ftruncate(fd, options.size);
  } catch (e) {
    try {
      sys.close(fd);
    } catch { /* report the ftruncate failure */ }
    throw e;
  }
  return fd;
}

/** Options of {@linkcode fileHoles}. */
export interface FileHolesOptions {
  /**
   * Stop after this many holes (two system calls each); the rest of the
   * range is then not reported. Default: no limit.
   */
  limit?: number;
  /** The syscall boundary (default libc). */
  syscalls?: Pick<MemorySyscalls, "lseek">;
}

/**
 * The holes of a file within `[start, end)`: ranges that hold no data and
 * read as zero without anything being allocated, found with `lseek`
 * `SEEK_DATA` / `SEEK_HOLE`. On tmpfs (memfd) holes are whole pages, and a
 * page swapped out still counts as data.
 *
 * @param fd An open file.
 * @param range `start` (first byte) and `end` (one past the last byte).
 * @param options `limit` and `syscalls`.
 * @returns `[from, to)` byte ranges, ascending, inside `[start, end)`.
 * @throws {SyscallError} If `lseek` fails other than for "no more data".
 *
 * @example
 * ```ts ignore
 * import { fileHoles } from "./memfd.ts";
 * console.log(fileHoles(fd, { start: 0n, end: 1n << 20n })); // [[0n, 1048576n]] for a fresh memfd
 * ```
 */
export function fileHoles(
  fd: number,
  range: { start: bigint; end: bigint },
  options: FileHolesOptions = {},
): [bigint, bigint][] {
  const sys = options.syscalls ?? defaultSyscalls();
  const limit = options.limit ?? Infinity;
  const { end } = range;
  const out: [bigint, bigint][] = [];
  let pos = range.start;
  while (pos < end && out.length < limit) {
    let data: bigint;
    try {
      data = sys.lseek(fd, pos, SEEK_DATA);
    } catch (e) {
      if (!(e instanceof SyscallError) || e.errno !== ENXIO) throw e;
      out.push([pos, end]); // no data from here to the end of the file
      break;
    }
    if (data > pos) out.push([pos, data < end ? data : end]);
    if (data >= end) break;
    pos = sys.lseek(fd, data, SEEK_HOLE);
  }
  return out;
}
