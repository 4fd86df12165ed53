/**
 * iommufd and VFIO cdev devices: `/dev/iommu`, I/O address spaces with
 * fixed-IOVA mappings, `IOMMU_GET_HW_INFO`, hardware page tables with dirty
 * tracking (`IOMMU_HWPT_ALLOC_DIRTY_TRACKING`, `IOMMU_HWPT_SET_DIRTY_TRACKING`,
 * `IOMMU_HWPT_GET_DIRTY_BITMAP`), a precise device dirty tracker over them,
 * and VFIO devices opened through `/dev/vfio/devices/vfioN` and bound to
 * iommufd. The uapi is Linux 6.12's.
 *
 * Requires `--allow-ffi` and read-write access to `/dev/iommu` and the VFIO
 * cdev (a kernel with `CONFIG_IOMMUFD` and `CONFIG_VFIO_DEVICE_CDEV`).
 * Where the IOMMU cannot track dirty pages (every emulated IOMMU),
 * `Iommufd.allocHwpt({ dirtyTracking: true })` throws
 * `DirtyTrackingUnavailableError`, the error the migration engine already
 * falls back on.
 *
 * @example Bind a device through its cdev and ask for dirty tracking
 * ```ts ignore
 * import { Iommufd, VfioCdevDevice, vfioCdevPath } from "./mod.ts";
 * using iommufd = Iommufd.open();
 * using ioas = iommufd.allocIoas();
 * using device = VfioCdevDevice.open(vfioCdevPath("0000:00:02.0"));
 * const devId = device.bind(iommufd);
 * console.log(iommufd.hwInfo(devId).dirtyTracking);
 * using hwpt = iommufd.allocHwpt({ devId, ioas, dirtyTracking: true });
 * device.attach(hwpt);
 * ```
 *
 * @module
 */

export * from "./cdev_device.ts";
export * from "./constants.ts";
export * from "./dirty_tracker.ts";
export * from "./hw_pagetable.ts";
export * from "./ioas.ts";
export * from "./iommufd.ts";
export * from "./ioctls.ts";
export * from "./uapi/hwpt.ts";
export * from "./uapi/ioas.ts";
export * from "./uapi/vfio_cdev.ts";
export { DirtyTrackingUnavailableError, VfioStateError } from "../errors.ts";
export { DmaMapping } from "../dma_mapping.ts";
export { VfioDevice } from "../device.ts";
export { RegionMapping } from "../region_mapping.ts";
export type { DeviceInfo, IrqInfo, RegionInfo } from "../uapi/device_info.ts";
export type { RawCap } from "../uapi/cap_chain.ts";
export { type HostAddress, hostAddress, type Iova, iova } from "../../sys/address.ts";
export { IoctlError, SyscallError } from "../../sys/errors.ts";
export type { IoctlRequest, Syscalls } from "../../sys/syscalls.ts";
