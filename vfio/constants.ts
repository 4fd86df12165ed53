/**
 * VFIO constants, spelled as in `linux/vfio.h`.
 *
 * @module
 */

/** The only VFIO API version. */
export const VFIO_API_VERSION = 0;
/** Extension and IOMMU model: type1. */
export const VFIO_TYPE1_IOMMU = 1;
/** Extension and IOMMU model: type1 v2. */
export const VFIO_TYPE1v2_IOMMU = 3;
/** Extension: DMA cache coherence. */
export const VFIO_DMA_CC_IOMMU = 4;
/** Extension and IOMMU model: no-IOMMU mode. */
export const VFIO_NOIOMMU_IOMMU = 8;
/** Extension: unmap all. */
export const VFIO_UNMAP_ALL = 9;
/** Extension: update vaddr. */
export const VFIO_UPDATE_VADDR = 10;
/** Group status: viable. */
export const VFIO_GROUP_FLAGS_VIABLE = 1;
/** Group status: a container is set. */
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 2;
/** IOMMU info: `iova_pgsizes` is valid. */
export const VFIO_IOMMU_INFO_PGSIZES = 1;
/** IOMMU info: a capability chain is present. */
export const VFIO_IOMMU_INFO_CAPS = 2;
/** IOMMU info cap id: IOVA ranges. */
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
/** IOMMU info cap id: migration (dirty page tracking). */
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
/** IOMMU info cap id: DMA mappings available. */
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;
/** DMA map: device may read. */
export const VFIO_DMA_MAP_FLAG_READ = 1;
/** DMA map: device may write. */
export const VFIO_DMA_MAP_FLAG_WRITE = 2;
/** DMA map: update vaddr. */
export const VFIO_DMA_MAP_FLAG_VADDR = 4;
/** DMA unmap: return the dirty bitmap of the unmapped range. */
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1;
/** DMA unmap: unmap everything. */
export const VFIO_DMA_UNMAP_FLAG_ALL = 2;
/** DMA unmap: invalidate vaddr. */
export const VFIO_DMA_UNMAP_FLAG_VADDR = 4;
/** Dirty pages: start tracking. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1;
/** Dirty pages: stop tracking. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 2;
/** Dirty pages: get the bitmap. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 4;
/** Device info: the device supports reset. */
export const VFIO_DEVICE_FLAGS_RESET = 1;
/** Device info: a PCI device. */
export const VFIO_DEVICE_FLAGS_PCI = 2;
/** Region info: readable. */
export const VFIO_REGION_INFO_FLAG_READ = 1;
/** Region info: writable. */
export const VFIO_REGION_INFO_FLAG_WRITE = 2;
/** Region info: mmap-able. */
export const VFIO_REGION_INFO_FLAG_MMAP = 4;
/** Region info: a capability chain is present. */
export const VFIO_REGION_INFO_FLAG_CAPS = 8;
/** PCI region index of BAR0. */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
/** PCI region index of the config space. */
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
/** Device feature: mask of the feature number. */
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
/** Device feature: get. */
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
/** Device feature: set. */
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
/** Device feature: probe. */
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
/** Device feature number: migration. */
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;
/** Device feature number: migration device state. */
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
/** Device feature number: start DMA logging. */
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
/** Device feature number: stop DMA logging. */
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
/** Device feature number: report DMA logging. */
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
/** Device feature number: migration data size. */
export const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;
/** Migration flag: STOP_COPY supported. */
export const VFIO_MIGRATION_STOP_COPY = 1;
/** Migration flag: P2P states supported. */
export const VFIO_MIGRATION_P2P = 2;
/** Migration flag: PRE_COPY supported. */
export const VFIO_MIGRATION_PRE_COPY = 4;
/** Device state: ERROR. */
export const VFIO_DEVICE_STATE_ERROR = 0;
/** Device state: STOP. */
export const VFIO_DEVICE_STATE_STOP = 1;
/** Device state: RUNNING. */
export const VFIO_DEVICE_STATE_RUNNING = 2;
/** Device state: STOP_COPY. */
export const VFIO_DEVICE_STATE_STOP_COPY = 3;
/** Device state: RESUMING. */
export const VFIO_DEVICE_STATE_RESUMING = 4;
/** Device state: RUNNING_P2P. */
export const VFIO_DEVICE_STATE_RUNNING_P2P = 5;
/** Device state: PRE_COPY. */
export const VFIO_DEVICE_STATE_PRE_COPY = 6;
/** Device state: PRE_COPY_P2P. */
export const VFIO_DEVICE_STATE_PRE_COPY_P2P = 7;
/** The type1 kernel's `DIRTY_BITMAP_SIZE_MAX` (256 MiB). */
export const DIRTY_BITMAP_SIZE_MAX = 268435456n;
