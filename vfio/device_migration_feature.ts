/**
 * The raw `VFIO_DEVICE_FEATURE` calls of migration v2 on a device fd:
 * `MIGRATION` (probe and flags), `MIG_DEVICE_STATE` (get and set) and
 * `MIG_DATA_SIZE`. `VfioDeviceMigration` is built on these; they are not
 * re-exported from `vfio/mod.ts`.
 *
 * @module
 */

import { ENOTTY } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from "./constants.ts";
import { VFIO_DEVICE_FEATURE } from "./ioctls.ts";
import {
  decodeMigState,
  decodeU64Payload,
  DEVICE_FEATURE_SIZE,
  encodeDeviceFeature,
  encodeMigState,
} from "./uapi/device_feature.ts";

// Issues one VFIO_DEVICE_FEATURE; returns the payload as the kernel left it.
function feature(sys: Syscalls, fd: number, flags: number, payload: Uint8Array): Uint8Array {
  const buf = encodeDeviceFeature(flags, payload);
  sys.ioctl(fd, VFIO_DEVICE_FEATURE, buf);
  return buf.subarray(DEVICE_FEATURE_SIZE);
}

/**
 * Probes `VFIO_DEVICE_FEATURE_MIGRATION` (`PROBE|GET`), then reads its flags.
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @returns The `VFIO_MIGRATION_*` flags, or undefined when the driver has no
 *   migration support (`ENOTTY`).
 * @throws {IoctlError} When the kernel refuses otherwise.
 */
export function readMigrationFlags(sys: Syscalls, fd: number): number | undefined {
  try {
    feature(
      sys,
      fd,
      VFIO_DEVICE_FEATURE_MIGRATION | VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET,
      new Uint8Array(8),
    );
  } catch (e) {
    if (e instanceof IoctlError && e.errno === ENOTTY) return undefined;
    throw e;
  }
  const payload = feature(
    sys,
    fd,
    VFIO_DEVICE_FEATURE_MIGRATION | VFIO_DEVICE_FEATURE_GET,
    new Uint8Array(8),
  );
  return Number(decodeU64Payload(payload));
}

/**
 * `GET` of `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`.
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @returns `VFIO_DEVICE_STATE_*`.
 * @throws {IoctlError} When the kernel refuses.
 */
export function getMigState(sys: Syscalls, fd: number): number {
  const flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
  return decodeMigState(feature(sys, fd, flags, encodeMigState(0))).deviceState;
}

/**
 * `SET` of `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`.
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @param options `state`: the target `VFIO_DEVICE_STATE_*`.
 * @returns The `data_fd` the arc opened, or -1.
 * @throws {IoctlError} When the kernel refuses.
 */
export function setMigState(sys: Syscalls, fd: number, options: { state: number }): number {
  const flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
  return decodeMigState(feature(sys, fd, flags, encodeMigState(options.state))).dataFd;
}

/**
 * `GET` of `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` (Linux 6.2+).
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @returns `stop_copy_length`, or undefined when the kernel has no such feature (`ENOTTY`).
 * @throws {IoctlError} When the kernel refuses otherwise.
 */
export function readStopCopySize(sys: Syscalls, fd: number): bigint | undefined {
  const flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE;
  try {
    return decodeU64Payload(feature(sys, fd, flags, new Uint8Array(8)));
  } catch (e) {
    if (e instanceof IoctlError && e.errno === ENOTTY) return undefined;
    throw e;
  }
}

/**
 * Probes `VFIO_DEVICE_FEATURE_DMA_LOGGING_START` (`PROBE|SET`): whether the
 * driver logs the device's DMA writes itself (`vfio_log_ops`).
 *
 * @param sys The syscall boundary.
 * @param fd The device fd.
 * @returns `true` when supported, `false` when the driver has no log ops (`ENOTTY`).
 * @throws {IoctlError} When the kernel refuses otherwise.
 */
export function probeDmaLogging(sys: Syscalls, fd: number): boolean {
  try {
    feature(
      sys,
      fd,
      VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET,
      new Uint8Array(0),
    );
    return true;
  } catch (e) {
    if (e instanceof IoctlError && e.errno === ENOTTY) return false;
    throw e;
  }
}
