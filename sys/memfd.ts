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
