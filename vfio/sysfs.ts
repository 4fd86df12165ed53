/**
 * What sysfs says about IOMMU groups.
 *
 * Requires `--allow-read` on `/sys`.
 *
 * @module
 */

/**
 * Lists the devices of an IOMMU group (`/sys/kernel/iommu_groups/N/devices`).
 *
 * @param group The group number.
 * @returns The device names (PCI addresses), sorted.
 * @throws {Deno.errors.NotFound} When the group does not exist.
 *
 * @example
 * ```ts ignore
 * import { iommuGroupDevices } from "./sysfs.ts";
 * console.log(iommuGroupDevices(26)); // ["0000:00:03.0"]
 * ```
 */
export function iommuGroupDevices(group: number): string[] {
  return [...Deno.readDirSync(`/sys/kernel/iommu_groups/${group}/devices`)]
    .map((e) => e.name)
    .sort();
}
