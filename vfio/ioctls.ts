/**
 * VFIO and iommufd ioctl request numbers (`linux/vfio.h`, `linux/iommufd.h`).
 *
 * VFIO uses `_IO(';', 100 + n)` for everything; the numbers repeat across fd
 * types, so each request carries its name.
 *
 * @module
 */

import type { IoctlRequest } from "../sys/syscalls.ts";

/** `VFIO_TYPE`, the ioctl type byte `';'`. */
export const VFIO_TYPE = 0x3b;
/** `VFIO_BASE`, the first VFIO ioctl number. */
export const VFIO_BASE = 100;

/**
 * Builds a VFIO request `_IO(VFIO_TYPE, VFIO_BASE + nr)` (x86_64: `_IOC_NONE` is 0).
 *
 * @param name The name in `linux/vfio.h`.
 * @param nr The offset from `VFIO_BASE`.
 * @returns The request.
 *
 * @example
 * ```ts
 * import { vfioIo } from "./ioctls.ts";
 * console.log(vfioIo("VFIO_GET_API_VERSION", 0).code); // 15204n
 * ```
 */
export function vfioIo(name: string, nr: number): IoctlRequest {
  return Object.freeze({ name, code: BigInt((VFIO_TYPE << 8) | (VFIO_BASE + nr)) });
}

/** Container: `VFIO_GET_API_VERSION`. */
export const VFIO_GET_API_VERSION: IoctlRequest = vfioIo("VFIO_GET_API_VERSION", 0);
/** Container: `VFIO_CHECK_EXTENSION`. */
export const VFIO_CHECK_EXTENSION: IoctlRequest = vfioIo("VFIO_CHECK_EXTENSION", 1);
/** Container: `VFIO_SET_IOMMU`. */
export const VFIO_SET_IOMMU: IoctlRequest = vfioIo("VFIO_SET_IOMMU", 2);
/** Group: `VFIO_GROUP_GET_STATUS`. */
export const VFIO_GROUP_GET_STATUS: IoctlRequest = vfioIo("VFIO_GROUP_GET_STATUS", 3);
/** Group: `VFIO_GROUP_SET_CONTAINER`. */
export const VFIO_GROUP_SET_CONTAINER: IoctlRequest = vfioIo("VFIO_GROUP_SET_CONTAINER", 4);
/** Group: `VFIO_GROUP_UNSET_CONTAINER`. */
export const VFIO_GROUP_UNSET_CONTAINER: IoctlRequest = vfioIo("VFIO_GROUP_UNSET_CONTAINER", 5);
/** Group: `VFIO_GROUP_GET_DEVICE_FD`. */
export const VFIO_GROUP_GET_DEVICE_FD: IoctlRequest = vfioIo("VFIO_GROUP_GET_DEVICE_FD", 6);
/** Device: `VFIO_DEVICE_GET_INFO`. */
export const VFIO_DEVICE_GET_INFO: IoctlRequest = vfioIo("VFIO_DEVICE_GET_INFO", 7);
/** Device: `VFIO_DEVICE_GET_REGION_INFO`. */
export const VFIO_DEVICE_GET_REGION_INFO: IoctlRequest = vfioIo("VFIO_DEVICE_GET_REGION_INFO", 8);
/** Device: `VFIO_DEVICE_GET_IRQ_INFO`. */
export const VFIO_DEVICE_GET_IRQ_INFO: IoctlRequest = vfioIo("VFIO_DEVICE_GET_IRQ_INFO", 9);
/** Device: `VFIO_DEVICE_SET_IRQS`. */
export const VFIO_DEVICE_SET_IRQS: IoctlRequest = vfioIo("VFIO_DEVICE_SET_IRQS", 10);
/** Device: `VFIO_DEVICE_RESET`. */
export const VFIO_DEVICE_RESET: IoctlRequest = vfioIo("VFIO_DEVICE_RESET", 11);
/** Container: `VFIO_IOMMU_GET_INFO`. */
export const VFIO_IOMMU_GET_INFO: IoctlRequest = vfioIo("VFIO_IOMMU_GET_INFO", 12);
/** Device: `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` (same number as `VFIO_IOMMU_GET_INFO`). */
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: IoctlRequest = vfioIo(
  "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
  12,
);
/** Container: `VFIO_IOMMU_MAP_DMA`. */
export const VFIO_IOMMU_MAP_DMA: IoctlRequest = vfioIo("VFIO_IOMMU_MAP_DMA", 13);
/** Device: `VFIO_DEVICE_PCI_HOT_RESET` (same number as `VFIO_IOMMU_MAP_DMA`). */
export const VFIO_DEVICE_PCI_HOT_RESET: IoctlRequest = vfioIo("VFIO_DEVICE_PCI_HOT_RESET", 13);
/** Container: `VFIO_IOMMU_UNMAP_DMA`. */
export const VFIO_IOMMU_UNMAP_DMA: IoctlRequest = vfioIo("VFIO_IOMMU_UNMAP_DMA", 14);
/** Container: `VFIO_IOMMU_DIRTY_PAGES`. */
export const VFIO_IOMMU_DIRTY_PAGES: IoctlRequest = vfioIo("VFIO_IOMMU_DIRTY_PAGES", 17);
/** Device: `VFIO_DEVICE_FEATURE` (same number as `VFIO_IOMMU_DIRTY_PAGES`). */
export const VFIO_DEVICE_FEATURE: IoctlRequest = vfioIo("VFIO_DEVICE_FEATURE", 17);
/** Migration data fd: `VFIO_MIG_GET_PRECOPY_INFO`. */
export const VFIO_MIG_GET_PRECOPY_INFO: IoctlRequest = vfioIo("VFIO_MIG_GET_PRECOPY_INFO", 21);
