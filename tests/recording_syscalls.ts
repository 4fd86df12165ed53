/**
 * A {@linkcode Syscalls} wrapper that records every call and its outcome, for
 * tests that assert what reached the kernel (or that nothing did).
 *
 * @module
 */

import { SyscallError } from "../sys/errors.ts";
import type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";

/** One recorded call. */
export interface RecordedCall {
  /** `open`, `close`, `ioctl`, `mmap`, `munmap`, `pread`, `pwrite`, `read` or `write`. */
  readonly syscall: string;
  /** The ioctl name, for ioctls. */
  readonly name?: string;
  /** The ioctl argument as the kernel left it (a copy), for pointer ioctls. */
  readonly arg?: Uint8Array;
  /** The return value on success. */
  readonly ret?: number | bigint;
  /** The errno on failure. */
  readonly errno?: number;
}

/**
 * Records the calls made through an inner {@linkcode Syscalls}.
 *
 * @example Count the ioctls a call made
 * ```ts ignore
 * const sys = new RecordingSyscalls(new FakeKernel());
 * using c = VfioContainer.open({ syscalls: sys });
 * console.log(sys.ioctls("VFIO_GET_API_VERSION").length); // 1
 * ```
 */
export class RecordingSyscalls implements Syscalls {
  /** The calls, oldest first. */
  readonly calls: RecordedCall[] = [];
  #inner: Syscalls;

  /**
   * Wraps a boundary.
   *
   * @param inner The boundary that does the work.
   */
  constructor(inner: Syscalls) {
    this.#inner = inner;
  }

  /**
   * Returns the recorded ioctls, optionally of one name.
   *
   * @param name An ioctl name.
   * @returns The matching calls.
   */
  ioctls(name?: string): RecordedCall[] {
    return this.calls.filter((c) =>
      c.syscall === "ioctl" && (name === undefined || c.name === name)
    );
  }

  #record<T extends number | bigint>(
    entry: { syscall: string; name?: string; arg?: Uint8Array },
    fn: () => T,
  ): T {
    try {
      const ret = fn();
      this.calls.push({ ...entry, ...(entry.arg ? { arg: entry.arg.slice() } : {}), ret });
      return ret;
    } catch (e) {
      if (e instanceof SyscallError) {
        this.calls.push({
          ...entry,
          ...(entry.arg ? { arg: entry.arg.slice() } : {}),
          errno: e.errno,
        });
      }
      throw e;
    }
  }

  /** {@inheritDoc Syscalls.open} */
  open(path: string, flags: number): number {
    return this.#record({ syscall: "open", name: path }, () => this.#inner.open(path, flags));
  }

  /** {@inheritDoc Syscalls.close} */
  close(fd: number): void {
    this.#record({ syscall: "close" }, () => {
      this.#inner.close(fd);
      return 0;
    });
  }

  /** {@inheritDoc Syscalls.ioctl} */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number {
    return this.#record(
      { syscall: "ioctl", name: request.name, arg },
      () => this.#inner.ioctl(fd, request, arg),
    );
  }

  /** {@inheritDoc Syscalls.ioctlValue} */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number {
    return this.#record(
      { syscall: "ioctl", name: request.name },
      () => this.#inner.ioctlValue(fd, request, value),
    );
  }

  /** {@inheritDoc Syscalls.mmap} */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    return this.#record(
      { syscall: "mmap" },
      () => this.#inner.mmap(length, prot, flags, fd, offset),
    );
  }

  /** {@inheritDoc Syscalls.munmap} */
  munmap(addr: bigint, length: bigint): void {
    this.#record({ syscall: "munmap" }, () => {
      this.#inner.munmap(addr, length);
      return 0;
    });
  }

  /** {@inheritDoc Syscalls.pread} */
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#record({ syscall: "pread" }, () => this.#inner.pread(fd, buf, offset));
  }

  /** {@inheritDoc Syscalls.pwrite} */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#record({ syscall: "pwrite" }, () => this.#inner.pwrite(fd, buf, offset));
  }

  /** {@inheritDoc Syscalls.read} */
  read(fd: number, buf: Uint8Array): number {
    return this.#record({ syscall: "read" }, () => this.#inner.read(fd, buf));
  }

  /** {@inheritDoc Syscalls.write} */
  write(fd: number, buf: Uint8Array): number {
    return this.#record({ syscall: "write" }, () => this.#inner.write(fd, buf));
  }
}
