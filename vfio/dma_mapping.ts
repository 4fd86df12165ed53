/**
 * A DMA mapping lease: the IOVA range a container maps onto host memory.
 *
 * @module
 */

import type { HostAddress, Iova } from "../sys/address.ts";
import { onRelease } from "./_links.ts";

/** What releases a mapping; supplied by the container. */
export type UnmapFn = (mapping: DmaMapping) => void;

/**
 * A live `VFIO_IOMMU_MAP_DMA` mapping. Dispose it (or call `unmap()`) to
 * unmap; both are idempotent. The host memory must stay mapped for as long as
 * the mapping lives: the device may DMA into it at any time.
 *
 * @example Scope a mapping with `using`
 * ```ts ignore
 * using dma = container.mapDma(iova(0x10_0000n), { vaddr, size: 0x10_0000n });
 * ```
 */
export class DmaMapping implements Disposable {
  /** The first IOVA. */
  readonly iova: Iova;
  /** Bytes mapped. */
  readonly size: bigint;
  /** The host address the IOVA range maps onto. */
  readonly vaddr: HostAddress;
  /** Whether the device may only read. */
  readonly readonly: boolean;
  #unmap: UnmapFn | undefined;

  /**
   * Creates the lease (containers do this; users call `mapDma`).
   *
   * @param fields The mapping.
   * @param unmap The container's release function.
   */
  constructor(
    fields: { iova: Iova; size: bigint; vaddr: HostAddress; readonly: boolean },
    unmap: UnmapFn,
  ) {
    this.iova = fields.iova;
    this.size = fields.size;
    this.vaddr = fields.vaddr;
    this.readonly = fields.readonly;
    this.#unmap = unmap;
    // The kernel dropped the mapping (its IOAS was destroyed): no ioctl is owed.
    onRelease(this, () => void (this.#unmap = undefined));
  }

  /** Whether the mapping is still in place. */
  get mapped(): boolean {
    return this.#unmap !== undefined;
  }

  /** The IOVA one past the end. */
  get end(): bigint {
    return this.iova + this.size;
  }

  /**
   * Unmaps the range. A second call does nothing.
   *
   * @throws {IoctlError} If the kernel refuses; the lease then stays mapped.
   */
  unmap(): void {
    const unmap = this.#unmap;
    if (unmap === undefined) return;
    unmap(this);
    this.#unmap = undefined;
  }

  /** Unmaps the range (see {@linkcode DmaMapping.unmap}). */
  [Symbol.dispose](): void {
    this.unmap();
  }
}
