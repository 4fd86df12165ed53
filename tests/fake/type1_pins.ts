/**
 * Page pinning of the fake type1 IOMMU (`vfio_iommu_type1_pin_pages`,
 * `vfio_iommu_type1_unpin_pages`), as an mdev vendor driver would use it. A
 * group's first pin moves it into the pinned dirty scope.
 *
 * @module
 */

import { type Dma, PAGE_SIZE, type Type1Iommu } from "./type1.ts";

/**
 * Pins pages for a group (`vfio_iommu_type1_pin_pages`), as a vendor driver would.
 *
 * @param iommu The IOMMU.
 * @param groupId The pinning group (must be attached).
 * @param iova First IOVA (page aligned).
 * @param size Bytes (page aligned, non-zero).
 * @throws {TypeError} On a v1 container (the kernel's EACCES) or an unattached group.
 * @throws {RangeError} When misaligned or a page is not mapped (nothing is pinned).
 */
export function pinPages(iommu: Type1Iommu, groupId: number, iova: bigint, size: bigint): void {
  for (const [dma, page] of pinnable(iommu, groupId, iova, size, "pin")) {
    const refs = dma.pins.get(page) ?? 0;
    dma.pins.set(page, refs + 1);
    if (refs === 0 && iommu.tracking) dma.bitmap?.set((page - dma.iova) >> iommu.pgshift, 1n);
  }
  iommu.groups.get(groupId)!.pinnedScope = true;
}

/**
 * Drops one pin reference per page (`vfio_iommu_type1_unpin_pages`). The
 * dirty bit stays set until the next bitmap read.
 *
 * @param iommu The IOMMU.
 * @param groupId The group (must be attached).
 * @param iova First IOVA (page aligned).
 * @param size Bytes (page aligned, non-zero).
 * @throws {TypeError} On a v1 container or an unattached group.
 * @throws {RangeError} When misaligned or a page is not mapped.
 */
export function unpinPages(iommu: Type1Iommu, groupId: number, iova: bigint, size: bigint): void {
  for (const [dma, page] of pinnable(iommu, groupId, iova, size, "unpin")) {
    const refs = dma.pins.get(page) ?? 0;
    if (refs <= 1) dma.pins.delete(page);
    else dma.pins.set(page, refs - 1);
  }
}

function pinnable(
  iommu: Type1Iommu,
  groupId: number,
  iova: bigint,
  size: bigint,
  what: string,
): [Dma, bigint][] {
  if (!iommu.v2) throw new TypeError(`Cannot ${what} pages on a type1 v1 container: EACCES`);
  if (!iommu.groups.has(groupId)) {
    throw new TypeError(`Cannot ${what} pages: group ${groupId} is not attached`);
  }
  if (size <= 0n || ((iova | size) & (PAGE_SIZE - 1n)) !== 0n) {
    throw new RangeError(`Cannot ${what} pages at iova 0x${iova.toString(16)}: not page aligned`);
  }
  const out: [Dma, bigint][] = [];
  for (let page = iova; page < iova + size; page += PAGE_SIZE) {
    const dma = iommu.findDma(page, PAGE_SIZE);
    if (dma === undefined) {
      throw new RangeError(`Cannot ${what} page at iova 0x${page.toString(16)}: not mapped`);
    }
    out.push([dma, page]);
  }
  return out;
}
