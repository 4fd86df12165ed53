/**
 * iommufd and VFIO cdev ioctl request numbers (`linux/iommufd.h`, the cdev
 * part of `linux/vfio.h`, 6.12). iommufd uses `_IO(IOMMUFD_TYPE, nr)` with
 * `IOMMUFD_TYPE = ';'`, like VFIO, from `IOMMUFD_CMD_BASE = 0x80`; every
 * request carries its name because the numbers repeat across fd types.
 *
 * @module
 */

import type { IoctlRequest } from "../../sys/syscalls.ts";
import { vfioIo } from "../ioctls.ts";

/** `IOMMUFD_TYPE`, the ioctl type byte `';'`. */
export const IOMMUFD_TYPE = 0x3b;
/** `IOMMUFD_CMD_BASE`, the first iommufd command number. */
export const IOMMUFD_CMD_BASE = 0x80;

/**
 * Builds an iommufd request `_IO(IOMMUFD_TYPE, nr)` (x86_64: `_IOC_NONE` is 0).
 *
 * @param name The name in `linux/iommufd.h`.
 * @param nr The command number, such as `IOMMUFD_CMD_IOAS_ALLOC` (0x81).
 * @returns The request.
 *
 * @example
 * ```ts
 * import { iommufdIo } from "./ioctls.ts";
 * console.log(iommufdIo("IOMMU_IOAS_ALLOC", 0x81).code); // 15233n
 * ```
 */
export function iommufdIo(name: string, nr: number): IoctlRequest {
  return Object.freeze({ name, code: BigInt((IOMMUFD_TYPE << 8) | nr) });
}

/** iommufd: `IOMMU_DESTROY` (`IOMMUFD_CMD_DESTROY`). */
export const IOMMU_DESTROY: IoctlRequest = iommufdIo("IOMMU_DESTROY", 0x80);
/** iommufd: `IOMMU_IOAS_ALLOC`. */
export const IOMMU_IOAS_ALLOC: IoctlRequest = iommufdIo("IOMMU_IOAS_ALLOC", 0x81);
/** iommufd: `IOMMU_IOAS_IOVA_RANGES`. */
export const IOMMU_IOAS_IOVA_RANGES: IoctlRequest = iommufdIo("IOMMU_IOAS_IOVA_RANGES", 0x84);
/** iommufd: `IOMMU_IOAS_MAP`. */
export const IOMMU_IOAS_MAP: IoctlRequest = iommufdIo("IOMMU_IOAS_MAP", 0x85);
/** iommufd: `IOMMU_IOAS_UNMAP`. */
export const IOMMU_IOAS_UNMAP: IoctlRequest = iommufdIo("IOMMU_IOAS_UNMAP", 0x86);
/** iommufd: `IOMMU_HWPT_ALLOC`. */
export const IOMMU_HWPT_ALLOC: IoctlRequest = iommufdIo("IOMMU_HWPT_ALLOC", 0x89);
/** iommufd: `IOMMU_GET_HW_INFO`. */
export const IOMMU_GET_HW_INFO: IoctlRequest = iommufdIo("IOMMU_GET_HW_INFO", 0x8a);
/** iommufd: `IOMMU_HWPT_SET_DIRTY_TRACKING`. */
export const IOMMU_HWPT_SET_DIRTY_TRACKING: IoctlRequest = iommufdIo(
  "IOMMU_HWPT_SET_DIRTY_TRACKING",
  0x8b,
);
/** iommufd: `IOMMU_HWPT_GET_DIRTY_BITMAP`. */
export const IOMMU_HWPT_GET_DIRTY_BITMAP: IoctlRequest = iommufdIo(
  "IOMMU_HWPT_GET_DIRTY_BITMAP",
  0x8c,
);
/** VFIO cdev device: `VFIO_DEVICE_BIND_IOMMUFD` (`VFIO_BASE + 18`). */
export const VFIO_DEVICE_BIND_IOMMUFD: IoctlRequest = vfioIo("VFIO_DEVICE_BIND_IOMMUFD", 18);
/** VFIO cdev device: `VFIO_DEVICE_ATTACH_IOMMUFD_PT` (`VFIO_BASE + 19`). */
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT: IoctlRequest = vfioIo(
  "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
  19,
);
/** VFIO cdev device: `VFIO_DEVICE_DETACH_IOMMUFD_PT` (`VFIO_BASE + 20`). */
export const VFIO_DEVICE_DETACH_IOMMUFD_PT: IoctlRequest = vfioIo(
  "VFIO_DEVICE_DETACH_IOMMUFD_PT",
  20,
);
