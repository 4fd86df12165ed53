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
 * {@linkcode GuestMemoryDmaLease.unmap} or `using`. While it is mapped, the
 * guest memory refuses to close (the device could still write the RAM).
 *
 * @example Map and unmap all RAM
 * ```ts ignore
 * using dma = memory.mapInto(container);
 * console.log(dma.leases.length);
 * ```
 */
export class GuestMemoryDmaLease implements Disposable {
  #leases: DmaLease[];
  #refused = false;

  /**
   * Wraps leases made by `mapRegions`.
   *
   * @param leases The per-region leases, in mapping order.
   */
  constructor(leases: DmaLease[]) {
    this.#leases = leases;
  }

  /**
   * The per-region leases still mapped.
   *
   * @returns The leases in region order (empty once unmapped).
   */
  get leases(): readonly DmaLease[] {
    return this.#leases;
  }

  /**
   * Whether any region is still mapped.
   *
   * @returns `false` once every region is unmapped.
   */
  get mapped(): boolean {
    return this.#leases.length > 0;
  }

  /**
   * Whether an unmap was refused for a region that is still mapped: the
   * guest memory then no longer waits for it (see `GuestMemory.close`).
   *
   * @returns `true` after a refused unmap, until every region is unmapped.
   */
  get unmapRefused(): boolean {
    return this.#refused && this.mapped;
  }

  /**
   * Unmaps every region (idempotent). Tries all of them; the ones whose
   * unmap failed stay mapped (a later call tries them again), and the first
   * failure is thrown.
   *
   * @throws {Error} The first error a lease's `unmap()` threw.
   */
  unmap(): void {
    const { failed, first } = unmapAll(this.#leases);
    this.#leases = failed;
    if (failed.length > 0) {
      this.#refused = true;
      throw first;
    }
  }

  /** Same as {@linkcode GuestMemoryDmaLease.unmap}. */
  [Symbol.dispose](): void {
    this.unmap();
  }
}

/** Unmaps in reverse order; returns the leases that failed (in order) and the first error. */
function unmapAll(leases: readonly DmaLease[]): { failed: DmaLease[]; first: unknown } {
  const failed: DmaLease[] = [];
  let first: unknown;
  for (let i = leases.length - 1; i >= 0; i--) {
    try {
      leases[i].unmap();
    } catch (e) {
      if (failed.length === 0) first = e;
      failed.unshift(leases[i]);
    }
  }
  return { failed, first };
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
      unmapAll(done); // the original failure is the one to report
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
