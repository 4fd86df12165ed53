/**
 * The fake type1 IOMMU behind a container once `VFIO_SET_IOMMU` succeeded:
 * DMA mappings, the DMA_AVAIL budget, the attached groups' dirty scope and
 * `VFIO_IOMMU_MAP_DMA`, following drivers/vfio/vfio_iommu_type1.c. GET_INFO,
 * UNMAP_DMA, DIRTY_PAGES and pinning live in the `type1_*.ts` files beside it.
 *
 * @module
 */

import { EEXIST, EFAULT, EINVAL, ENOENT, ENOSPC, ENOTTY } from "../../sys/errno.ts";
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_UPDATE_VADDR,
} from "../../vfio/constants.ts";
import {
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
} from "../../vfio/ioctls.ts";
import { decodeDmaMap } from "../../vfio/uapi/dma.ts";
import { DirtyWords } from "./dirty_bitmap.ts";
import { smallestPage, type Type1Config } from "./options.ts";
import { DIRTY_BITMAP_PAGES_MAX, dirtyPages } from "./type1_dirty.ts";
import { getInfo } from "./type1_info.ts";
import { unmapDma } from "./type1_unmap.ts";
import { fail, isMapped, U64_MAX, type UserArg } from "./user_memory.ts";

/** One `struct vfio_dma`. */
export interface Dma {
  /** First IOVA. */
  readonly iova: bigint;
  /** Bytes. */
  readonly size: bigint;
  /** Host virtual address of the first byte. */
  vaddr: bigint;
  /** `VFIO_DMA_MAP_FLAG_READ | WRITE`. */
  readonly prot: number;
  /** `vaddr_invalid` (VFIO_UPDATE_VADDR). */
  vaddrInvalid: boolean;
  /** The dirty bitmap while tracking, else null. */
  bitmap: DirtyWords | null;
  /** Externally pinned pages (`pfn_list`): page IOVA → reference count. */
  readonly pins: Map<bigint, number>;
}

/** The kernel's `PAGE_SIZE` on x86_64: the pinning granularity. */
export const PAGE_SIZE = 4096n;
/** `PAGE_MASK` as a u64: every page size from 4 KiB up. */
export const PAGE_MASK = 0xffff_ffff_ffff_f000n;

/** The type1 IOMMU state of one container (`struct vfio_iommu`). */
export class Type1Iommu {
  /** The configuration shared with the kernel. */
  readonly config: Type1Config;
  /** Type1 v2 semantics (TYPE1v2 or NESTING); false for v1. */
  readonly v2: boolean;
  /** Mappings, sorted by IOVA, never overlapping. */
  readonly dmas: Dma[] = [];
  /** `dma_avail`. */
  dmaAvail: number;
  /** `dirty_page_tracking`. */
  tracking = false;
  /**
   * Attached groups: id → `pinned_page_dirty_scope`, and whether the group
   * is an emulated IOMMU group (an mdev: no IOMMU domain).
   */
  readonly groups: Map<number, { pinnedScope: boolean; emulated: boolean }> = new Map();
  /**
   * Vendor drivers' `dma_unmap` callbacks (`vfio_notify_dma_unmap`): called
   * with a mapping's range before it is removed while pages in it are pinned.
   */
  readonly unmapNotifiers: Set<(iova: bigint, size: bigint) => void> = new Set();

  /**
   * Opens the IOMMU (`vfio_iommu_type1_open`).
   *
   * @param config The configuration.
   * @param v2 Whether the type asked for is v2.
   */
  constructor(config: Type1Config, v2: boolean) {
    this.config = config;
    this.v2 = v2;
    this.dmaAvail = config.dmaEntryLimit;
  }

  /** The smallest IOMMU page size. */
  get pgsize(): bigint {
    return smallestPage(this.config.pgsizeBitmap);
  }

  /** `__ffs(pgsize)`. */
  get pgshift(): bigint {
    return BigInt(this.pgsize.toString(2).length - 1);
  }

  /** IOMMU domains: attached groups that are not emulated. */
  get domains(): number {
    let n = 0;
    for (const g of this.groups.values()) if (!g.emulated) n++;
    return n;
  }

  /**
   * `iova_pgsizes` as `vfio_update_pgsize_bitmap` leaves it: the configured
   * page sizes with an IOMMU domain; `PAGE_MASK` with emulated groups only.
   */
  get pgsizeBitmap(): bigint {
    return this.domains === 0 && this.groups.size > 0 ? PAGE_MASK : this.config.pgsizeBitmap;
  }

  /** `num_non_pinned_groups`. */
  get numNonPinnedGroups(): number {
    let n = 0;
    for (const g of this.groups.values()) if (!g.pinnedScope) n++;
    return n;
  }

  /**
   * `vfio_find_dma(iommu, start, size)`: a mapping overlapping the range.
   *
   * @param start First IOVA.
   * @param size Bytes (0 finds a mapping strictly containing `start` past its first byte).
   * @returns The mapping, if any.
   */
  findDma(start: bigint, size: bigint): Dma | undefined {
    return this.dmas.find((d) => !(start + size <= d.iova) && !(start >= d.iova + d.size));
  }

  /**
   * `attach_group`: a new IOMMU-backed group demotes the dirty scope; an
   * emulated group (`VFIO_EMULATED_IOMMU`) starts in the pinned scope ("An
   * emulated IOMMU group cannot dirty memory directly").
   *
   * @param id The group id.
   * @param emulated Whether it is an emulated IOMMU group (an mdev).
   */
  attachGroup(id: number, emulated = false): void {
    this.groups.set(id, { pinnedScope: emulated, emulated });
  }

  /**
   * `detach_group`: the last group takes every mapping with it; removing a
   * non-pinning group while tracking marks every mapped page dirty.
   *
   * @param id The group id.
   */
  detachGroup(id: number): void {
    const group = this.groups.get(id);
    this.groups.delete(id);
    if (this.groups.size === 0) this.removeAll();
    if (group !== undefined && !group.pinnedScope && this.tracking) {
      for (const d of this.dmas) d.bitmap?.set(0n, d.size >> this.pgshift);
    }
  }

  /** `vfio_iommu_unmap_unpin_all`. */
  removeAll(): void {
    while (this.dmas.length > 0) this.removeDma(this.dmas[0]);
  }

  /**
   * `vfio_notify_dma_unmap`: a mapping with pinned pages is going away; the
   * vendor drivers' `dma_unmap` callbacks unpin them.
   *
   * @param dma The mapping.
   */
  notifyUnmap(dma: Dma): void {
    if (dma.pins.size > 0) {
      for (const notify of [...this.unmapNotifiers]) notify(dma.iova, dma.size);
    }
    dma.pins.clear(); // what a driver without a callback left pinned is dropped with the mapping
  }

  /**
   * `vfio_remove_dma`: drops a mapping (vendor drivers unpin on the unmap notifier).
   *
   * @param dma The mapping.
   */
  removeDma(dma: Dma): void {
    this.notifyUnmap(dma);
    this.dmas.splice(this.dmas.indexOf(dma), 1);
    this.dmaAvail++;
  }

  /**
   * The IOMMU backend's ioctl (`vfio_iommu_type1_ioctl`), minus CHECK_EXTENSION
   * which the container answers.
   *
   * @param code The request number.
   * @param arg The user argument.
   * @returns The ioctl's return value.
   * @throws {KernelError} The errno.
   */
  ioctl(code: number, arg: UserArg): number {
    switch (code) {
      case Number(VFIO_IOMMU_GET_INFO.code):
        return getInfo(this, arg);
      case Number(VFIO_IOMMU_MAP_DMA.code):
        return this.#mapDma(arg);
      case Number(VFIO_IOMMU_UNMAP_DMA.code):
        return unmapDma(this, arg);
      case Number(VFIO_IOMMU_DIRTY_PAGES.code):
        if (this.config.migrationCap === null) fail(ENOTTY);
        return dirtyPages(this, arg);
      default:
        return fail(ENOTTY);
    }
  }

  /**
   * Whether `VFIO_UPDATE_VADDR` is enabled (an extension override; Debian's 6.1 disables it).
   *
   * @returns True when the VADDR flags are accepted.
   */
  updateVaddrEnabled(): boolean {
    return !this.config.iommufdCompat && (this.config.extensions.get(VFIO_UPDATE_VADDR) ?? 0) > 0;
  }

  #iovaValid(start: bigint, end: bigint): boolean {
    // Without a domain type1's iova_list is empty: every IOVA is valid.
    if (this.domains === 0) return true;
    const ranges = this.config.iovaRanges;
    return ranges.length === 0 || ranges.some((r) => start >= r.start && end <= r.end);
  }

  #mapDma(arg: UserArg): number {
    const map = decodeDmaMap(arg.read(0, 32));
    // Debian's 6.1 disables VFIO_UPDATE_VADDR; the fake then treats the flag as unknown.
    const mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE |
      (this.updateVaddrEnabled() ? VFIO_DMA_MAP_FLAG_VADDR : 0);
    if (map.argsz < 32 || (map.flags & ~mask) !== 0) fail(EINVAL);
    const setVaddr = (map.flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
    const prot = map.flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) fail(EINVAL);
    const { iova, size, vaddr } = map;
    const pgmask = this.pgsize - 1n;
    if (size === 0n || ((size | iova | vaddr) & pgmask) !== 0n) fail(EINVAL);
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) fail(EINVAL);
    const found = this.findDma(iova, size);
    if (setVaddr) {
      if (found === undefined) fail(ENOENT);
      if (!found.vaddrInvalid || found.iova !== iova || found.size !== size) fail(EINVAL);
      found.vaddr = vaddr;
      found.vaddrInvalid = false;
      return 0;
    }
    if (found !== undefined) fail(EEXIST);
    if (this.dmaAvail === 0) fail(ENOSPC);
    if (!this.#iovaValid(iova, iova + size - 1n)) fail(EINVAL);
    // vfio_pin_map_dma: pinning an unmapped vaddr fails with EFAULT.
    if (vaddr === 0n || (this.config.verifyVaddr && !isMapped(vaddr, size))) fail(EFAULT);
    let bitmap: DirtyWords | null = null;
    if (this.tracking) {
      const npages = size / this.pgsize;
      if (npages > DIRTY_BITMAP_PAGES_MAX) fail(EINVAL);
      bitmap = new DirtyWords(npages);
    }
    const dma: Dma = { iova, size, vaddr, prot, vaddrInvalid: false, bitmap, pins: new Map() };
    const at = this.dmas.findIndex((d) => d.iova > iova);
    this.dmas.splice(at < 0 ? this.dmas.length : at, 0, dma);
    this.dmaAvail--;
    return 0;
  }
}
