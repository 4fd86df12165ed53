/**
 * The real syscall boundary: libc through `Deno.dlopen`.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { errno, libc } from "./_libc.ts";
import { MAP_FAILED } from "./constants.ts";
import { IoctlError, SyscallError } from "./errors.ts";
import type { IoctlRequest, Syscalls } from "./syscalls.ts";

/**
 * x86_64 syscall number of `userfaultfd(2)` (`__NR_userfaultfd`; glibc has no
 * wrapper): the same as `NR_USERFAULTFD` in `userfaultfd.ts`, which
 * `memory/uapi_layout_test.ts` pins against the headers (repeated here so
 * that this file, which `userfaultfd.ts` imports, imports nothing back).
 */
const NR_USERFAULTFD = 323n;

const encoder = new TextEncoder();

function cString(s: string): Uint8Array {
  const bytes = new Uint8Array(s.length * 3 + 1);
  const { written } = encoder.encodeInto(s, bytes);
  return bytes.subarray(0, written + 1);
}

/**
 * {@linkcode Syscalls} implemented with libc. errno is read through a typed
 * view of `__errno_location()` straight after each failing call, on the same
 * thread.
 *
 * @example Open the VFIO container
 * ```ts ignore
 * import { LibcSyscalls } from "./libc.ts";
 * const sys = new LibcSyscalls();
 * const fd = sys.open("/dev/vfio/vfio", 2);
 * sys.close(fd);
 * ```
 */
export class LibcSyscalls implements Syscalls {
  /**
   * Opens a path.
   *
   * @param path The path.
   * @param flags `open(2)` flags.
   * @returns The fd.
   * @throws {SyscallError} Naming the path and the errno.
   */
  open(path: string, flags: number): number {
    const fd = libc().open(cString(path), flags, 0);
    if (fd < 0) throw new SyscallError("open", errno(), { path });
    return fd;
  }

  /**
   * Closes an fd.
   *
   * @param fd The fd.
   * @throws {SyscallError} With the errno.
   */
  close(fd: number): void {
    if (libc().close(fd) < 0) throw new SyscallError("close", errno());
  }

  /**
   * Issues a pointer-argument ioctl.
   *
   * @param fd The fd.
   * @param request The request.
   * @param arg The struct bytes; the kernel may write back into them.
   * @returns The return value.
   * @throws {IoctlError} Naming the request and the errno.
   */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number {
    const ret = libc().ioctlPtr(fd, request.code, arg);
    if (ret < 0) throw new IoctlError(request.name, errno());
    return ret;
  }

  /**
   * Issues a value-argument ioctl.
   *
   * @param fd The fd.
   * @param request The request.
   * @param value The integer argument.
   * @returns The return value.
   * @throws {IoctlError} Naming the request and the errno.
   */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number {
    const ret = libc().ioctlVal(fd, request.code, value);
    if (ret < 0) throw new IoctlError(request.name, errno());
    return ret;
  }

  /**
   * Maps memory.
   *
   * @param length Bytes.
   * @param prot `PROT_*` flags.
   * @param flags `MAP_*` flags.
   * @param fd The fd, or -1.
   * @param offset The offset into the fd.
   * @returns The host address.
   * @throws {SyscallError} With the errno.
   */
  mmap(
    length: bigint,
    prot: number,
    flags: number,
    fd: number,
    offset: bigint,
  ): bigint {
    const addr = libc().mmap(0n, length, prot, flags, fd, offset);
    if (addr === MAP_FAILED) throw new SyscallError("mmap", errno());
    return addr;
  }

  /**
   * Unmaps memory.
   *
   * @param addr The host address.
   * @param length Bytes.
   * @throws {SyscallError} With the errno.
   */
  munmap(addr: bigint, length: bigint): void {
    if (libc().munmap(addr, length) < 0) {
      throw new SyscallError("munmap", errno());
    }
  }

  /**
   * Reads at an offset.
   *
   * @param fd The fd.
   * @param buf The destination.
   * @param offset The offset.
   * @returns Bytes read.
   * @throws {SyscallError} With the errno.
   */
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    const n = libc().pread(fd, buf, BigInt(buf.byteLength), offset);
    if (n < 0n) throw new SyscallError("pread", errno());
    return Number(n);
  }

  /**
   * Writes at an offset.
   *
   * @param fd The fd.
   * @param buf The bytes.
   * @param offset The offset.
   * @returns Bytes written.
   * @throws {SyscallError} With the errno.
   */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    const n = libc().pwrite(fd, buf, BigInt(buf.byteLength), offset);
    if (n < 0n) throw new SyscallError("pwrite", errno());
    return Number(n);
  }

  /**
   * Reads at the fd's position (`read(2)`).
   *
   * @param fd The fd.
   * @param buf The destination.
   * @returns Bytes read; 0 at end of stream.
   * @throws {SyscallError} With the errno.
   */
  read(fd: number, buf: Uint8Array): number {
    const n = libc().read(fd, buf, BigInt(buf.byteLength));
    if (n < 0n) throw new SyscallError("read", errno());
    return Number(n);
  }

  /**
   * Writes at the fd's position (`write(2)`).
   *
   * @param fd The fd.
   * @param buf The bytes.
   * @returns Bytes written.
   * @throws {SyscallError} With the errno.
   */
  write(fd: number, buf: Uint8Array): number {
    const n = libc().write(fd, buf, BigInt(buf.byteLength));
    if (n < 0n) throw new SyscallError("write", errno());
    return Number(n);
  }
  /**
   * Moves the file position (`lseek(2)`).
   *
   * @param fd The fd.
   * @param offset The offset.
   * @param whence `SEEK_*`.
   * @returns The resulting offset.
   * @throws {SyscallError} With the errno (`ENXIO`: no data past `offset`).
   */
  lseek(fd: number, offset: bigint, whence: number): bigint {
    const at = libc().lseek(fd, offset, whence);
    if (at < 0n) throw new SyscallError("lseek", errno());
    return at;
  }

  /**
   * Sets a file's size (`ftruncate(2)`).
   *
   * @param fd The fd.
   * @param length Bytes.
   * @throws {SyscallError} With the errno.
   */
  ftruncate(fd: number, length: bigint): void {
    if (libc().ftruncate(fd, length) < 0) throw new SyscallError("ftruncate", errno());
  }

  /**
   * Reads directory entries (`getdents64(2)`).
   *
   * @param fd A directory fd.
   * @param buf Where the records go.
   * @returns Bytes written; 0 at the end.
   * @throws {SyscallError} With the errno.
   */
  getdents64(fd: number, buf: Uint8Array): number {
    const n = libc().getdents64(fd, buf, BigInt(buf.byteLength));
    if (n < 0n) throw new SyscallError("getdents64", errno());
    return Number(n);
  }

  /**
   * Creates a memfd (`memfd_create(2)`).
   *
   * @param name The name.
   * @param flags `MFD_*`.
   * @returns The fd.
   * @throws {SyscallError} With the errno.
   */
  memfdCreate(name: string, flags: number): number {
    const fd = libc().memfdCreate(cString(name), flags);
    if (fd < 0) throw new SyscallError("memfd_create", errno());
    return fd;
  }

  /**
   * Advises the kernel about a range (`madvise(2)`).
   *
   * @param addr The host address.
   * @param length Bytes.
   * @param advice `MADV_*`.
   * @throws {SyscallError} With the errno.
   */
  madvise(addr: bigint, length: bigint, advice: number): void {
    if (libc().madvise(addr, length, advice) < 0) throw new SyscallError("madvise", errno());
  }

  /**
   * Changes a range's protection (`mprotect(2)`).
   *
   * @param addr The host address.
   * @param length Bytes.
   * @param prot `PROT_*`.
   * @throws {SyscallError} With the errno.
   */
  mprotect(addr: bigint, length: bigint, prot: number): void {
    if (libc().mprotect(addr, length, prot) < 0) throw new SyscallError("mprotect", errno());
  }

  /**
   * Creates a userfaultfd (`syscall(__NR_userfaultfd, flags)`).
   *
   * @param flags `UFFD_USER_MODE_ONLY`, `O_CLOEXEC`, `O_NONBLOCK`.
   * @returns The fd.
   * @throws {SyscallError} With the errno.
   */
  userfaultfd(flags: number): number {
    const fd = libc().syscall3(NR_USERFAULTFD, BigInt(flags), 0n, 0n);
    if (fd < 0n) throw new SyscallError("userfaultfd", errno());
    return Number(fd);
  }

  /**
   * This process's real user id.
   *
   * @returns The uid.
   */
  getuid(): number {
    return libc().getuid();
  }

  /**
   * `prctl(option, arg2, 0, 0, 0)`.
   *
   * @param option The `PR_*` option.
   * @param arg2 Its argument.
   * @returns The return value.
   * @throws {SyscallError} With the errno.
   */
  prctl(option: number, arg2: bigint): number {
    const ret = libc().prctl(option, arg2, 0n, 0n, 0n);
    if (ret < 0) throw new SyscallError("prctl", errno());
    return ret;
  }
}

let shared: LibcSyscalls | undefined;

/**
 * Returns the process-wide {@linkcode LibcSyscalls}, the default for every
 * object that takes a `syscalls` option.
 *
 * @returns The shared instance.
 */
export function defaultSyscalls(): LibcSyscalls {
  return shared ??= new LibcSyscalls();
}
