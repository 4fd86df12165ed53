/**
 * The Linux VFIO container, group and device, driven through the syscall
 * boundary: `VFIO_IOMMU_GET_INFO` and its capability chain, DMA map and unmap,
 * and device-side dirty tracking (`VFIO_IOMMU_DIRTY_PAGES`, unmap with a dirty
 * bitmap).
 *
 * Requires `--allow-ffi` and access to `/dev/vfio` for the real kernel; pass a
 * `FakeKernel` (from `tests/fake_kernel.ts`) as `syscalls` to run without one.
 *
 * @example Read the IOMMU info of a group's container
 * ```ts ignore
 * import { VfioContainer } from "./mod.ts";
 * using container = VfioContainer.open();
 * using group = container.attachGroup(26);
 * console.log(container.info().migration);
 * ```
 *
 * @module
 */

export * from "./constants.ts";
export * from "./container.ts";
export * from "./device.ts";
export * from "./region_mapping.ts";
export * from "./device_migration.ts";
export * from "./dirty_page_tracker.ts";
export * from "./dma_mapping.ts";
export * from "./errors.ts";
export * from "./group.ts";
export * from "./ioctls.ts";
export * from "./iova_check.ts";
export * from "./uapi/cap_chain.ts";
export * from "./uapi/device_feature.ts";
export * from "./uapi/device_info.ts";
export * from "./uapi/dirty_pages.ts";
export * from "./uapi/dma.ts";
export * from "./uapi/group_status.ts";
export * from "./uapi/iommu_info.ts";
export { type HostAddress, hostAddress, type Iova, iova } from "../sys/address.ts";
export { IoctlError, SyscallError } from "../sys/errors.ts";
export type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";
