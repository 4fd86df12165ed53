/**
 * VFIO migration v2 for one device: the `VFIO_DEVICE_FEATURE_MIGRATION`
 * probe, `MIG_DEVICE_STATE` arcs with QEMU's recovery rules
 * (`vfio_migration_set_state`), the `data_fd` stream, and the save and load
 * sequences a pre-copy engine drives.
 *
 * A {@linkcode VfioDeviceMigration} has the shape of the migration engine's
 * `DeviceMigrator` (`id`, `supported`, `reason`, `saveState()`,
 * `resumeRunning()`, and with `VFIO_MIGRATION_PRE_COPY` `precopy`,
 * `startPrecopy()`, `precopyInfo()`, `readPrecopy()`) and of a destination's
 * device (`loadState()`, or `beginResume()`, `loadChunk()`, `finishResume()`
 * and `abortResume()` as chunks arrive), so it can be handed to the engine
 * as it is.
 *
 * Requires `--allow-ffi` and access to `/dev/vfio` for the real kernel.
 *
 * @module
 */

import { IoctlError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import {
  VFIO_DEVICE_STATE_ERROR,
  VFIO_DEVICE_STATE_PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P,
  VFIO_DEVICE_STATE_RESUMING,
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "./constants.ts";
import type { VfioDevice } from "./device.ts";
import { DeviceStateError, deviceStateName } from "./device_migration_error.ts";
import { MigrationDataFd } from "./device_migration_data_fd.ts";
import {
  getMigState,
  readMigrationFlags,
  readStopCopySize,
  setMigState,
} from "./device_migration_feature.ts";
import { VfioStateError } from "./errors.ts";

export {
  DATA_FD_READ_CHUNK,
  type MigrationDataChunk,
  MigrationDataFd,
  type PrecopyInfo,
} from "./device_migration_data_fd.ts";
export {
  DeviceStateError,
  type DeviceStateFailure,
  deviceStateName,
} from "./device_migration_error.ts";

/** The reason a device without migration support gives (vfio-pci has no `mig_ops`). */
export const NO_MIGRATION_REASON =
  "the device's driver has no migration support (VFIO_DEVICE_FEATURE_MIGRATION: ENOTTY)";

/** Options of {@linkcode VfioDeviceMigration.setState}. */
export interface SetStateOptions {
  /**
   * The state to fall back to when the arc fails (QEMU's `recover_state`);
   * when that fails too the device is reset (`VFIO_DEVICE_RESET`, after which
   * it is `RUNNING`). `VFIO_DEVICE_STATE_ERROR` resets at once (QEMU's
   * `vfio_migration_set_state_or_reset`). Omitted: no recovery; the error
   * reports the state the kernel left the device in.
   */
  readonly recover?: number;
}

/** Options of {@linkcode VfioDeviceMigration.loadState}. */
export interface LoadStateOptions {
  /** Move the device to `RUNNING` once the state is loaded (default true); false leaves it in `STOP`. */
  readonly run?: boolean;
}

/**
 * Migration v2 of a {@linkcode VfioDevice}. Made by
 * {@linkcode VfioDeviceMigration.probe}; a device without migration support
 * gets an object with `supported: false` and the `reason`.
 *
 * @example Save a device's state and load it into another
 * ```ts ignore
 * import { VfioDeviceMigration } from "./device_migration.ts";
 * const source = VfioDeviceMigration.probe(srcDevice);
 * if (!source.supported) throw new TypeError(source.reason);
 * const bytes = await source.saveState(); // RUNNING -> STOP -> STOP_COPY -> STOP
 * await VfioDeviceMigration.probe(dstDevice).loadState(bytes); // STOP -> RESUMING -> STOP -> RUNNING
 * ```
 */
export class VfioDeviceMigration {
  #device: VfioDevice;
  #sys: Syscalls;
  #state: number | undefined;
  // The PRE_COPY session's data fd, from startPrecopy() to STOP_COPY's end or RUNNING.
  #precopyData: MigrationDataFd | undefined;
  // The RESUMING session's data fd, from beginResume() to finishResume() or abortResume().
  #resumeData: MigrationDataFd | undefined;
  /** `VFIO_MIGRATION_*` flags the driver offers (0 when unsupported). */
  readonly flags: number;
  /** Whether the device can migrate its state. */
  readonly supported: boolean;
  /** Why not, when it cannot. */
  readonly reason?: string;

  private constructor(device: VfioDevice, flags: number, reason: string | undefined) {
    this.#device = device;
    this.#sys = device.syscalls;
    this.flags = flags;
    this.supported = reason === undefined;
    if (reason !== undefined) this.reason = reason;
  }

  /**
   * Asks the device's driver for migration support: `VFIO_DEVICE_FEATURE`
   * with `PROBE|GET` of `VFIO_DEVICE_FEATURE_MIGRATION`, then a `GET` of its
   * flags.
   *
   * @param device An open device.
   * @returns The migration; `supported: false` with a reason when the
   *   driver answers `ENOTTY` (vfio-pci itself, for edu).
   * @throws {VfioStateError} When the device is closed.
   * @throws {IoctlError} When the kernel refuses otherwise.
   *
   * @example Probe a device
   * ```ts ignore
   * const migration = VfioDeviceMigration.probe(device);
   * console.log(migration.supported, migration.reason);
   * ```
   */
  static probe(device: VfioDevice): VfioDeviceMigration {
    if (device.closed) {
      throw new VfioStateError(`Cannot probe migration: device ${device.name} is closed`);
    }
    const migrationFlags = readMigrationFlags(device.syscalls, device.unsafeFd);
    if (migrationFlags === undefined) {
      return new VfioDeviceMigration(device, 0, NO_MIGRATION_REASON);
    }
    if ((migrationFlags & VFIO_MIGRATION_STOP_COPY) === 0) {
      const hex = migrationFlags.toString(16);
      const reason = `the device's driver offers no STOP_COPY (migration flags 0x${hex})`;
      return new VfioDeviceMigration(device, migrationFlags, reason);
    }
    return new VfioDeviceMigration(device, migrationFlags, undefined);
  }

  /** The device name; the id written into the migration stream with the state. */
  get id(): string {
    return this.#device.name;
  }

  /** The device. */
  get device(): VfioDevice {
    return this.#device;
  }

  #fd(what: string): number {
    if (!this.supported) throw new VfioStateError(`Cannot ${what}: ${this.reason}`);
    if (this.#device.closed) {
      throw new VfioStateError(`Cannot ${what}: device ${this.#device.name} is closed`);
    }
    return this.#device.unsafeFd;
  }

  /**
   * Reads the device state (`GET` of `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`).
   *
   * @returns `VFIO_DEVICE_STATE_*`.
   * @throws {VfioStateError} When unsupported or closed.
   * @throws {IoctlError} When the kernel refuses.
   */
  get deviceState(): number {
    this.#state = getMigState(this.#sys, this.#fd("read the device state"));
    return this.#state;
  }

  #set(fd: number, state: number): MigrationDataFd | undefined {
    const dataFd = setMigState(this.#sys, fd, { state });
    this.#state = state;
    return dataFd < 0 ? undefined : new MigrationDataFd(this.#sys, dataFd);
  }

  #stateOr(fallback: number): number {
    try {
      return this.deviceState;
    } catch {
      return fallback;
    }
  }

  /**
   * Moves the device to a state (`SET` of `MIG_DEVICE_STATE`). The kernel
   * walks its FSM one arc at a time; the arcs that start a data transfer
   * session (`STOP` → `STOP_COPY`, `RUNNING` → `PRE_COPY`, `STOP` →
   * `RESUMING`) return the session's `data_fd`.
   *
   * @param next The state (`VFIO_DEVICE_STATE_*`).
   * @param options The recover state.
   * @returns The data fd, when the arc opened one; the caller closes it.
   * @throws {DeviceStateError} When the kernel refuses; it names the arc,
   *   carries the `IoctlError` as `cause`, and says where recovery left the device.
   * @throws {VfioStateError} When unsupported or closed, or for `STOP_COPY` →
   *   `PRE_COPY`/`PRE_COPY_P2P`, which is refused without asking the kernel.
   *
   * @example Enter STOP_COPY and read the state
   * ```ts ignore
   * using data = migration.setState(VFIO_DEVICE_STATE_STOP_COPY, { recover: VFIO_DEVICE_STATE_STOP });
   * const bytes = data!.readAll();
   * ```
   */
  setState(next: number, options: SetStateOptions = {}): MigrationDataFd | undefined {
    const fd = this.#fd(`move the device to ${deviceStateName(next)}`);
    const from = this.#state ?? this.deviceState;
    if (next === VFIO_DEVICE_STATE_PRE_COPY || next === VFIO_DEVICE_STATE_PRE_COPY_P2P) {
      // STOP_COPY has no way back to PRE_COPY: vfio_from_fsm_table holds ERROR
      // there, and Linux 6.12's vfio_mig_get_next_state() spins on that entry
      // forever inside the ioctl (state_flags_table[ERROR] is ~0U) instead of
      // answering EINVAL. Never ask; read the real state, not the cached one.
      const actual = this.deviceState;
      if (actual === VFIO_DEVICE_STATE_STOP_COPY) {
        throw new VfioStateError(
          `Cannot move device ${this.#device.name} from STOP_COPY to ${
            deviceStateName(next)
          }: there is no such arc (the kernel's FSM table has none, and Linux 6.12 hangs in ` +
            "the ioctl when asked); go through STOP first",
        );
      }
    }
    try {
      return this.#set(fd, next);
    } catch (e) {
      if (!(e instanceof IoctlError)) throw e;
      this.#state = undefined;
      const { recover } = options;
      let needReset = recover === VFIO_DEVICE_STATE_ERROR;
      if (recover !== undefined && !needReset) {
        try {
          this.#set(fd, recover)?.close(); // QEMU ignores a data fd here; never leak it
        } catch {
          needReset = true;
        }
      }
      let reset = false;
      if (needReset) {
        try {
          this.#device.reset();
          reset = true;
        } catch {
          // The reset error is lost as in QEMU (hw_error); the state read says the rest.
        }
      }
      const state = this.#stateOr(VFIO_DEVICE_STATE_ERROR);
      throw new DeviceStateError(
        { device: this.#device.name, from, to: next, errno: e.errno, state, reset },
        { cause: e },
      );
    }
  }

  /**
   * Reads the estimated `STOP_COPY` stream size (`MIG_DATA_SIZE`, Linux 6.2+).
   *
   * @returns Bytes, or undefined when the kernel has no `MIG_DATA_SIZE` (`ENOTTY`).
   * @throws {VfioStateError} When unsupported or closed.
   * @throws {IoctlError} When the kernel refuses otherwise.
   */
  stopCopySize(): bigint | undefined {
    return readStopCopySize(this.#sys, this.#fd("read the stop-copy size"));
  }

  /**
   * The state this device would send at stop-and-copy now, for the
   * engine's expected downtime (QEMU's `vfio_state_pending_exact()`): the
   * `MIG_DATA_SIZE` estimate, or 0 where the kernel has none (or the device
   * cannot migrate).
   *
   * @returns Bytes.
   * @throws {IoctlError} When the kernel refuses other than with `ENOTTY`.
   */
  pendingBytes(): number {
    if (!this.supported) return 0;
    return Number(this.stopCopySize() ?? 0n);
  }

  #toStop(what: string): void {
    const start = this.deviceState;
    if (start === VFIO_DEVICE_STATE_ERROR) {
      throw new VfioStateError(
        `Cannot ${what} of ${this.id}: the device is in ERROR (only a reset leaves it)`,
      );
    }
    if (start !== VFIO_DEVICE_STATE_STOP) {
      this.setState(VFIO_DEVICE_STATE_STOP, { recover: start })?.close();
    }
  }

  /**
   * Stops the device and returns its state: `STOP`, then `STOP_COPY` and its
   * `data_fd` read to the end, then `STOP`. From `PRE_COPY` (after
   * {@linkcode VfioDeviceMigration.startPrecopy}) it goes to `STOP_COPY`
   * directly and reads the rest of the pre-copy session's stream: the bytes
   * {@linkcode VfioDeviceMigration.readPrecopy} has not read. The data fd is
   * closed on every path; on failure the device is left stopped where possible (call
   * {@linkcode VfioDeviceMigration.resumeRunning} to run it again).
   *
   * @returns The device state stream.
   * @throws {DeviceStateError} When an arc fails.
   * @throws {SyscallError} When reading the data fd fails.
   * @throws {VfioStateError} When unsupported, closed, or in ERROR.
   */
  saveState(): Promise<Uint8Array> {
    try {
      let data: MigrationDataFd | undefined;
      if (this.#precopyData !== undefined) {
        // PRE_COPY -> STOP_COPY: the same data fd goes on with the rest of the stream.
        data = this.#precopyData;
        this.setState(VFIO_DEVICE_STATE_STOP_COPY, { recover: this.#state })?.close();
        this.#precopyData = undefined;
      } else {
        this.#toStop("save the state");
        data = this.setState(VFIO_DEVICE_STATE_STOP_COPY, { recover: VFIO_DEVICE_STATE_STOP });
      }
      if (data === undefined) {
        this.setState(VFIO_DEVICE_STATE_STOP, { recover: VFIO_DEVICE_STATE_ERROR });
        throw new VfioStateError(`Cannot save the state of ${this.id}: STOP_COPY gave no data fd`);
      }
      const failures: unknown[] = [];
      let bytes: Uint8Array = new Uint8Array(0);
      try {
        bytes = data.readAll();
      } catch (e) {
        failures.push(e);
      }
      try {
        data.close();
      } catch (e) {
        failures.push(e);
      }
      try {
        this.setState(VFIO_DEVICE_STATE_STOP, { recover: VFIO_DEVICE_STATE_ERROR });
      } catch (e) {
        failures.push(e);
      }
      if (failures.length > 0) throw failures[0];
      return Promise.resolve(bytes);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Returns the device to `RUNNING` after a failed migration. A device that
   * cannot get there (in ERROR, say) is reset, as QEMU does; that loses its
   * internal state but leaves it running, and is not an error.
   *
   * @throws {DeviceStateError} Only when the device is not `RUNNING` even after the reset.
   */
  resumeRunning(): void {
    if (!this.supported) return;
    try {
      this.setState(VFIO_DEVICE_STATE_RUNNING, { recover: VFIO_DEVICE_STATE_ERROR })?.close();
    } catch (e) {
      if (e instanceof DeviceStateError && e.state === VFIO_DEVICE_STATE_RUNNING) return;
      throw e;
    } finally {
      // PRE_COPY -> RUNNING ends the session: its data fd goes too.
      const data = this.#precopyData;
      this.#precopyData = undefined;
      data?.close();
    }
  }

  /** Whether the driver offers `PRE_COPY` (`VFIO_MIGRATION_PRE_COPY`). */
  get precopy(): boolean {
    return this.supported && (this.flags & VFIO_MIGRATION_PRE_COPY) !== 0;
  }

  /**
   * Starts pre-copy: `RUNNING` → `PRE_COPY`, whose data fd this object keeps
   * until {@linkcode VfioDeviceMigration.saveState} reads it to its end or
   * {@linkcode VfioDeviceMigration.resumeRunning} ends the session.
   *
   * @throws {VfioStateError} When the driver offers no `PRE_COPY`, the
   *   device is not `RUNNING`, a session is open, or the arc gave no data fd.
   * @throws {DeviceStateError} When the arc fails (the device is returned to `RUNNING`).
   *
   * @example Send pre-copy data while the device runs
   * ```ts ignore
   * migration.startPrecopy(); // RUNNING -> PRE_COPY
   * const { initialBytes } = migration.precopyInfo();
   * const chunk = migration.readPrecopy(1 << 20); // empty when drained for now (ENOMSG)
   * const rest = await migration.saveState(); // PRE_COPY -> STOP_COPY -> STOP
   * ```
   */
  startPrecopy(): void {
    if (!this.precopy) {
      throw new VfioStateError(
        `Cannot start pre-copy of ${this.id}: ${
          this.reason ?? "the driver offers no PRE_COPY (VFIO_MIGRATION_PRE_COPY)"
        }`,
      );
    }
    if (this.#precopyData !== undefined) {
      throw new VfioStateError(`Cannot start pre-copy of ${this.id}: it is in pre-copy already`);
    }
    const state = this.deviceState;
    if (state !== VFIO_DEVICE_STATE_RUNNING) {
      throw new VfioStateError(
        `Cannot start pre-copy of ${this.id}: the device is in ${
          deviceStateName(state)
        }, not RUNNING`,
      );
    }
    const data = this.setState(VFIO_DEVICE_STATE_PRE_COPY, { recover: VFIO_DEVICE_STATE_RUNNING });
    if (data === undefined) {
      this.setState(VFIO_DEVICE_STATE_RUNNING, { recover: VFIO_DEVICE_STATE_ERROR })?.close();
      throw new VfioStateError(`Cannot start pre-copy of ${this.id}: PRE_COPY gave no data fd`);
    }
    this.#precopyData = data;
  }

  #precopyFd(what: string): MigrationDataFd {
    const data = this.#precopyData;
    if (data === undefined) {
      throw new VfioStateError(`Cannot ${what} of ${this.id}: it is not in pre-copy`);
    }
    return data;
  }

  /**
   * How much pre-copy data the device holds (`VFIO_MIG_GET_PRECOPY_INFO` on
   * the pre-copy data fd): the initial bytes still to read (the device
   * should not stop before they are), and an estimate of the bytes the state
   * has grown by since.
   *
   * @returns The counts, as numbers.
   * @throws {VfioStateError} When not in pre-copy.
   * @throws {IoctlError} When the kernel refuses (`EINVAL` outside `PRE_COPY`/`PRE_COPY_P2P`).
   */
  precopyInfo(): { initialBytes: number; dirtyBytes: number } {
    const info = this.#precopyFd("read the pre-copy info").precopyInfo();
    return { initialBytes: Number(info.initialBytes), dirtyBytes: Number(info.dirtyBytes) };
  }

  /**
   * One read of the pre-copy data fd.
   *
   * @param maxBytes The most to read.
   * @returns The bytes; empty when the device has nothing now (`ENOMSG`,
   *   or `read()` returned 0).
   * @throws {VfioStateError} When not in pre-copy.
   * @throws {RangeError} When `maxBytes` is not a positive integer.
   * @throws {SyscallError} When `read(2)` fails otherwise.
   */
  readPrecopy(maxBytes: number): Uint8Array {
    return this.#precopyFd("read pre-copy data").readChunk(maxBytes);
  }

  /**
   * Starts loading a state in parts, as chunks arrive: `STOP`, then
   * `RESUMING`, whose data fd this object keeps until
   * {@linkcode VfioDeviceMigration.finishResume} or
   * {@linkcode VfioDeviceMigration.abortResume}.
   *
   * @throws {DeviceStateError} When an arc fails.
   * @throws {VfioStateError} When unsupported, closed, in ERROR, already
   *   resuming, or the arc gave no data fd.
   *
   * @example Load chunks as they arrive
   * ```ts ignore
   * migration.beginResume(); // STOP -> RESUMING
   * for (const chunk of chunks) migration.loadChunk(chunk);
   * migration.finishResume(); // RESUMING -> STOP -> RUNNING
   * ```
   */
  beginResume(): void {
    if (this.#resumeData !== undefined) {
      throw new VfioStateError(`Cannot begin resuming ${this.id}: it is resuming already`);
    }
    this.#toStop("load the state");
    const data = this.setState(VFIO_DEVICE_STATE_RESUMING, { recover: VFIO_DEVICE_STATE_STOP });
    if (data === undefined) {
      this.abortResume();
      throw new VfioStateError(`Cannot load the state of ${this.id}: RESUMING gave no data fd`);
    }
    this.#resumeData = data;
  }

  /**
   * Writes the next chunk of the state into the `RESUMING` data fd. On
   * failure the device is reset (see {@linkcode VfioDeviceMigration.abortResume}).
   *
   * @param bytes The chunk.
   * @throws {VfioStateError} When not resuming.
   * @throws {SyscallError} When `write(2)` fails.
   */
  loadChunk(bytes: Uint8Array): void {
    const data = this.#resumeData;
    if (data === undefined) {
      throw new VfioStateError(`Cannot load a state chunk into ${this.id}: it is not resuming`);
    }
    try {
      data.writeAll(bytes);
    } catch (e) {
      this.abortResume();
      throw e;
    }
  }

  /**
   * Ends loading in parts: closes the data fd, `RESUMING` → `STOP` (where the
   * driver checks and applies the state), then `RUNNING`. When the driver
   * rejects the state the device is reset.
   *
   * @throws {VfioStateError} When not resuming.
   * @throws {DeviceStateError} When an arc fails (`EINVAL` on `RESUMING` →
   *   `STOP`: the driver rejected the stream; the device was reset).
   */
  finishResume(): void {
    const data = this.#resumeData;
    if (data === undefined) {
      throw new VfioStateError(`Cannot finish resuming ${this.id}: it is not resuming`);
    }
    this.#resumeData = undefined;
    try {
      data.close();
    } catch (e) {
      this.abortResume();
      throw e;
    }
    this.setState(VFIO_DEVICE_STATE_STOP, { recover: VFIO_DEVICE_STATE_ERROR });
    this.setState(VFIO_DEVICE_STATE_RUNNING, { recover: VFIO_DEVICE_STATE_ERROR });
  }

  /**
   * Gives up loading in parts: closes the data fd and resets the device
   * (`VFIO_DEVICE_RESET`), so it never runs with a partial state. Does
   * nothing when not resuming.
   *
   * @throws {IoctlError} When the reset fails.
   */
  abortResume(): void {
    const data = this.#resumeData;
    this.#resumeData = undefined;
    try {
      data?.close();
    } catch {
      // The reset below ends the session whatever close said.
    }
    this.#state = undefined;
    if (this.supported && !this.#device.closed) this.#device.reset();
  }

  /**
   * Loads a state saved by {@linkcode VfioDeviceMigration.saveState}:
   * `STOP`, `RESUMING` with every byte written to its `data_fd`, `STOP`
   * (where the driver checks and applies the state), then `RUNNING`. The data
   * fd is closed on every path; when the driver rejects the state the device
   * is reset.
   *
   * @param bytes The state stream.
   * @param options Whether to run the device afterwards.
   * @returns Once the state is loaded.
   * @throws {DeviceStateError} When an arc fails (`EINVAL` on `RESUMING` →
   *   `STOP`: the driver rejected the stream).
   * @throws {SyscallError} When writing the data fd fails.
   * @throws {VfioStateError} When unsupported, closed, or in ERROR.
   */
  loadState(bytes: Uint8Array, options: LoadStateOptions = {}): Promise<void> {
    try {
      this.#toStop("load the state");
      const data = this.setState(VFIO_DEVICE_STATE_RESUMING, { recover: VFIO_DEVICE_STATE_STOP });
      const failures: unknown[] = [];
      if (data === undefined) {
        failures.push(
          new VfioStateError(`Cannot load the state of ${this.id}: RESUMING gave no data fd`),
        );
      } else {
        try {
          data.writeAll(bytes);
        } catch (e) {
          failures.push(e);
        }
        try {
          data.close();
        } catch (e) {
          failures.push(e);
        }
      }
      if (failures.length > 0) {
        try {
          // RESUMING -> STOP checks the partial stream and fails: then a reset.
          this.setState(VFIO_DEVICE_STATE_RUNNING, { recover: VFIO_DEVICE_STATE_ERROR });
        } catch {
          // Keep the first failure; the device was reset if it could not run.
        }
        throw failures[0];
      }
      this.setState(VFIO_DEVICE_STATE_STOP, { recover: VFIO_DEVICE_STATE_ERROR });
      if (options.run ?? true) {
        this.setState(VFIO_DEVICE_STATE_RUNNING, { recover: VFIO_DEVICE_STATE_ERROR });
      }
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }
}
