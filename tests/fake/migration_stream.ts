/**
 * The data transfer sessions of the fake migration device: the files behind
 * the `data_fd`s that `MIG_DEVICE_STATE` arcs return.
 *
 * The stream is device-specific and opaque to userspace; this fake's is a
 * sequence of records, each a little-endian u32 length and a full snapshot of
 * the device state. Resuming applies the last complete record.
 *
 * A saving session opened in `PRE_COPY` first streams the initial record
 * (`initial_bytes`), then a new record whenever the device state changed
 * (`dirty_bytes`); once both are read, `read()` is `ENOMSG` (the temporary end
 * of stream of the UAPI, as mlx5 answers), or 0 where the driver answers as
 * the mtty sample does (`drained: "zero"`). Entering `STOP_COPY` appends the final record if
 * the state changed since the last one; when that is read, `read()` returns 0.
 *
 * @module
 */

import { EINVAL, ENODEV, ENOMSG, ENOTTY } from "../../sys/errno.ts";
import {
  VFIO_DEVICE_STATE_PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P,
} from "../../vfio/constants.ts";
import { VFIO_MIG_GET_PRECOPY_INFO } from "../../vfio/ioctls.ts";
import { PRECOPY_INFO_SIZE } from "../../vfio/uapi/device_feature.ts";
import type { FakeDataFile } from "./fds.ts";
import { fail, u32, type UserArg } from "./user_memory.ts";

/** Bytes before each snapshot in the stream: its length. */
export const RECORD_HEADER_SIZE = 4;

/**
 * Encodes one record of the fake's stream.
 *
 * @param snapshot The device state.
 * @returns The length-prefixed record.
 */
export function encodeRecord(snapshot: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_HEADER_SIZE + snapshot.byteLength);
  new DataView(out.buffer).setUint32(0, snapshot.byteLength, true);
  out.set(snapshot, RECORD_HEADER_SIZE);
  return out;
}

/** What a saving session sees of its device. */
export interface SaveSource {
  /** The device's migration state now (`PRECOPY_INFO` is valid only in the pre-copy states). */
  deviceState(): number;
  /** The device state's version; it changes whenever the state does. */
  version(): number;
  /** A copy of the device state. */
  snapshot(): Uint8Array;
}

/** A saving session (`O_RDONLY`): `PRE_COPY` and/or `STOP_COPY`. */
export class SaveFile implements FakeDataFile {
  /** Opened `O_RDONLY`. */
  readonly mode = "read" as const;
  /** `"<device> save"`. */
  readonly label: string;
  #source: SaveSource;
  #stream: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #initialEnd: number;
  #sentVersion: number;
  #final = false;
  #disabled = false;
  #drained: "ENOMSG" | "zero";

  /**
   * Starts a session with the initial record of the device state.
   *
   * @param label The label shown for the fd.
   * @param source The device.
   * @param options `stopCopy`: the session starts in `STOP_COPY` (the record
   *   is final); `drained`: what a read of a drained pre-copy stream answers
   *   (default `ENOMSG`).
   */
  constructor(
    label: string,
    source: SaveSource,
    options: { stopCopy: boolean; drained?: "ENOMSG" | "zero" },
  ) {
    this.label = label;
    this.#drained = options.drained ?? "ENOMSG";
    this.#source = source;
    this.#sentVersion = source.version();
    this.#append(encodeRecord(source.snapshot()));
    this.#initialEnd = this.#stream.byteLength;
    this.#final = options.stopCopy;
  }

  #append(bytes: Uint8Array): void {
    const next = new Uint8Array(this.#stream.byteLength + bytes.byteLength);
    next.set(this.#stream);
    next.set(bytes, this.#stream.byteLength);
    this.#stream = next;
  }

  #dirtyPending(): boolean {
    return this.#source.version() !== this.#sentVersion;
  }

  /** `PRE_COPY` → `STOP_COPY`: the final record follows, then end of stream. */
  enterStopCopy(): void {
    if (this.#dirtyPending()) {
      this.#sentVersion = this.#source.version();
      this.#append(encodeRecord(this.#source.snapshot()));
    }
    this.#final = true;
  }

  /** The session ends (leaving the saving states, reset, error): reads are `ENODEV`. */
  disable(): void {
    this.#disabled = true;
  }

  /**
   * Reads the stream.
   *
   * @param buf Destination.
   * @returns Bytes read; 0 at the end of a `STOP_COPY` stream (and on a
   *   drained pre-copy stream with `drained: "zero"`).
   * @throws {KernelError} `ENODEV` once the session ended, `ENOMSG` on a drained pre-copy stream.
   */
  read(buf: Uint8Array): number {
    if (this.#disabled) fail(ENODEV);
    if (this.#pos === this.#stream.byteLength && !this.#final) {
      if (!this.#dirtyPending()) return this.#drained === "zero" ? 0 : fail(ENOMSG);
      this.#sentVersion = this.#source.version();
      this.#append(encodeRecord(this.#source.snapshot()));
    }
    const n = Math.min(buf.byteLength, this.#stream.byteLength - this.#pos);
    buf.set(this.#stream.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return n;
  }

  /**
   * No write op: the file is `O_RDONLY` (the fd table answers `EBADF` first).
   *
   * @param _buf Unused.
   * @returns Never.
   * @throws {KernelError} `EINVAL`.
   */
  write(_buf: Uint8Array): number {
    return fail(EINVAL);
  }

  /**
   * `VFIO_MIG_GET_PRECOPY_INFO` (as mlx5's `mlx5vf_precopy_ioctl`).
   *
   * @param code The request number.
   * @param arg `struct vfio_precopy_info`.
   * @returns 0.
   * @throws {KernelError} `ENOTTY` for another request, `EFAULT`, `EINVAL` for a
   *   short `argsz` or a device outside `PRE_COPY`/`PRE_COPY_P2P`, `ENODEV` once the session ended.
   */
  ioctl(code: number, arg: UserArg): number {
    if (code !== Number(VFIO_MIG_GET_PRECOPY_INFO.code)) fail(ENOTTY);
    const info = arg.read(0, PRECOPY_INFO_SIZE);
    if (u32(info, 0) < PRECOPY_INFO_SIZE) fail(EINVAL);
    const state = this.#source.deviceState();
    if (state !== VFIO_DEVICE_STATE_PRE_COPY && state !== VFIO_DEVICE_STATE_PRE_COPY_P2P) {
      fail(EINVAL);
    }
    if (this.#disabled) fail(ENODEV);
    const initial = Math.max(0, this.#initialEnd - this.#pos);
    const unreadDirty = this.#stream.byteLength - Math.max(this.#pos, this.#initialEnd);
    const pendingDirty = this.#dirtyPending()
      ? RECORD_HEADER_SIZE + this.#source.snapshot().byteLength
      : 0;
    const v = new DataView(info.buffer);
    v.setUint32(4, 0, true);
    v.setBigUint64(8, BigInt(initial), true);
    v.setBigUint64(16, BigInt(unreadDirty + pendingDirty), true);
    arg.write(0, info);
    return 0;
  }

  /** The user closed the fd. */
  release(): void {
    this.#disabled = true;
  }
}

/** A resuming session (`O_WRONLY`): collects the stream written in `RESUMING`. */
export class ResumeFile implements FakeDataFile {
  /** Opened `O_WRONLY`. */
  readonly mode = "write" as const;
  /** `"<device> resume"`. */
  readonly label: string;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #disabled = false;

  /**
   * Starts the session.
   *
   * @param label The label shown for the fd.
   */
  constructor(label: string) {
    this.label = label;
  }

  /**
   * No read op: the file is `O_WRONLY` (the fd table answers `EBADF` first).
   *
   * @param _buf Unused.
   * @returns Never.
   * @throws {KernelError} `EINVAL`.
   */
  read(_buf: Uint8Array): number {
    return fail(EINVAL);
  }

  /**
   * Takes bytes of the stream.
   *
   * @param buf The bytes.
   * @returns All of them.
   * @throws {KernelError} `ENODEV` once the session ended.
   */
  write(buf: Uint8Array): number {
    if (this.#disabled) fail(ENODEV);
    this.#chunks.push(buf.slice());
    this.#size += buf.byteLength;
    return buf.byteLength;
  }

  /**
   * No ioctl op.
   *
   * @param _code Unused.
   * @param _arg Unused.
   * @returns Never.
   * @throws {KernelError} `ENOTTY`.
   */
  ioctl(_code: number, _arg: UserArg): number {
    return fail(ENOTTY);
  }

  /**
   * `RESUMING` → `STOP`: checks the stream and returns the state to load.
   *
   * @returns The last complete record, or null when nothing was written
   *   (the fake's choice: leaving `RESUMING` untouched loads nothing).
   * @throws {KernelError} `EINVAL` for a truncated or malformed stream.
   */
  finish(): Uint8Array | null {
    const all = new Uint8Array(this.#size);
    let at = 0;
    for (const c of this.#chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    let last: Uint8Array | undefined;
    for (let pos = 0; pos < all.byteLength;) {
      if (pos + RECORD_HEADER_SIZE > all.byteLength) fail(EINVAL);
      const len = u32(all, pos);
      const end = pos + RECORD_HEADER_SIZE + len;
      if (end > all.byteLength) fail(EINVAL);
      last = all.slice(pos + RECORD_HEADER_SIZE, end);
      pos = end;
    }
    return last ?? null;
  }

  /** The session ends: writes are `ENODEV`. */
  disable(): void {
    this.#disabled = true;
  }

  /** The user closed the fd. */
  release(): void {
    this.#disabled = true;
  }
}
