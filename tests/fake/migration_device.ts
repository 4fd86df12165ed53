/**
 * `FakeMigrationDevice`: a VFIO migration v2 driver for the fake kernel, the
 * `mig_ops` a vfio-pci variant driver (mlx5, hisi_acc, pds) plugs in. Pass it
 * as a device's `features` option.
 *
 * It follows drivers/vfio/vfio_main.c (`vfio_ioctl_device_feature_*`,
 * `vfio_check_feature`, `vfio_ioct_mig_return_fd`) and the FSM documented in
 * linux/vfio.h: a `SET` walks `vfio_mig_get_next_state()` one arc at a time,
 * and on a failed arc the device stays where it got to, or in ERROR, which
 * only `VFIO_DEVICE_RESET` leaves.
 *
 * @module
 */

import { EINVAL, EIO, ENOTTY } from "../../sys/errno.ts";
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_STATE_ERROR as ERROR,
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "../../vfio/constants.ts";
import { decodeMigState, encodeMigState } from "../../vfio/uapi/device_feature.ts";
import type { DeviceFeatureHandler, FeatureContext } from "./device.ts";
import type { FakeDataFile } from "./fds.ts";
import { nextState } from "./migration_fsm.ts";
import { RECORD_HEADER_SIZE, ResumeFile, SaveFile } from "./migration_stream.ts";
import { fail, u64Bytes, type UserArg } from "./user_memory.ts";

/** Options of {@linkcode FakeMigrationDevice}. */
export interface FakeMigrationDeviceOptions {
  /**
   * `VFIO_MIGRATION_*` flags the driver offers (default `STOP_COPY`);
   * `STOP_COPY` is required, as `vfio_register_*` requires it.
   */
  readonly flags?: number;
  /** The device's internal state, streamed by a save and replaced by a load (default empty). */
  readonly state?: Uint8Array;
  /**
   * Whether `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` exists (default true: Linux
   * 6.2+; false models 6.1, where vfio-pci answers `ENOTTY`).
   */
  readonly dataSize?: boolean;
  /**
   * What a read of a drained `PRE_COPY` stream answers: `ENOMSG` (default,
   * as mlx5 and the UAPI's "temporary end of stream") or `zero` (0, as the
   * mtty sample driver does).
   */
  readonly drained?: "ENOMSG" | "zero";
}

/** Options of {@linkcode FakeMigrationDevice.failArc}. */
export interface FailArcOptions {
  /** The errno the arc returns (default `EIO`). */
  readonly errno?: number;
  /**
   * Where the device is left: `"error"` (default, the ERROR state, which only
   * `VFIO_DEVICE_RESET` leaves) or `"from"` (the arc's start state, as a
   * driver that backs out cleanly does).
   */
  readonly leave?: "error" | "from";
}

const PROBE = VFIO_DEVICE_FEATURE_PROBE;
const GET = VFIO_DEVICE_FEATURE_GET;
const SET = VFIO_DEVICE_FEATURE_SET;

// vfio_check_feature: 0 answers a PROBE, 1 means go on.
function checkFeature(flags: number, argsz: number, ops: number, minsz: number): 0 | 1 {
  if ((flags & (GET | SET) & ~ops) !== 0) fail(EINVAL);
  if (flags & PROBE) return 0;
  if ((flags & (GET | SET)) === 0) fail(EINVAL);
  if (argsz < minsz) fail(EINVAL);
  return 1;
}

/**
 * A fake migration v2 driver for one device. Its state starts `RUNNING` when
 * the device opens, and the stream it saves holds its `state` bytes, so a
 * save on one device and a load on another leave the second with the same
 * bytes.
 *
 * @example Save a device's state through the fake kernel
 * ```ts ignore
 * import { FakeKernel, FakeMigrationDevice } from "../fake_kernel.ts";
 * import { VFIO_MIGRATION_STOP_COPY } from "../../vfio/constants.ts";
 * const mig = new FakeMigrationDevice({ flags: VFIO_MIGRATION_STOP_COPY, state: new Uint8Array([1, 2]) });
 * const kernel = new FakeKernel({ groups: [{ id: 26, devices: [{ name: "0000:00:03.0", features: mig }] }] });
 * ```
 */
export class FakeMigrationDevice implements DeviceFeatureHandler {
  /** The `VFIO_MIGRATION_*` flags offered. */
  readonly flags: number;
  #dataSize: boolean;
  #drained: "ENOMSG" | "zero";
  #state: Uint8Array;
  #version = 0;
  #mig = RUNNING;
  #save: SaveFile | null = null;
  #resume: ResumeFile | null = null;
  #failures: { from: number; to: number; errno: number; leave: "error" | "from" }[] = [];
  #arcs: [number, number][] = [];

  /**
   * Creates the driver.
   *
   * @param options Flags, state bytes, and whether `MIG_DATA_SIZE` exists.
   * @throws {TypeError} When the flags lack `VFIO_MIGRATION_STOP_COPY` or have unknown bits.
   */
  constructor(options: FakeMigrationDeviceOptions = {}) {
    const flags = options.flags ?? VFIO_MIGRATION_STOP_COPY;
    const known = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
    if ((flags & VFIO_MIGRATION_STOP_COPY) === 0 || (flags & ~known) !== 0) {
      throw new TypeError(`Cannot create a migration driver with flags 0x${flags.toString(16)}`);
    }
    this.flags = flags;
    this.#dataSize = options.dataSize ?? true;
    this.#drained = options.drained ?? "ENOMSG";
    this.#state = (options.state ?? new Uint8Array(0)).slice();
  }

  /** The migration state (`VFIO_DEVICE_STATE_*`). */
  get deviceState(): number {
    return this.#mig;
  }

  /** A copy of the device's internal state. */
  get state(): Uint8Array {
    return this.#state.slice();
  }

  /** The arcs taken, oldest first, as `[from, to]` pairs of `VFIO_DEVICE_STATE_*`. */
  get arcs(): readonly (readonly [number, number])[] {
    return this.#arcs;
  }

  /**
   * Changes the internal state, as the running device itself would; during
   * `PRE_COPY` this makes the new state dirty.
   *
   * @param bytes The new state.
   */
  writeState(bytes: Uint8Array): void {
    this.#state = bytes.slice();
    this.#version++;
  }

  /**
   * Makes the next arc `from` → `to` fail (one arc of the kernel's path, not
   * a whole `SET`).
   *
   * @param from The arc's start state.
   * @param to The arc's end state.
   * @param options The errno and where the device is left.
   * @returns This driver, for chaining.
   */
  failArc(from: number, to: number, options: FailArcOptions = {}): this {
    this.#failures.push({ from, to, errno: options.errno ?? EIO, leave: options.leave ?? "error" });
    return this;
  }

  /**
   * `VFIO_DEVICE_FEATURE` for the migration features; `ENOTTY` for the rest
   * (no `log_ops`, nothing else in vfio-pci's `device_feature`).
   *
   * @param device The device.
   * @param flags Feature number and GET/SET/PROBE.
   * @param arg The user argument (payload at offset 8).
   * @param argsz `argsz - 8`.
   * @param context Installs the data fd of a new session.
   * @returns 0.
   * @throws {KernelError} The errno.
   */
  feature(
    device: { readonly name: string },
    flags: number,
    arg: UserArg,
    argsz: number,
    context: FeatureContext,
  ): number {
    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
      case VFIO_DEVICE_FEATURE_MIGRATION:
        if (checkFeature(flags, argsz, GET, 8) === 0) return 0;
        arg.write(8, u64Bytes(BigInt(this.flags)));
        return 0;
      case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: {
        if (checkFeature(flags, argsz, GET | SET, 8) === 0) return 0;
        const mig = decodeMigState(arg.read(8, 8));
        if (flags & GET) {
          arg.write(8, encodeMigState(this.#mig, -1));
          return 0;
        }
        return this.#set(device.name, mig.deviceState, arg, context);
      }
      case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
        if (!this.#dataSize) fail(ENOTTY);
        if (checkFeature(flags, argsz, GET, 8) === 0) return 0;
        arg.write(8, u64Bytes(BigInt(RECORD_HEADER_SIZE + this.#state.byteLength)));
        return 0;
      default:
        return fail(ENOTTY);
    }
  }

  /** `open_device` / `VFIO_DEVICE_RESET`: back to RUNNING, sessions ended. */
  reset(): void {
    this.#endSessions();
    this.#mig = RUNNING;
  }

  /** `close_device`: sessions ended. */
  release(): void {
    this.#endSessions();
    this.#mig = RUNNING;
  }

  #endSessions(): void {
    this.#save?.disable();
    this.#resume?.disable();
    this.#save = this.#resume = null;
  }

  // vfio_ioctl_device_feature_mig_device_state (SET) around the driver's
  // set_state loop (as mlx5vf_pci_set_device_state).
  #set(name: string, target: number, arg: UserArg, context: FeatureContext): number {
    let file: FakeDataFile | null = null;
    try {
      while (this.#mig !== target) {
        const next = nextState(this.#mig, target, this.flags);
        file = this.#step(name, next);
        if (file !== null && next !== target) {
          file.release(); // WARN_ON: only the last arc may open a file
          fail(EINVAL);
        }
      }
    } catch (e) {
      arg.write(8, encodeMigState(target, -1)); // out_copy: data_fd = -1
      throw e;
    }
    arg.write(8, encodeMigState(target, -1));
    if (file !== null) arg.write(8, encodeMigState(target, context.installDataFd(file)));
    return 0;
  }

  // One arc of the FSM; returns the file of a new session.
  #step(name: string, next: number): FakeDataFile | null {
    const cur = this.#mig;
    const i = this.#failures.findIndex((f) => f.from === cur && f.to === next);
    if (i >= 0) {
      const [f] = this.#failures.splice(i, 1);
      if (f.leave === "error") {
        this.#endSessions();
        this.#mig = ERROR;
      }
      fail(f.errno);
    }
    let file: FakeDataFile | null = null;
    const source = {
      deviceState: () => this.#mig,
      version: () => this.#version,
      snapshot: () => this.#state.slice(),
    };
    if (cur === STOP && next === STOP_COPY) {
      file = this.#save = new SaveFile(`${name} save`, source, { stopCopy: true });
    } else if (next === PRE_COPY || next === PRE_COPY_P2P) {
      // RUNNING -> PRE_COPY and RUNNING_P2P -> PRE_COPY_P2P start a session;
      // PRE_COPY <-> PRE_COPY_P2P keep it.
      if (cur === RUNNING || cur === RUNNING_P2P) {
        file = this.#save = new SaveFile(`${name} save`, source, {
          stopCopy: false,
          drained: this.#drained,
        });
      }
    } else if (next === STOP_COPY) {
      this.#save!.enterStopCopy(); // from PRE_COPY(_P2P): the same session goes on
    } else if (cur === STOP_COPY || cur === PRE_COPY || cur === PRE_COPY_P2P) {
      this.#save?.disable(); // leaving the saving group ends the session
      this.#save = null;
    } else if (cur === STOP && next === RESUMING) {
      file = this.#resume = new ResumeFile(`${name} resume`);
    } else if (cur === RESUMING) {
      // EINVAL leaves the device in RESUMING; an empty stream loads nothing.
      const loaded = this.#resume!.finish();
      if (loaded !== null) {
        this.#state = loaded;
        this.#version++;
      }
      this.#resume!.disable();
      this.#resume = null;
    }
    this.#mig = next;
    this.#arcs.push([cur, next]);
    return file;
  }
}
