/**
 * iommufd constants, spelled as in `linux/iommufd.h` (6.12).
 *
 * @module
 */

/** `IOMMU_IOAS_MAP`: map at the given IOVA instead of letting the kernel pick one. */
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
/** `IOMMU_IOAS_MAP`: the device may write. */
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
/** `IOMMU_IOAS_MAP`: the device may read. */
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;
/** `IOMMU_HWPT_ALLOC`: the HWPT can be a nesting parent. */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
/** `IOMMU_HWPT_ALLOC`: the HWPT must support dirty tracking. */
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
/** `IOMMU_HWPT_ALLOC`: `fault_id` is valid. */
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
/** `IOMMU_HWPT_ALLOC` data type: none (a plain paging domain). */
export const IOMMU_HWPT_DATA_NONE = 0;
/** `IOMMU_GET_HW_INFO` capability: the IOMMU can track dirty pages. */
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
/** `IOMMU_GET_HW_INFO` data type: none. */
export const IOMMU_HW_INFO_TYPE_NONE = 0;
/** `IOMMU_GET_HW_INFO` data type: Intel VT-d (`struct iommu_hw_info_vtd`). */
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
/** `IOMMU_GET_HW_INFO` data type of the kernel's selftest mock (`iommufd_test.h`). */
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
/** `IOMMU_HWPT_SET_DIRTY_TRACKING`: enable (absent: disable). */
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
/** `IOMMU_HWPT_GET_DIRTY_BITMAP`: read the dirty bits without clearing them (before an unmap). */
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;
/** The iommufd device node. */
export const IOMMUFD_PATH = "/dev/iommu";
