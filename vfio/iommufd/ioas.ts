/**
 * An iommufd I/O address space (IOAS): the IOVA-to-host mappings that
 * devices and hardware page tables attached to it translate through.
 *
 * @module
 */

import type { HostAddress, Iova } from "../../sys/address.ts";
import { hex } from "../../sys/address.ts";
import { HOST_PAGE_SIZE } from "../../sys/constants.ts";
import { ResourceBusyError } from "../../sys/errors.ts";
import { DmaMapping } from "../dma_mapping.ts";
import { markReleased } from "../_links.ts";
import { type ContextLink, contextLink } from "./_context.ts";
import { checkIovaRange } from "../iova_check.ts";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from "./constants.ts";
import type { Iommufd } from "./iommufd.ts";
import { IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP } from "./ioctls.ts";
import { decodeIoasUnmapLength, encodeIoasMap, encodeIoasUnmap } from "./uapi/ioas.ts";

/**
 * An IOAS, from {@linkcode Iommufd.allocIoas}. Mappings are made at fixed
 * IOVAs (`IOMMU_IOAS_MAP_FIXED_IOVA`) and returned as leases. It refuses to
 * close while its mappings, the HWPTs over it or the devices attached to it
 * live.
 *
 * @example Map and unmap
 * ```ts ignore
 * using ioas = iommufd.allocIoas();
 * using dma = ioas.map(iova(1n << 24n), { vaddr, size: 0x10000n });
 * ```
 */
export class IommufdIoas implements Disposable {
  /** The IOAS's object id (`pt_id` for attaching devices and allocating HWPTs). */
  readonly id: number;
  #iommufd: Iommufd;
  #context: ContextLink;
  #mappings: DmaMapping[] = [];
  #unmapRefused = new WeakSet<DmaMapping>();
  #live = true;
  #child = { label: "", uses: (): readonly number[] => [] };

  /**
   * Wraps an allocated IOAS ({@linkcode Iommufd.allocIoas} does this).
   *
   * @param iommufd The context.
   * @param id The IOAS id.
   */
  constructor(iommufd: Iommufd, id: number) {
    this.#iommufd = iommufd;
    this.#context = contextLink(iommufd);
    this.id = id;
    this.#child.label = `IOAS ${id}`;
    this.#context.adopt(this.#child);
  }

  /** The live mappings made through this object, in IOVA order. */
  get mappings(): readonly DmaMapping[] {
    return this.#mappings;
  }

  /** Whether the IOAS is destroyed. */
  get closed(): boolean {
    return !this.#live;
  }

  #fd(what: string): number {
    if (!this.#live) throw new RangeError(`Cannot ${what}: IOAS ${this.id} is destroyed`);
    return this.#context.fd(what);
  }

  /**
   * Maps host memory at a fixed IOVA (`IOMMU_IOAS_MAP`). The host memory
   * must stay mapped for the lifetime of the lease.
   *
   * @param iova Where devices see the memory (4 KiB aligned).
   * @param host The host address and size (4 KiB aligned).
   * @param options `readonly: true` to refuse device writes.
   * @returns The lease; dispose it to unmap.
   * @throws {RangeError} For a size of 0 or misalignment, before the ioctl.
   * @throws {IoctlError} `EEXIST` on overlap, `ENOENT` outside the allowed IOVAs.
   */
  map(
    iova: Iova,
    host: { vaddr: HostAddress; size: bigint },
    options: { readonly?: boolean } = {},
  ): DmaMapping {
    const fd = this.#fd("map into an IOAS");
    checkIovaRange({ what: "map into an IOAS", page: BigInt(HOST_PAGE_SIZE), ranges: [] }, {
      iova,
      size: host.size,
      vaddr: host.vaddr,
    });
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
      (options.readonly ? 0 : IOMMU_IOAS_MAP_WRITEABLE);
    this.#iommufd.syscalls.ioctl(
      fd,
      IOMMU_IOAS_MAP,
      encodeIoasMap({ flags, ioasId: this.id, userVa: host.vaddr, length: host.size, iova }),
    );
    const mapping = new DmaMapping(
      { iova, size: host.size, vaddr: host.vaddr, readonly: options.readonly === true },
      (m) => this.#unmapLease(m),
    );
    const at = this.#mappings.findIndex((m) => m.iova > iova);
    this.#mappings.splice(at < 0 ? this.#mappings.length : at, 0, mapping);
    return mapping;
  }

  #unmapLease(m: DmaMapping): void {
    if (this.closed) return this.#forget(m.iova, m.end);
    try {
      this.unmap(m.iova, m.size);
    } catch (e) {
      // The lease stays mapped (a later unmap() tries again), but it no
      // longer holds the IOAS back: destroying it is then how the kernel unmaps it.
      this.#unmapRefused.add(m);
      throw e;
    }
  }

  #forget(from: bigint, to: bigint): void {
    this.#mappings = this.#mappings.filter((m) => {
      const inside = m.iova >= from && m.end <= to;
      if (inside) markReleased(m);
      return !inside;
    });
  }

  /**
   * Unmaps an IOVA range (`IOMMU_IOAS_UNMAP`). Dirty bits of the range are
   * lost with it: read them first (`HwPagetable.readDirty` with `noClear`),
   * as `IommufdDirtyTracker.unmap` does.
   *
   * @param iova The first IOVA.
   * @param length Bytes; the range must cover whole mappings.
   * @returns The bytes unmapped.
   * @throws {IoctlError} `ENOENT` when nothing is mapped there, `EINVAL` for a
   *   range that bisects a mapping.
   */
  unmap(iova: Iova | bigint, length: bigint): bigint {
    const fd = this.#fd(`unmap iova ${hex(iova)} from an IOAS`);
    const buf = encodeIoasUnmap({ ioasId: this.id, iova, length });
    this.#iommufd.syscalls.ioctl(fd, IOMMU_IOAS_UNMAP, buf);
    this.#forget(iova, iova + length);
    return decodeIoasUnmapLength(buf);
  }

  /**
   * Destroys the IOAS (`IOMMU_DESTROY`). Idempotent. While a DMA mapping of
   * it, a HWPT over it or a device attached to it is live, it refuses and
   * changes nothing.
   *
   * @throws {ResourceBusyError} Naming the live mappings, HWPTs and devices.
   * @throws {IoctlError} `EBUSY` while something this process did not make
   *   through these objects uses it (the IOAS stays).
   */
  close(): void {
    if (!this.#live) return;
    const users = [
      ...this.#mappings.filter((m) => !this.#unmapRefused.has(m)).map((m) =>
        `DMA mapping [${hex(m.iova)}, ${hex(m.end)})`
      ),
      ...this.#context.usersOf(this.id),
    ];
    if (users.length > 0) {
      throw new ResourceBusyError(`IOAS ${this.id}`, users, {
        order: "unmap its mappings, detach its devices and close its HWPTs first",
      });
    }
    this.#iommufd.destroy(this.id);
    this.#live = false;
    this.#context.release(this.#child);
    for (const m of this.#mappings) markReleased(m); // the kernel unmapped them with it
    this.#mappings = [];
  }

  /** Destroys the IOAS (see {@linkcode IommufdIoas.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
