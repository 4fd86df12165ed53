/**
 * An iommufd hardware page table with dirty tracking as a device-side dirty
 * source: the pages the IOMMU saw the attached devices write, precise by
 * construction. An unmap during pre-copy reads the range's bits first
 * (`IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`) and keeps them for the next
 * harvest, so no page is lost.
 *
 * @module
 */

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { Iova } from "../../sys/address.ts";
import { IommufdDirtyTracker } from "../../vfio/iommufd/dirty_tracker.ts";
import type { HwPagetable } from "../../vfio/iommufd/hw_pagetable.ts";
import type { IommufdIoas } from "../../vfio/iommufd/ioas.ts";
import type { DirtySource, SourceHarvest } from "../engine/dirty_source.ts";
import type { RegionLayout } from "./vfio_dirty_source.ts";

/** Options of {@linkcode IommufdDirtySource}. */
export interface IommufdDirtySourceOptions {
  /** IOVA = `iovaBase` + GPA (default 0). */
  iovaBase?: bigint;
  /** The largest bitmap one `IOMMU_HWPT_GET_DIRTY_BITMAP` passes (default 1 MiB). */
  maxBitmapBytes?: bigint;
  /**
   * The devices attached to the HWPT, named as the other device sources name
   * them (`group N` for an IOMMU group): where they are the same as a
   * container's, this source replaces its coarser bits. Default
   * `hwpt ID`, a device set of its own.
   */
  devices?: readonly string[];
}

/**
 * Device-side dirty pages from an iommufd HWPT allocated with
 * `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`.
 *
 * @example
 * ```ts ignore
 * using hwpt = iommufd.allocHwpt({ devId, ioas, dirtyTracking: true });
 * const source = new IommufdDirtySource(hwpt, ioas, memory.regions, {
 *   iovaBase,
 *   devices: ["group 26"],
 * });
 * await migrate({ ram, sink, sources: [cpu, source], digest, transport });
 * ```
 */
export class IommufdDirtySource implements DirtySource {
  /** The source's name. */
  readonly name = "iommufd-hwpt";
  /** Always `precise`: only pages a device wrote. */
  readonly scope = "precise" as const;
  /** IOMMU dirty bits are precise by construction. */
  readonly preciseByConstruction = true;
  /** A harvest reads and clears each dirty bit atomically: writes racing it are kept. */
  readonly concurrentSafe = true;
  /** The devices attached to the HWPT. */
  readonly devices: readonly string[];
  #tracker: IommufdDirtyTracker;

  /**
   * Creates the source (not started).
   *
   * @param hwpt The HWPT, allocated with dirty tracking, the devices attached.
   * @param ioas The IOAS the RAM is mapped in.
   * @param regions The guest RAM regions, in order.
   * @param options The IOVA base, the bitmap limit and the devices.
   * @throws {RangeError} For a region not made of whole 4 KiB pages, or a bad limit.
   */
  constructor(
    hwpt: HwPagetable,
    ioas: IommufdIoas,
    regions: readonly RegionLayout[],
    options: IommufdDirtySourceOptions = {},
  ) {
    this.#tracker = new IommufdDirtyTracker(hwpt, ioas, regions, {
      iovaBase: options.iovaBase,
      maxBitmapBytes: options.maxBitmapBytes,
    });
    this.devices = options.devices ?? [`hwpt ${hwpt.id}`];
  }

  /**
   * Enables dirty tracking on the HWPT.
   *
   * @throws {DirtyTrackingUnavailableError} When the HWPT cannot track.
   * @throws {IoctlError} If the kernel refuses.
   */
  start(): void {
    this.#tracker.start();
  }

  /** Disables dirty tracking. Idempotent. */
  stop(): void {
    this.#tracker.stop();
  }

  /**
   * ORs the pages the devices wrote since the last harvest, and those of
   * unmaps in between, into the bitmaps.
   *
   * @param bitmaps One 4 KiB bitmap per region.
   * @returns What was found.
   * @throws {VfioStateError} When tracking is not started.
   * @throws {IoctlError} If the kernel refuses.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    return this.#tracker.harvestInto(bitmaps);
  }

  /**
   * ORs the pages of the regions mapped in the IOAS into the bitmaps.
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    this.#tracker.coverInto(bitmaps);
  }

  /**
   * Unmaps an IOVA range, keeping its dirty bits (read with `NO_CLEAR`
   * first) for the next harvest.
   *
   * @param iova The first IOVA.
   * @param size Bytes; the range must cover whole mappings.
   * @returns Bytes unmapped.
   * @throws {IoctlError} If the kernel refuses.
   */
  unmap(iova: Iova | bigint, size: bigint): bigint {
    return this.#tracker.unmap(iova, size);
  }
}
