/**
 * The Linux VFIO container, group and device as safe objects, through the
 * syscall boundary: `VFIO_IOMMU_GET_INFO` and its capability chain, DMA map
 * and unmap, device-side dirty tracking (`VFIO_IOMMU_DIRTY_PAGES`, unmap with
 * a dirty bitmap), the migration v2 state machine, and iommufd with VFIO
 * cdev devices. Each object owns its fd, closes idempotently, and tears down
 * in the kernel's order under `using`.
 *
 * iommufd (Linux 6.12's uapi): `/dev/iommu`, I/O address spaces with
 * fixed-IOVA mappings, `IOMMU_GET_HW_INFO`, hardware page tables with dirty
 * tracking, a precise device dirty tracker over them, and VFIO devices
 * opened through `/dev/vfio/devices/vfioN` and bound to iommufd. Where the
 * IOMMU cannot track dirty pages (every emulated IOMMU),
 * `Iommufd.allocHwpt({ dirtyTracking: true })` throws
 * {@linkcode DirtyTrackingUnavailableError}, the error the migration engine
 * falls back on.
 *
 * The raw ioctl requests, constants and struct codecs are in `./vfio/uapi`.
 *
 * Requires `--allow-ffi` and access to `/dev/vfio` (and `/dev/iommu`) for the
 * real kernel; pass a `FakeKernel` (from `./testing`) as `syscalls` to run
 * without one.
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

export {
  type UnmapResult,
  VFIO_CONTAINER_PATH,
  VfioContainer,
  type VfioOptions,
} from "./container.ts";
export { type GroupStatus, VfioGroup } from "./group.ts";
export { VfioDevice } from "./device.ts";
export { RegionMapping } from "./region_mapping.ts";
export { DmaMapping } from "./dma_mapping.ts";
export {
  dirtyBitmapBytes,
  type DirtyBitmapReport,
  DirtyPageTracker,
  type DirtyTrackerOptions,
} from "./dirty_page_tracker.ts";
export {
  DeviceStateError,
  type DeviceStateFailure,
  deviceStateName,
  type LoadStateOptions,
  type MigrationDataChunk,
  MigrationDataFd,
  type PrecopyInfo,
  type SetStateOptions,
  VfioDeviceMigration,
} from "./device_migration.ts";
export {
  VFIO_DEVICE_STATE_ERROR,
  VFIO_DEVICE_STATE_PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P,
  VFIO_DEVICE_STATE_RESUMING,
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "./constants.ts";
export { DirtyTrackingUnavailableError, VfioStateError } from "./errors.ts";
export { iommuGroupDevices } from "./sysfs.ts";
export type { RawCap } from "./uapi/cap_chain.ts";
export type { DeviceInfo, IrqInfo, RegionInfo } from "./uapi/device_info.ts";
export type { IommuInfo, IovaRange, MigrationCap, UnknownCap } from "./uapi/iommu_info.ts";
export type { HwInfoVtd } from "./iommufd/uapi/hwpt.ts";
// iommufd and VFIO cdev devices.
export {
  type HwptAllocOptions,
  Iommufd,
  type IommufdOptions,
  type IommuHwInfo,
} from "./iommufd/iommufd.ts";
export { IommufdIoas } from "./iommufd/ioas.ts";
export {
  HwPagetable,
  type IommufdDirtyReport,
  type ReadDirtyOptions,
} from "./iommufd/hw_pagetable.ts";
export {
  IommufdDirtyTracker,
  type IommufdDirtyTrackerOptions,
  type IommufdHarvest,
  type PageBitmap,
} from "./iommufd/dirty_tracker.ts";
export { VfioCdevDevice, vfioCdevPath } from "./iommufd/cdev_device.ts";
// The boundary these objects take and the errors they throw.
export {
  type GuestAddress,
  guestAddress,
  type HostAddress,
  hostAddress,
  type Iova,
  iova,
} from "../sys/address.ts";
export type { DirtyScope } from "../sys/dirty_scope.ts";
export { IoctlError, ResourceBusyError, SyscallError } from "../sys/errors.ts";
export { LibcSyscalls } from "../sys/libc.ts";
export type { IoctlRequest, ProcSyscalls, Syscalls, VfioSyscalls } from "../sys/syscalls.ts";
export type { ProcOptions } from "../sys/procfs.ts";
