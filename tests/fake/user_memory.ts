/**
 * The fake kernel's view of user memory: `copy_from_user` / `copy_to_user`
 * over either a caller's `Uint8Array` (the usual `ioctl` argument) or a raw
 * host address (`ioctlValue`, bitmap pointers, DMA targets).
 *
 * Addresses are probed with `madvise(MADV_NORMAL)` before they are touched, so
 * a bad pointer becomes `EFAULT` instead of a crash of the test process.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { libc } from "../../sys/_libc.ts";
import { EFAULT, EINVAL, errnoName } from "../../sys/errno.ts";
import { hostView } from "../../sys/host_memory.ts";

/**
 * An errno the fake kernel returns from inside a handler. It never leaves
 * {@linkcode FakeKernel}: the boundary turns it into `IoctlError` or `SyscallError`.
 */
export class KernelError extends Error {
  /** The errno. */
  readonly errno: number;

  /**
   * Creates the error.
   *
   * @param errno The errno the handler returns.
   */
  constructor(errno: number) {
    super(`Fake kernel returns ${errnoName(errno)}`);
    this.name = "KernelError";
    this.errno = errno;
  }
}

/**
 * Returns an errno from a handler (`return -errno;` in the kernel).
 *
 * @param errno The errno.
 * @throws {KernelError} Always.
 */
export function fail(errno: number): never {
  throw new KernelError(errno);
}

/** x86_64 `TASK_SIZE_MAX` with 4-level paging: `(1 << 47) - PAGE_SIZE`. */
export const TASK_SIZE_MAX = 0x7fff_ffff_f000n;
/** The kernel's `U64_MAX`. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;
const PAGE_MASK = 0xfffn;

/**
 * x86_64 `access_ok(addr, size)` as in 6.1 (`__chk_range_not_ok` against
 * `TASK_SIZE_MAX`): the range must end at or below `TASK_SIZE_MAX`.
 *
 * @param addr The user address.
 * @param size Bytes.
 * @returns Whether the range is a valid user range (mapped or not).
 */
export function accessOk(addr: bigint, size: bigint): boolean {
  return addr + size <= TASK_SIZE_MAX;
}

/**
 * Whether every page of `[addr, addr + length)` is mapped in this process.
 *
 * @param addr The host address.
 * @param length Bytes.
 * @returns True when the whole range is mapped.
 */
export function isMapped(addr: bigint, length: bigint): boolean {
  if (length === 0n) return true;
  if (addr === 0n || addr + length > TASK_SIZE_MAX) return false;
  const start = addr & ~PAGE_MASK;
  const end = (addr + length + PAGE_MASK) & ~PAGE_MASK;
  // SAFETY: MADV_NORMAL (0) changes nothing; it fails with ENOMEM when part
  // of the range is unmapped, which is all we ask of it.
  return libc().madvise(start, end - start, 0) === 0;
}

/**
 * `copy_from_user` from a host address.
 *
 * @param addr The host address.
 * @param length Bytes.
 * @returns A copy of the bytes.
 * @throws {KernelError} `EFAULT` when the range is not mapped.
 */
export function copyFromUser(addr: bigint, length: number): Uint8Array {
  if (!isMapped(addr, BigInt(length))) fail(EFAULT);
  return hostView(addr, length).slice();
}

/**
 * `copy_to_user` to a host address. Read-only mappings are not detected
 * (writing one would fault the test process).
 *
 * @param addr The host address.
 * @param bytes The bytes.
 * @throws {KernelError} `EFAULT` when the range is not mapped.
 */
export function copyToUser(addr: bigint, bytes: Uint8Array): void {
  if (!isMapped(addr, BigInt(bytes.byteLength))) fail(EFAULT);
  hostView(addr, bytes.byteLength).set(bytes);
}

/** An ioctl argument as the kernel sees it: a user pointer. */
export interface UserArg {
  /**
   * `copy_from_user(dst, arg + offset, length)`.
   *
   * @param offset Offset from the argument pointer.
   * @param length Bytes.
   * @returns A copy.
   * @throws {KernelError} `EFAULT` past the end of the caller's memory.
   */
  read(offset: number, length: number): Uint8Array;
  /**
   * `copy_to_user(arg + offset, bytes)`.
   *
   * @param offset Offset from the argument pointer.
   * @param bytes The bytes.
   * @throws {KernelError} `EFAULT` past the end of the caller's memory.
   */
  write(offset: number, bytes: Uint8Array): void;
  /**
   * `strndup_user(arg, max)`.
   *
   * @param max The longest string accepted, NUL included.
   * @returns The string.
   * @throws {KernelError} `EFAULT` when unreadable, `EINVAL` when no NUL within `max`.
   */
  readCString(max: number): string;
}

const decoder = new TextDecoder();

/**
 * Wraps a caller's `Uint8Array`: reads or writes past its end are `EFAULT`.
 *
 * @param buf The argument bytes.
 * @returns The user argument.
 */
export function bufferArg(buf: Uint8Array): UserArg {
  return {
    read(offset, length) {
      if (offset < 0 || offset + length > buf.byteLength) fail(EFAULT);
      return buf.slice(offset, offset + length);
    },
    write(offset, bytes) {
      if (offset < 0 || offset + bytes.byteLength > buf.byteLength) fail(EFAULT);
      buf.set(bytes, offset);
    },
    readCString(max) {
      const end = buf.subarray(0, max).indexOf(0);
      if (end < 0) fail(buf.byteLength >= max ? EINVAL : EFAULT);
      return decoder.decode(buf.subarray(0, end));
    },
  };
}

/**
 * Wraps a raw user pointer (the `ioctlValue` shape).
 *
 * @param addr The host address.
 * @returns The user argument.
 */
export function addressArg(addr: bigint): UserArg {
  return {
    read: (offset, length) => copyFromUser(addr + BigInt(offset), length),
    write: (offset, bytes) => copyToUser(addr + BigInt(offset), bytes),
    readCString(max) {
      const bytes: number[] = [];
      for (let i = 0; i < max; i++) {
        const b = copyFromUser(addr + BigInt(i), 1)[0];
        if (b === 0) return decoder.decode(new Uint8Array(bytes));
        bytes.push(b);
      }
      fail(EINVAL);
    },
  };
}

/**
 * Reads a little-endian u32 from bytes.
 *
 * @param b The bytes.
 * @param at The offset.
 * @returns The value.
 */
export function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
}

/**
 * Reads a little-endian u64 from bytes.
 *
 * @param b The bytes.
 * @param at The offset.
 * @returns The value.
 */
export function u64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true);
}

/**
 * Encodes a little-endian u64.
 *
 * @param v The value.
 * @returns 8 bytes.
 */
export function u64Bytes(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}
