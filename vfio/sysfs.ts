/**
 * What sysfs says about IOMMU groups.
 *
 * Requires `--allow-ffi` (sysfs is read through libc).
 *
 * @module
 */

import { listDirectory, type ProcOptions } from "../sys/procfs.ts";

/**
 * Lists the devices of an IOMMU group (`/sys/kernel/iommu_groups/N/devices`).
 *
 * @param group The group number.
 * @param options `syscalls` for the sysfs read (default libc).
 * @returns The device names (PCI addresses), sorted.
 * @throws {SyscallError} `ENOENT` when the group does not exist.
 *
 * @example
 * ```ts ignore
 * import { iommuGroupDevices } from "./sysfs.ts";
 * console.log(iommuGroupDevices(26)); // ["0000:00:03.0"]
 * ```
 */
export function iommuGroupDevices(group: number, options: ProcOptions = {}): string[] {
  return listDirectory(`/sys/kernel/iommu_groups/${group}/devices`, options);
}
