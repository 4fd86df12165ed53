/**
 * A {@linkcode Syscalls} that passes every call to an inner one, through one
 * overridable hook: the base of test doubles that record, count or fail
 * calls and let the rest through.
 *
 * @module
 */

import type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";

/** What {@linkcode ForwardingSyscalls.around} is told about a call. */
export interface ForwardedCall {
  /** The syscall, such as `"ioctl"`, `"mmap"` or `"lseek"`. */
  readonly syscall: string;
  /** The ioctl name, or the path of an `open`. */
  readonly name?: string;
  /** The ioctl argument, for pointer ioctls. */
  readonly arg?: Uint8Array;
}

/**
 * Forwards every call to `inner`.
 *
 * @example Count the calls
 * ```ts ignore
 * class Counting extends ForwardingSyscalls {
 *   n = 0;
 *   override around<T>(call: ForwardedCall, run: () => T): T {
 *     this.n++;
 *     return run();
 *   }
 * }
 * ```
 */
export class ForwardingSyscalls implements Syscalls {
  /** The boundary that does the work. */
  readonly inner: Syscalls;

  /**
   * Wraps a boundary.
   *
   * @param inner The boundary that does the work.
   */
  constructor(inner: Syscalls) {
    this.inner = inner;
  }

  /**
   * Every call passes through here; override it to record or fail calls.
   *
   * @param _call What is called.
   * @param run Makes the call.
   * @returns What the call returns.
   */
  around<T>(_call: ForwardedCall, run: () => T): T {
    return run();
  }

  /** {@inheritDoc Syscalls.open} */
  open(path: string, flags: number): number {
    return this.around({ syscall: "open", name: path }, () => this.inner.open(path, flags));
  }
  /** {@inheritDoc Syscalls.close} */
  close(fd: number): void {
    this.around({ syscall: "close" }, () => this.inner.close(fd));
  }
  /** {@inheritDoc Syscalls.ioctl} */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number {
    return this.around(
      { syscall: "ioctl", name: request.name, arg },
      () => this.inner.ioctl(fd, request, arg),
    );
  }
  /** {@inheritDoc Syscalls.ioctlValue} */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number {
    return this.around(
      { syscall: "ioctl", name: request.name },
      () => this.inner.ioctlValue(fd, request, value),
    );
  }
  /** {@inheritDoc Syscalls.mmap} */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    return this.around(
      { syscall: "mmap" },
      () => this.inner.mmap(length, prot, flags, fd, offset),
    );
  }
  /** {@inheritDoc Syscalls.munmap} */
  munmap(addr: bigint, length: bigint): void {
    this.around({ syscall: "munmap" }, () => this.inner.munmap(addr, length));
  }
  /** {@inheritDoc Syscalls.pread} */
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.around({ syscall: "pread" }, () => this.inner.pread(fd, buf, offset));
  }
  /** {@inheritDoc Syscalls.pwrite} */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.around({ syscall: "pwrite" }, () => this.inner.pwrite(fd, buf, offset));
  }
  /** {@inheritDoc Syscalls.read} */
  read(fd: number, buf: Uint8Array): number {
    return this.around({ syscall: "read" }, () => this.inner.read(fd, buf));
  }
  /** {@inheritDoc Syscalls.write} */
  write(fd: number, buf: Uint8Array): number {
    return this.around({ syscall: "write" }, () => this.inner.write(fd, buf));
  }
  /** {@inheritDoc Syscalls.lseek} */
  lseek(fd: number, offset: bigint, whence: number): bigint {
    return this.around({ syscall: "lseek" }, () => this.inner.lseek(fd, offset, whence));
  }
  /** {@inheritDoc Syscalls.ftruncate} */
  ftruncate(fd: number, length: bigint): void {
    this.around({ syscall: "ftruncate" }, () => this.inner.ftruncate(fd, length));
  }
  /** {@inheritDoc Syscalls.getdents64} */
  getdents64(fd: number, buf: Uint8Array): number {
    return this.around({ syscall: "getdents64" }, () => this.inner.getdents64(fd, buf));
  }
  /** {@inheritDoc Syscalls.memfdCreate} */
  memfdCreate(name: string, flags: number): number {
    return this.around({ syscall: "memfd_create" }, () => this.inner.memfdCreate(name, flags));
  }
  /** {@inheritDoc Syscalls.madvise} */
  madvise(addr: bigint, length: bigint, advice: number): void {
    this.around({ syscall: "madvise" }, () => this.inner.madvise(addr, length, advice));
  }
  /** {@inheritDoc Syscalls.mprotect} */
  mprotect(addr: bigint, length: bigint, prot: number): void {
    this.around({ syscall: "mprotect" }, () => this.inner.mprotect(addr, length, prot));
  }
  /** {@inheritDoc Syscalls.userfaultfd} */
  userfaultfd(flags: number): number {
    return this.around({ syscall: "userfaultfd" }, () => this.inner.userfaultfd(flags));
  }
  /** {@inheritDoc Syscalls.getuid} */
  getuid(): number {
    return this.around({ syscall: "getuid" }, () => this.inner.getuid());
  }
  /** {@inheritDoc Syscalls.prctl} */
  prctl(option: number, arg2: bigint): number {
    return this.around({ syscall: "prctl" }, () => this.inner.prctl(option, arg2));
  }
}
