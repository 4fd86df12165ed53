/**
 * Kernel names of the ioctls each fake fd type implements, for fault
 * injection: a request is matched by the name the kernel gives its number on
 * that fd type, as well as by the name the caller passed.
 *
 * @module
 */

import type { IoctlRequest } from "../../sys/syscalls.ts";
import * as IOCTLS from "../../vfio/ioctls.ts";

const BY_KIND: Record<"container" | "group" | "device" | "data", readonly string[]> = {
  container: [
    "VFIO_GET_API_VERSION",
    "VFIO_CHECK_EXTENSION",
    "VFIO_SET_IOMMU",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_IOMMU_DIRTY_PAGES",
  ],
  group: [
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_GROUP_GET_DEVICE_FD",
  ],
  device: [
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_GET_REGION_INFO",
    "VFIO_DEVICE_GET_IRQ_INFO",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_RESET",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    "VFIO_DEVICE_PCI_HOT_RESET",
    "VFIO_DEVICE_FEATURE",
  ],
  data: ["VFIO_MIG_GET_PRECOPY_INFO"],
};

/**
 * The kernel name of an ioctl number on an fd type.
 *
 * @param kind The fd type (host and model files have no VFIO ioctls).
 * @param code The request number.
 * @returns The name, or undefined when the fd type has no such ioctl.
 */
export function kernelName(kind: string, code: number): string | undefined {
  const table = IOCTLS as unknown as Record<string, IoctlRequest>;
  const names = (BY_KIND as Record<string, readonly string[]>)[kind];
  return names?.find((name) => Number(table[name].code) === code);
}
