/**
 * The one vocabulary for what a source of dirty-page bits tells: shared by
 * the VFIO trackers (type1, iommufd), the migration engine's sources and the
 * fake kernel.
 *
 * @module
 */

/**
 * What a source's dirty bits have been seen to mean:
 * - `unknown`: no harvest has covered a page yet;
 * - `precise`: the pages written (CPU trackers, type1's pinned-page scope,
 *   IOMMU dirty bits, device DMA logging);
 * - `all-mapped`: every mapped page, every time, as type1 reports while any
 *   group in the container has not pinned pages (every vfio-pci device):
 *   such bits carry no information, and pre-copy that trusts them never
 *   converges.
 */
export type DirtyScope = "unknown" | "precise" | "all-mapped";
