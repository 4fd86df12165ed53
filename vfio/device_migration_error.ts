/**
 * Device state names and the error of a failed migration state change.
 *
 * @module
 */

import { errnoName } from "../sys/errno.ts";

const STATE_NAMES = [
  "ERROR",
  "STOP",
  "RUNNING",
  "STOP_COPY",
  "RESUMING",
  "RUNNING_P2P",
  "PRE_COPY",
  "PRE_COPY_P2P",
] as const;

/**
 * Names a `VFIO_DEVICE_STATE_*` value as `linux/vfio.h` spells it.
 *
 * @param state The device state.
 * @returns The name, such as `"STOP_COPY"`, or `"state 9"` for an unknown value.
 *
 * @example Name a state
 * ```ts
 * import { deviceStateName } from "./device_migration_error.ts";
 * console.log(deviceStateName(3)); // "STOP_COPY"
 * ```
 */
export function deviceStateName(state: number): string {
  return STATE_NAMES[state] ?? `state ${state}`;
}

/** The facts a {@linkcode DeviceStateError} carries. */
export interface DeviceStateFailure {
  /** The device name, such as `"0000:00:03.0"`. */
  readonly device: string;
  /** The state the device was in (`VFIO_DEVICE_STATE_*`). */
  readonly from: number;
  /** The state asked for. */
  readonly to: number;
  /** The errno of the failed `VFIO_DEVICE_FEATURE`. */
  readonly errno: number;
  /**
   * The state the device is in now, after any recovery: the recover state,
   * `RUNNING` after a reset, else what the kernel reports (`ERROR` when even
   * that cannot be read).
   */
  readonly state: number;
  /** Whether `VFIO_DEVICE_RESET` was issued and succeeded. */
  readonly reset: boolean;
}

/**
 * A `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` arc failed. The message names the
 * arc; `cause` is the kernel's `IoctlError`, and {@linkcode DeviceStateError.state}
 * says where recovery left the device.
 *
 * @example The message names the device and the arc
 * ```ts
 * import { DeviceStateError } from "./device_migration_error.ts";
 * const e = new DeviceStateError({
 *   device: "0000:00:03.0", from: 2, to: 3, errno: 5, state: 2, reset: false,
 * });
 * console.log(e.message); // "Cannot move 0000:00:03.0 from RUNNING to STOP_COPY: EIO (now RUNNING)"
 * ```
 */
export class DeviceStateError extends Error implements DeviceStateFailure {
  /** The device name. */
  readonly device: string;
  /** The state the device was in. */
  readonly from: number;
  /** The state asked for. */
  readonly to: number;
  /** The errno of the failed arc. */
  readonly errno: number;
  /** The state the device is in now. */
  readonly state: number;
  /** Whether the device was reset. */
  readonly reset: boolean;

  /**
   * Creates the error.
   *
   * @param failure The device, the arc, the errno and the outcome.
   * @param options The kernel's error as `cause`.
   */
  constructor(failure: DeviceStateFailure, options: { cause?: unknown } = {}) {
    const now = failure.reset
      ? `device reset, now ${deviceStateName(failure.state)}`
      : `now ${deviceStateName(failure.state)}`;
    super(
      `Cannot move ${failure.device} from ${deviceStateName(failure.from)} to ${
        deviceStateName(failure.to)
      }: ${errnoName(failure.errno)} (${now})`,
      options,
    );
    this.name = "DeviceStateError";
    this.device = failure.device;
    this.from = failure.from;
    this.to = failure.to;
    this.errno = failure.errno;
    this.state = failure.state;
    this.reset = failure.reset;
  }
}
