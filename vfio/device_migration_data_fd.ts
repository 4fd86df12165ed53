/**
 * The migration `data_fd` a `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` arc returns:
 * a stream read while saving (`PRE_COPY`, `STOP_COPY`) and written while
 * `RESUMING`.
 *
 * @module
 */

import { EINTR, ENOMSG } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { VfioStateError } from "./errors.ts";
import { VFIO_MIG_GET_PRECOPY_INFO } from "./ioctls.ts";
import { decodePrecopyInfo, encodePrecopyInfoRequest } from "./uapi/device_feature.ts";

/** Bytes asked of each `read(2)` of a data fd. */
export const DATA_FD_READ_CHUNK = 1 << 20;

/** What {@linkcode MigrationDataFd.readAvailable} got. */
export interface MigrationDataChunk {
  /** The bytes read. */
  readonly bytes: Uint8Array;
  /**
   * True at end of stream (`read()` returned 0: the whole state is out);
   * false when a pre-copy stream is drained for now (`ENOMSG`).
   */
  readonly eof: boolean;
}

/** `struct vfio_precopy_info`, as {@linkcode MigrationDataFd.precopyInfo} reads it. */
export interface PrecopyInfo {
  /** `flags` (0, or `VFIO_PRECOPY_INFO_REINIT` on newer kernels). */
  readonly flags: number;
  /** Bytes of the initial data still to read; the device should not stop before they are read. */
  readonly initialBytes: bigint;
  /** An estimate of the further bytes the device state has grown by. */
  readonly dirtyBytes: bigint;
}

function retryEintr<T>(fn: () => T): T {
  for (;;) {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof SyscallError && e.errno === EINTR)) throw e;
    }
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * A migration data fd, owned: {@linkcode MigrationDataFd.close} (or
 * disposal) closes it, once. Returned by `VfioDeviceMigration.setState()`
 * for the arcs that open a session.
 *
 * @example Read the whole device state in STOP_COPY
 * ```ts ignore
 * using data = migration.setState(VFIO_DEVICE_STATE_STOP_COPY)!;
 * const state = data.readAll();
 * ```
 */
export class MigrationDataFd implements Disposable {
  #sys: Syscalls;
  #fd: number;

  /**
   * Takes ownership of a data fd.
   *
   * @param sys The syscall boundary.
   * @param fd The `data_fd` the kernel returned.
   */
  constructor(sys: Syscalls, fd: number) {
    this.#sys = sys;
    this.#fd = fd;
  }

  /** The raw fd (-1 once closed). */
  get unsafeFd(): number {
    return this.#fd;
  }

  /** Whether the fd is closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  #check(what: string): number {
    if (this.#fd < 0) throw new VfioStateError(`Cannot ${what}: the data fd is closed`);
    return this.#fd;
  }

  /**
   * Reads until end of stream, or until a pre-copy stream is drained for now
   * (`ENOMSG`, which is not an error: more may come while the device runs).
   *
   * @returns The bytes and whether the stream ended.
   * @throws {VfioStateError} When closed.
   * @throws {SyscallError} When `read(2)` fails otherwise (`EINTR` is retried).
   */
  readAvailable(): MigrationDataChunk {
    const fd = this.#check("read migration data");
    const chunks: Uint8Array[] = [];
    let size = 0;
    const buf = new Uint8Array(DATA_FD_READ_CHUNK);
    for (;;) {
      let n: number;
      try {
        n = retryEintr(() => this.#sys.read(fd, buf));
      } catch (e) {
        if (e instanceof SyscallError && e.errno === ENOMSG) {
          return { bytes: concat(chunks, size), eof: false };
        }
        throw e;
      }
      if (n === 0) return { bytes: concat(chunks, size), eof: true };
      chunks.push(buf.slice(0, n));
      size += n;
    }
  }

  /**
   * One `read(2)` of at most `maxBytes`, as QEMU's `vfio_save_block` does
   * each pre-copy iteration.
   *
   * @param maxBytes The most to read, at least 1.
   * @returns The bytes read; empty when a pre-copy stream is drained for now
   *   (`ENOMSG`) or at end of stream (`read()` returned 0).
   * @throws {RangeError} When `maxBytes` is not a positive integer.
   * @throws {VfioStateError} When closed.
   * @throws {SyscallError} When `read(2)` fails otherwise (`EINTR` is retried).
   */
  readChunk(maxBytes: number): Uint8Array {
    if (!Number.isInteger(maxBytes) || maxBytes < 1) {
      throw new RangeError(
        `Cannot read ${maxBytes} bytes of migration data: not a positive integer`,
      );
    }
    const fd = this.#check("read migration data");
    const buf = new Uint8Array(maxBytes);
    let n: number;
    try {
      n = retryEintr(() => this.#sys.read(fd, buf));
    } catch (e) {
      if (e instanceof SyscallError && e.errno === ENOMSG) return new Uint8Array(0);
      throw e;
    }
    return n === maxBytes ? buf : buf.slice(0, n);
  }

  /**
   * Reads the stream to its end (`read()` returns 0), as in `STOP_COPY`.
   *
   * @returns Every byte.
   * @throws {VfioStateError} When closed.
   * @throws {SyscallError} When `read(2)` fails, `ENOMSG` included (a
   *   `STOP_COPY` stream is never drained before its end).
   */
  readAll(): Uint8Array {
    const fd = this.#check("read migration data");
    const chunks: Uint8Array[] = [];
    let size = 0;
    const buf = new Uint8Array(DATA_FD_READ_CHUNK);
    for (;;) {
      const n = retryEintr(() => this.#sys.read(fd, buf));
      if (n === 0) return concat(chunks, size);
      chunks.push(buf.slice(0, n));
      size += n;
    }
  }

  /**
   * Writes every byte, as in `RESUMING` (short writes are continued).
   *
   * @param bytes The stream, or the next part of it.
   * @throws {VfioStateError} When closed, or when the fd takes no bytes.
   * @throws {SyscallError} When `write(2)` fails (`EINTR` is retried).
   */
  writeAll(bytes: Uint8Array): void {
    const fd = this.#check("write migration data");
    for (let done = 0; done < bytes.byteLength;) {
      const n = retryEintr(() => this.#sys.write(fd, bytes.subarray(done)));
      if (n <= 0) {
        throw new VfioStateError(
          `Cannot write migration data: the data fd took 0 of ${bytes.byteLength - done} bytes`,
        );
      }
      done += n;
    }
  }

  /**
   * Reads `VFIO_MIG_GET_PRECOPY_INFO`: how much pre-copy data is pending.
   *
   * @returns The initial and dirty byte counts.
   * @throws {VfioStateError} When closed.
   * @throws {IoctlError} `EINVAL` outside `PRE_COPY`/`PRE_COPY_P2P`, `ENOTTY`
   *   on a `RESUMING` fd.
   */
  precopyInfo(): PrecopyInfo {
    const buf = encodePrecopyInfoRequest();
    this.#sys.ioctl(this.#check("read pre-copy info"), VFIO_MIG_GET_PRECOPY_INFO, buf);
    return decodePrecopyInfo(buf);
  }

  /**
   * Closes the fd. Idempotent; the fd is forgotten even when `close(2)` fails.
   *
   * @throws {SyscallError} When the kernel reports an error on close.
   */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
  }

  /** Closes the fd (see {@linkcode MigrationDataFd.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
