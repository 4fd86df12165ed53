// The literal uapi facts of linux/iommufd.h and the cdev part of
// linux/vfio.h (Linux 6.12, x86_64) that the codecs encode: struct sizes,
// field offsets and ioctl numbers. Pinned by layout_test.ts against the
// codecs, and by tests/kernel/iommufd/uapi_layout_test.ts against the 6.12
// source tree's headers compiled with cc.

/** `"sizeof S"`, `"offsetof S.f"` and `"ioctl NAME"` facts. */
export const IOMMUFD_LAYOUT: Readonly<Record<string, number>> = Object.freeze({
  "sizeof iommu_destroy": 8,
  "offsetof iommu_destroy.id": 4,
  "sizeof iommu_ioas_alloc": 12,
  "offsetof iommu_ioas_alloc.out_ioas_id": 8,
  "sizeof iommu_ioas_map": 40,
  "offsetof iommu_ioas_map.flags": 4,
  "offsetof iommu_ioas_map.ioas_id": 8,
  "offsetof iommu_ioas_map.user_va": 16,
  "offsetof iommu_ioas_map.length": 24,
  "offsetof iommu_ioas_map.iova": 32,
  "sizeof iommu_ioas_unmap": 24,
  "offsetof iommu_ioas_unmap.ioas_id": 4,
  "offsetof iommu_ioas_unmap.iova": 8,
  "offsetof iommu_ioas_unmap.length": 16,
  "sizeof iommu_hw_info": 40,
  "offsetof iommu_hw_info.dev_id": 8,
  "offsetof iommu_hw_info.data_len": 12,
  "offsetof iommu_hw_info.data_uptr": 16,
  "offsetof iommu_hw_info.out_data_type": 24,
  "offsetof iommu_hw_info.out_max_pasid_log2": 28,
  "offsetof iommu_hw_info.out_capabilities": 32,
  "sizeof iommu_hw_info_vtd": 24,
  "offsetof iommu_hw_info_vtd.cap_reg": 8,
  "offsetof iommu_hw_info_vtd.ecap_reg": 16,
  "sizeof iommu_hwpt_alloc": 48,
  "offsetof iommu_hwpt_alloc.flags": 4,
  "offsetof iommu_hwpt_alloc.dev_id": 8,
  "offsetof iommu_hwpt_alloc.pt_id": 12,
  "offsetof iommu_hwpt_alloc.out_hwpt_id": 16,
  "offsetof iommu_hwpt_alloc.data_type": 24,
  "offsetof iommu_hwpt_alloc.data_len": 28,
  "offsetof iommu_hwpt_alloc.data_uptr": 32,
  "offsetof iommu_hwpt_alloc.fault_id": 40,
  "sizeof iommu_hwpt_set_dirty_tracking": 16,
  "offsetof iommu_hwpt_set_dirty_tracking.flags": 4,
  "offsetof iommu_hwpt_set_dirty_tracking.hwpt_id": 8,
  "sizeof iommu_hwpt_get_dirty_bitmap": 48,
  "offsetof iommu_hwpt_get_dirty_bitmap.hwpt_id": 4,
  "offsetof iommu_hwpt_get_dirty_bitmap.flags": 8,
  "offsetof iommu_hwpt_get_dirty_bitmap.iova": 16,
  "offsetof iommu_hwpt_get_dirty_bitmap.length": 24,
  "offsetof iommu_hwpt_get_dirty_bitmap.page_size": 32,
  "offsetof iommu_hwpt_get_dirty_bitmap.data": 40,
  "sizeof vfio_device_bind_iommufd": 16,
  "offsetof vfio_device_bind_iommufd.iommufd": 8,
  "offsetof vfio_device_bind_iommufd.out_devid": 12,
  "sizeof vfio_device_attach_iommufd_pt": 12,
  "offsetof vfio_device_attach_iommufd_pt.pt_id": 8,
  "sizeof vfio_device_detach_iommufd_pt": 8,
  "ioctl IOMMU_DESTROY": 0x3b80,
  "ioctl IOMMU_IOAS_ALLOC": 0x3b81,
  "ioctl IOMMU_IOAS_IOVA_RANGES": 0x3b84,
  "ioctl IOMMU_IOAS_MAP": 0x3b85,
  "ioctl IOMMU_IOAS_UNMAP": 0x3b86,
  "ioctl IOMMU_HWPT_ALLOC": 0x3b89,
  "ioctl IOMMU_GET_HW_INFO": 0x3b8a,
  "ioctl IOMMU_HWPT_SET_DIRTY_TRACKING": 0x3b8b,
  "ioctl IOMMU_HWPT_GET_DIRTY_BITMAP": 0x3b8c,
  "ioctl VFIO_DEVICE_BIND_IOMMUFD": 0x3b76,
  "ioctl VFIO_DEVICE_ATTACH_IOMMUFD_PT": 0x3b77,
  "ioctl VFIO_DEVICE_DETACH_IOMMUFD_PT": 0x3b78,
  "const IOMMU_IOAS_MAP_FIXED_IOVA": 1,
  "const IOMMU_IOAS_MAP_WRITEABLE": 2,
  "const IOMMU_IOAS_MAP_READABLE": 4,
  "const IOMMU_HWPT_ALLOC_NEST_PARENT": 1,
  "const IOMMU_HWPT_ALLOC_DIRTY_TRACKING": 2,
  "const IOMMU_HWPT_FAULT_ID_VALID": 4,
  "const IOMMU_HW_CAP_DIRTY_TRACKING": 1,
  "const IOMMU_HW_INFO_TYPE_NONE": 0,
  "const IOMMU_HW_INFO_TYPE_INTEL_VTD": 1,
  "const IOMMU_HWPT_DIRTY_TRACKING_ENABLE": 1,
  "const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR": 1,
});

/**
 * A C program that prints every fact of `facts` as `key value` lines, from
 * the headers it includes.
 *
 * @param facts The facts (keys as in {@linkcode IOMMUFD_LAYOUT}).
 * @param includes The `#include` lines.
 * @returns The program text.
 */
export function layoutProgram(facts: Readonly<Record<string, number>>, includes: string[]): string {
  const lines = Object.keys(facts).map((key) => {
    const [kind, what] = key.split(" ");
    if (kind === "sizeof") return `  printf("%s %zu\\n", "${key}", sizeof(struct ${what}));`;
    if (kind === "offsetof") {
      const dot = what.indexOf(".");
      const [s, f] = [what.slice(0, dot), what.slice(dot + 1)];
      return `  printf("%s %zu\\n", "${key}", offsetof(struct ${s}, ${f}));`;
    }
    return `  printf("%s %lu\\n", "${key}", (unsigned long)(${what}));`;
  });
  return [
    "#include <stdio.h>",
    "#include <stddef.h>",
    ...includes,
    "int main(void) {",
    ...lines,
    "  return 0;",
    "}",
    "",
  ].join("\n");
}
