/**
 * Mapping guest RAM for device DMA through anything shaped like a VFIO
 * container, without importing `vfio/`.
 *
 * @module
 */

import type { HostAddress, Iova } from "../sys/address.ts";
import { addChecked, hex, iova as toIova } from "../sys/address.ts";
import type { GuestRegion } from "./guest_region.ts";

/**
 * One DMA mapping; unmapping is idempotent and `using` unmaps it.
 */
export interface DmaLease extends Disposable {
  /** The first IOVA mapped. */
  readonly iova: Iova;
  /** Bytes mapped. */
  readonly size: bigint;
  /** Removes the mapping (idempotent). */
  unmap(): void;
}

/**
 * What `GuestMemory.mapInto()` needs from a VFIO container: `VfioContainer`
 * satisfies it structurally.
 */
export interface DmaMapper {
  /**
   * Maps `[host.vaddr, host.vaddr + host.size)` at `iova` for device DMA.
   *
   * SAFETY: the host memory must stay mapped until the lease is unmapped.
   *
   * @param iova The IOVA.
   * @param host The host range.
   * @param options `readonly` to deny device writes.
   * @returns The lease.
   */
  mapDma(
    iova: Iova,
    host: { vaddr: HostAddress; size: bigint },
    options?: { readonly?: boolean },
  ): DmaLease;
}

/** Options of `GuestMemory.mapInto()`. */
export interface MapIntoOptions {
  /** Added to each region's GPA to give its IOVA (default 0: IOVA = GPA). */
  iovaBase?: bigint;
  /** Map read-only for the device. */
  readonly?: boolean;
}

/**
 * The DMA mappings of all regions, unmapped together (in reverse order) by
 * {@linkcode GuestMemoryDmaLease.unmap} or `using`.
 *
 * @example Map and unmap all RAM
 * ```ts ignore
 * using dma = memory.mapInto(container);
 * console.log(dma.leases.length);
 * ```
 */
export class GuestMemoryDmaLease implements Disposable {
  #leases: DmaLease[];
  #unmapped = false;

  /**
   * Wraps leases made by `mapRegions`.
   *
   * @param leases The per-region leases, in mapping order.
   */
  constructor(leases: DmaLease[]) {
    this.#leases = leases;
  }

  /**
   * The per-region leases.
   *
   * @returns The leases in region order (empty once unmapped).
   */
  get leases(): readonly DmaLease[] {
    return this.#leases;
  }

  /**
   * Unmaps every region (idempotent). Tries all of them; throws the first
   * failure afterwards.
   *
   * @throws {Error} The first error a lease's `unmap()` threw.
   */
  unmap(): void {
    if (this.#unmapped) return;
    this.#unmapped = true;
    const leases = this.#leases;
    this.#leases = [];
    unmapAll(leases);
  }

  /** Same as {@linkcode GuestMemoryDmaLease.unmap}. */
  [Symbol.dispose](): void {
    this.unmap();
  }
}

function unmapAll(leases: DmaLease[]): void {
  let first: unknown;
  let failed = false;
  for (let i = leases.length - 1; i >= 0; i--) {
    try {
      leases[i].unmap();
    } catch (e) {
      if (!failed) first = e;
      failed = true;
    }
  }
  if (failed) throw first;
}

/**
 * Maps each region at `iovaBase + gpa`. If a region fails, the ones already
 * mapped are unmapped and the error is rethrown.
 *
 * @param regions The regions.
 * @param mapper The container.
 * @param options IOVA base and read-only flag.
 * @returns One lease for all regions.
 */
export function mapRegions(
  regions: readonly GuestRegion[],
  mapper: DmaMapper,
  options: MapIntoOptions = {},
): GuestMemoryDmaLease {
  const base = options.iovaBase ?? 0n;
  const done: DmaLease[] = [];
  for (const r of regions) {
    try {
      const at = addChecked(toIova(base), r.gpa);
      const lease = options.readonly === undefined
        ? mapper.mapDma(at, { vaddr: r.hostAddress, size: r.size })
        : mapper.mapDma(at, { vaddr: r.hostAddress, size: r.size }, { readonly: options.readonly });
      done.push(lease);
    } catch (e) {
      try {
        unmapAll(done);
      } catch { /* the original failure is the one to report */ }
      if (e instanceof RangeError) {
        throw new RangeError(`Cannot map ${r} for DMA at iova base ${hex(base)}: ${e.message}`, {
          cause: e,
        });
      }
      throw e;
    }
  }
  return new GuestMemoryDmaLease(done);
}
