/**
 * userfaultfd(2): just what write-protect tracking needs (`UFFDIO_API`,
 * `UFFDIO_REGISTER` in `MODE_WP`, `UFFDIO_WRITEPROTECT`, `UFFDIO_UNREGISTER`).
 *
 * Struct codecs mirror `struct uffdio_api`, `struct uffdio_register` and
 * `struct uffdio_writeprotect` from `linux/userfaultfd.h`; constants newer than
 * the installed 6.1 headers (`UFFD_FEATURE_WP_ASYNC`, Linux 6.7) come from the
 * upstream uapi header. `memory/uapi_layout_test.ts` pins every number against
 * a C program compiled on the machine.
 *
 * Requires `--allow-ffi` (and `--allow-read` for the `/dev/userfaultfd`
 * fallback).
 *
 * @module
 */

import { O_CLOEXEC, O_RDWR } from "./constants.ts";
import { SyscallError } from "./errors.ts";
import { defaultSyscalls } from "./libc.ts";
import type { IoctlRequest, UffdSyscalls } from "./syscalls.ts";

/** x86_64 syscall number of `userfaultfd(2)` (`__NR_userfaultfd`). */
export const NR_USERFAULTFD = 323;
/** `UFFD_API`: the only API version. */
export const UFFD_API = 0xaan;
/** `userfaultfd(2)` flag: handle user-mode faults only (allowed unprivileged since 5.11). */
export const UFFD_USER_MODE_ONLY = 1;
/** `O_NONBLOCK` for `userfaultfd(2)`. */
export const UFFD_O_NONBLOCK = 0o4000;
/** Feature: write-protect shmem and hugetlbfs memory. */
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1n << 12n;
/** Feature: write-protect unpopulated ptes too (Linux 6.4). */
export const UFFD_FEATURE_WP_UNPOPULATED = 1n << 13n;
/** Feature: resolve write-protect faults in the kernel, no handler thread (Linux 6.7). */
export const UFFD_FEATURE_WP_ASYNC = 1n << 15n;
/** `UFFDIO_REGISTER` mode: track write-protect faults. */
export const UFFDIO_REGISTER_MODE_WP = 2n;
/** `UFFDIO_WRITEPROTECT` mode: set (rather than clear) write protection. */
export const UFFDIO_WRITEPROTECT_MODE_WP = 1n;

/** `_IOWR(0xAA, 0x3F, struct uffdio_api)`. */
export const UFFDIO_API: IoctlRequest = { name: "UFFDIO_API", code: 0xc018aa3fn };
/** `_IOWR(0xAA, 0x00, struct uffdio_register)`. */
export const UFFDIO_REGISTER: IoctlRequest = { name: "UFFDIO_REGISTER", code: 0xc020aa00n };
/** `_IOR(0xAA, 0x01, struct uffdio_range)`. */
export const UFFDIO_UNREGISTER: IoctlRequest = {
  name: "UFFDIO_UNREGISTER",
  code: 0x8010aa01n,
};
/** `_IOWR(0xAA, 0x06, struct uffdio_writeprotect)`. */
export const UFFDIO_WRITEPROTECT: IoctlRequest = {
  name: "UFFDIO_WRITEPROTECT",
  code: 0xc018aa06n,
};
/** `_IO(0xAA, 0x00)` on `/dev/userfaultfd`: make a new userfaultfd. */
export const USERFAULTFD_IOC_NEW: IoctlRequest = {
  name: "USERFAULTFD_IOC_NEW",
  code: 0xaa00n,
};

/** `sizeof(struct uffdio_api)`. */
export const UFFDIO_API_SIZE = 24;
/** `sizeof(struct uffdio_register)`. */
export const UFFDIO_REGISTER_SIZE = 32;
/** `sizeof(struct uffdio_range)`. */
export const UFFDIO_RANGE_SIZE = 16;
/** `sizeof(struct uffdio_writeprotect)`. */
export const UFFDIO_WRITEPROTECT_SIZE = 24;

/**
 * Encodes `struct uffdio_api { u64 api; u64 features; u64 ioctls; }`.
 *
 * @param features The `UFFD_FEATURE_*` bits requested.
 * @returns The 24 struct bytes.
 *
 * @example Ask for async write-protect
 * ```ts
 * import { encodeUffdioApi, UFFD_FEATURE_WP_ASYNC } from "./userfaultfd.ts";
 * const arg = encodeUffdioApi(UFFD_FEATURE_WP_ASYNC);
 * ```
 */
export function encodeUffdioApi(features: bigint): Uint8Array {
  const buf = new Uint8Array(UFFDIO_API_SIZE);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, UFFD_API, true);
  v.setBigUint64(8, features, true);
  return buf;
}

/**
 * Encodes `struct uffdio_register { struct uffdio_range range; u64 mode; u64 ioctls; }`.
 *
 * @param range The start and length of the range.
 * @param mode `UFFDIO_REGISTER_MODE_*` bits.
 * @returns The 32 struct bytes.
 *
 * @example Register a range for write-protect tracking
 * ```ts
 * import { encodeUffdioRegister, UFFDIO_REGISTER_MODE_WP } from "./userfaultfd.ts";
 * const arg = encodeUffdioRegister({ start: 0x7f00_0000_0000n, len: 4096n }, UFFDIO_REGISTER_MODE_WP);
 * ```
 */
export function encodeUffdioRegister(
  range: { start: bigint; len: bigint },
  mode: bigint,
): Uint8Array {
  const buf = new Uint8Array(UFFDIO_REGISTER_SIZE);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, range.start, true);
  v.setBigUint64(8, range.len, true);
  v.setBigUint64(16, mode, true);
  return buf;
}

/**
 * Encodes `struct uffdio_writeprotect { struct uffdio_range range; u64 mode; }`.
 *
 * @param range The start and length of the range.
 * @param mode `UFFDIO_WRITEPROTECT_MODE_WP` to protect, 0 to unprotect.
 * @returns The 24 struct bytes.
 *
 * @example Write-protect one page
 * ```ts
 * import { encodeUffdioWriteprotect, UFFDIO_WRITEPROTECT_MODE_WP } from "./userfaultfd.ts";
 * const arg = encodeUffdioWriteprotect({ start: 0x7f00_0000_0000n, len: 4096n }, UFFDIO_WRITEPROTECT_MODE_WP);
 * ```
 */
export function encodeUffdioWriteprotect(
  range: { start: bigint; len: bigint },
  mode: bigint,
): Uint8Array {
  const buf = new Uint8Array(UFFDIO_WRITEPROTECT_SIZE);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, range.start, true);
  v.setBigUint64(8, range.len, true);
  v.setBigUint64(16, mode, true);
  return buf;
}

/**
 * An open userfaultfd. Closing it ends every registration it made.
 *
 * @example Async write-protect a mapping
 * ```ts ignore
 * import { Userfaultfd, UFFD_FEATURE_WP_ASYNC, UFFDIO_REGISTER_MODE_WP } from "./userfaultfd.ts";
 * using uffd = Userfaultfd.open();
 * uffd.api(UFFD_FEATURE_WP_ASYNC);
 * uffd.register({ start: addr, len: size }, UFFDIO_REGISTER_MODE_WP);
 * uffd.writeProtect({ start: addr, len: size }, true);
 * ```
 */
export class Userfaultfd implements Disposable {
  #fd: number;
  #sys: UffdSyscalls;
  /** How the fd was obtained: `"syscall"` or `"/dev/userfaultfd"`. */
  readonly via: "syscall" | "/dev/userfaultfd";

  private constructor(fd: number, via: "syscall" | "/dev/userfaultfd", sys: UffdSyscalls) {
    this.#fd = fd;
    this.via = via;
    this.#sys = sys;
  }

  /**
   * Opens a userfaultfd with `UFFD_USER_MODE_ONLY | O_CLOEXEC | O_NONBLOCK`:
   * first through `userfaultfd(2)`, then through `/dev/userfaultfd`.
   *
   * @param options `syscalls` for the syscall and the ioctls (default libc).
   * @returns The open userfaultfd.
   * @throws {SyscallError} From `userfaultfd` when both ways fail; its
   * `cause` is the `/dev/userfaultfd` failure.
   */
  static open(options: { syscalls?: UffdSyscalls } = {}): Userfaultfd {
    const sys = options.syscalls ?? defaultSyscalls();
    const flags = UFFD_USER_MODE_ONLY | O_CLOEXEC | UFFD_O_NONBLOCK;
    let first: SyscallError;
    try {
      return new Userfaultfd(sys.userfaultfd(flags), "syscall", sys);
    } catch (e) {
      if (!(e instanceof SyscallError)) throw e;
      first = e;
    }
    let dev: number;
    try {
      dev = sys.open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    } catch (cause) {
      throw new SyscallError("userfaultfd", first.errno, { cause });
    }
    try {
      const ufd = sys.ioctlValue(dev, USERFAULTFD_IOC_NEW, BigInt(flags));
      return new Userfaultfd(ufd, "/dev/userfaultfd", sys);
    } catch (cause) {
      throw new SyscallError("userfaultfd", first.errno, { cause });
    } finally {
      sys.close(dev);
    }
  }

  /**
   * The raw fd. Do not close it.
   *
   * @returns The fd, or -1 once closed.
   */
  get unsafeFd(): number {
    return this.#fd;
  }

  /**
   * Negotiates the API (`UFFDIO_API`), requesting `features`.
   *
   * @param features `UFFD_FEATURE_*` bits that must all be granted.
   * @returns The features the kernel reports.
   * @throws {IoctlError} `EINVAL` when the kernel lacks a requested feature.
   */
  api(features: bigint): bigint {
    const arg = encodeUffdioApi(features);
    this.#sys.ioctl(this.#fd, UFFDIO_API, arg);
    return new DataView(arg.buffer).getBigUint64(8, true);
  }

  /**
   * Registers a range (`UFFDIO_REGISTER`).
   *
   * @param range Page-aligned start and length.
   * @param mode `UFFDIO_REGISTER_MODE_*` bits.
   * @returns The `ioctls` bitmask the kernel allows on the range.
   * @throws {IoctlError} From the kernel.
   */
  register(range: { start: bigint; len: bigint }, mode: bigint): bigint {
    const arg = encodeUffdioRegister(range, mode);
    this.#sys.ioctl(this.#fd, UFFDIO_REGISTER, arg);
    return new DataView(arg.buffer).getBigUint64(24, true);
  }

  /**
   * Unregisters a range (`UFFDIO_UNREGISTER`).
   *
   * @param range Page-aligned start and length.
   * @throws {IoctlError} From the kernel.
   */
  unregister(range: { start: bigint; len: bigint }): void {
    const arg = encodeUffdioWriteprotect(range, 0n).subarray(0, UFFDIO_RANGE_SIZE);
    this.#sys.ioctl(this.#fd, UFFDIO_UNREGISTER, arg);
  }

  /**
   * Sets or clears write protection on a registered range (`UFFDIO_WRITEPROTECT`).
   *
   * @param range Page-aligned start and length.
   * @param protect `true` to protect.
   * @throws {IoctlError} From the kernel.
   */
  writeProtect(range: { start: bigint; len: bigint }, protect: boolean): void {
    const arg = encodeUffdioWriteprotect(range, protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0n);
    this.#sys.ioctl(this.#fd, UFFDIO_WRITEPROTECT, arg);
  }

  /**
   * Closes the fd (idempotent); the kernel drops every registration.
   *
   * @throws {SyscallError} From `close`.
   */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1; // the kernel releases the fd even when close(2) reports an error
    this.#sys.close(fd);
  }

  /** Same as {@linkcode Userfaultfd.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
