/**
 * A device that can DMA into guest RAM while the container cannot report
 * what it dirtied (no migration capability, or the iommufd compatibility
 * container): every mapped page must be assumed dirty, always.
 *
 * @module
 */

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { VfioContainer } from "../../vfio/container.ts";
import type { DirtySource, SourceHarvest } from "../engine/dirty_source.ts";
import { containerDevices, markMapped, type RegionLayout } from "./vfio_dirty_source.ts";

/**
 * Reports every page mapped into the container as dirty on every harvest: the
 * `all-mapped` scope, by assumption rather than by the kernel's report.
 *
 * @example
 * ```ts ignore
 * const source = new UntrackedDeviceSource(container, memory.regions, "no migration capability");
 * ```
 */
export class UntrackedDeviceSource implements DirtySource {
  /** The source's name. */
  readonly name = "vfio-untracked";
  /** Always `all-mapped`. */
  readonly scope = "all-mapped" as const;
  /** Why the container cannot track. */
  readonly reason: string;
  /** The devices whose DMA it stands for. */
  readonly devices: readonly string[];
  #container: VfioContainer;
  #regions: readonly RegionLayout[];
  #iovaBase: bigint;

  /**
   * Creates the source.
   *
   * @param container The container the RAM is mapped into.
   * @param regions The guest RAM regions.
   * @param options Why tracking is unavailable, the IOVA base, and the devices
   *   (default: the container's groups).
   */
  constructor(
    container: VfioContainer,
    regions: readonly RegionLayout[],
    options: { reason: string; iovaBase?: bigint; devices?: readonly string[] },
  ) {
    this.#container = container;
    this.#regions = regions;
    this.reason = options.reason;
    this.#iovaBase = options.iovaBase ?? 0n;
    this.devices = options.devices ?? containerDevices(container);
  }

  /** Nothing to start. */
  start(): void {}

  /** Nothing to stop. */
  stop(): void {}

  /**
   * Marks every mapped page.
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    markMapped(this.#container, this.#regions, { bitmaps, iovaBase: this.#iovaBase });
  }

  /**
   * Marks every mapped page, as the kernel's all-mapped scope would.
   *
   * @param bitmaps One bitmap per region.
   * @returns Every mapped page.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    const before = bitmaps.reduce((n, b) => n + b.count(), 0);
    this.coverInto(bitmaps);
    const pages = bitmaps.reduce((n, b) => n + b.count(), 0) - before;
    return { source: this.name, dirtyPages: pages, scope: "all-mapped", coveredPages: pages };
  }
}
