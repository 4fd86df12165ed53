/**
 * memfd_create(2), ftruncate(2) and madvise(2) helpers that throw
 * `SyscallError` with errno, for memory that must be shared or prefaulted.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { errno, libc } from "./_libc.ts";
import { SyscallError } from "./errors.ts";
import { ENXIO } from "./errno.ts";

/** `memfd_create(2)`: close on exec. */
export const MFD_CLOEXEC = 1;
/** `memfd_create(2)`: back the file with huge pages (hugetlbfs). */
export const MFD_HUGETLB = 4;
/** `madvise(2)`: populate page tables writable, faulting pages in (Linux 5.14). */
export const MADV_POPULATE_WRITE = 23;

/**
 * Creates a memfd of `size` bytes.
 *
 * @param name The name shown in /proc/self/maps (`/memfd:NAME`).
 * @param options `size` in bytes; `hugetlb` for `MFD_HUGETLB`.
 * @returns The fd (`MFD_CLOEXEC`); close it with {@linkcode closeFd}.
 * @throws {SyscallError} From `memfd_create` or `ftruncate` (the fd is closed then).
 *
 * @example A 1 MiB memfd
 * ```ts ignore
 * import { closeFd, memfdCreate } from "./memfd.ts";
 * const fd = memfdCreate("ram", { size: 1n << 20n });
 * closeFd(fd);
 * ```
 */
export function memfdCreate(name: string, options: { size: bigint; hugetlb?: boolean }): number {
  const lib = libc();
  const flags = MFD_CLOEXEC | (options.hugetlb ? MFD_HUGETLB : 0);
  const fd = lib.memfdCreate(new TextEncoder().encode(name + "\0"), flags);
  if (fd < 0) throw new SyscallError("memfd_create", errno());
  if (lib.ftruncate(fd, options.size) < 0) {
    const e = errno();
    lib.close(fd);
    throw new SyscallError("ftruncate", e);
  }
  return fd;
}

/**
 * Closes an fd made by this module.
 *
 * @param fd The fd.
 * @throws {SyscallError} With errno.
 *
 * @example Close a memfd
 * ```ts ignore
 * import { closeFd } from "./memfd.ts";
 * closeFd(fd);
 * ```
 */
export function closeFd(fd: number): void {
  if (libc().close(fd) < 0) throw new SyscallError("close", errno());
}

/**
 * Calls `madvise(2)`.
 *
 * @param addr Page-aligned host address.
 * @param options `length` in bytes and the `advice`.
 * @throws {SyscallError} With errno.
 *
 * @example Prefault a range
 * ```ts ignore
 * import { MADV_POPULATE_WRITE, madvise } from "./memfd.ts";
 * madvise(addr, { length: 1n << 20n, advice: MADV_POPULATE_WRITE });
 * ```
 */
export function madvise(addr: bigint, options: { length: bigint; advice: number }): void {
  if (libc().madvise(addr, options.length, options.advice) < 0) {
    throw new SyscallError("madvise", errno());
  }
}

/** `lseek` whence: the next offset holding data. */
export const SEEK_DATA = 3;
/** `lseek` whence: the next offset in a hole. */
export const SEEK_HOLE = 4;

/**
 * The holes of a file within `[start, end)`: ranges that hold no data and
 * read as zero without anything being allocated, found with `lseek`
 * `SEEK_DATA` / `SEEK_HOLE`. On tmpfs (memfd) holes are whole pages, and a
 * page swapped out still counts as data.
 *
 * @param fd An open file.
 * @param start First byte.
 * @param end One past the last byte.
 * @param limit Stop after this many holes (two system calls each); the
 *   rest of the range is then not reported. Default: no limit.
 * @returns `[from, to)` byte ranges, ascending, inside `[start, end)`.
 * @throws {SyscallError} If `lseek` fails other than for "no more data".
 *
 * @example
 * ```ts ignore
 * import { fileHoles } from "./memfd.ts";
 * console.log(fileHoles(fd, 0n, 1n << 20n)); // [[0n, 1048576n]] for a fresh memfd
 * ```
 */
export function fileHoles(
  fd: number,
  start: bigint,
  end: bigint,
  limit = Infinity,
): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  let pos = start;
  while (pos < end && out.length < limit) {
    const data = libc().lseek(fd, pos, SEEK_DATA);
    if (data < 0n) {
      const err = errno();
      if (err !== ENXIO) throw new SyscallError("lseek SEEK_DATA", err);
      out.push([pos, end]); // no data from here to the end of the file
      break;
    }
    if (data > pos) out.push([pos, data < end ? data : end]);
    if (data >= end) break;
    const hole = libc().lseek(fd, data, SEEK_HOLE);
    if (hole < 0n) throw new SyscallError("lseek SEEK_HOLE", errno());
    pos = hole;
  }
  return out;
}
