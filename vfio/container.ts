/**
 * The VFIO container: an IOMMU context that groups attach to and that DMA
 * mappings and dirty tracking live in.
 *
 * Requires `--allow-ffi` and read-write access to `/dev/vfio/vfio` (unless a
 * fake kernel is passed as `syscalls`).
 *
 * @module
 */

import type { HostAddress, Iova } from "../sys/address.ts";
import { O_CLOEXEC, O_RDWR } from "../sys/constants.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import {
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_NOIOMMU_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from "./constants.ts";
import {
  type DirtyBitmapReport,
  DirtyPageTracker,
  type DirtyTrackerOptions,
} from "./dirty_page_tracker.ts";
import { DmaMapping } from "./dma_mapping.ts";
import { VfioStateError } from "./errors.ts";
import { linkContainer, markReleased } from "./_links.ts";
import { hex } from "../sys/address.ts";
import { ResourceBusyError } from "../sys/errors.ts";
import { VfioGroup } from "./group.ts";
import { checkIovaRange } from "./iova_check.ts";
import {
  VFIO_CHECK_EXTENSION,
  VFIO_GET_API_VERSION,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
} from "./ioctls.ts";
import { encodeDmaMap, encodeDmaUnmap } from "./uapi/dma.ts";
import {
  decodeIommuInfo,
  encodeIommuInfoRequest,
  IOMMU_INFO_SIZE,
  type IommuInfo,
  type IovaRange,
  readArgsz,
} from "./uapi/iommu_info.ts";

/** The default container path. */
export const VFIO_CONTAINER_PATH = "/dev/vfio/vfio";

/** The extensions `extensions()` reports, by their `linux/vfio.h` names. */
export const VFIO_EXTENSIONS: Readonly<Record<string, number>> = Object.freeze({
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_DMA_CC_IOMMU,
  VFIO_NOIOMMU_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
});

/** Options shared by every VFIO object. */
export interface VfioOptions {
  /** The syscall boundary; defaults to libc. Pass a `FakeKernel` in tests. */
  syscalls?: Syscalls;
}

/** The result of {@linkcode VfioContainer.unmapDma}. */
export interface UnmapResult {
  /** Bytes the kernel actually unmapped (0 when the range held no mapping). */
  readonly unmapped: bigint;
  /** The dirty bitmap of the unmapped range, when asked for. */
  readonly dirty?: DirtyBitmapReport;
}

function lowestBit(x: bigint): bigint {
  return x & -x;
}

/**
 * A VFIO container (`/dev/vfio/vfio`).
 *
 * Teardown follows the kernel's order: devices, then groups, then the
 * container. Declaring them with `using` in that order gets it right.
 *
 * @example Map memory for a device
 * ```ts ignore
 * import { VfioContainer } from "./container.ts";
 * import { hostAddress, iova } from "../sys/address.ts";
 * using container = VfioContainer.open();
 * using group = container.attachGroup(26);
 * using device = group.openDevice("0000:00:03.0");
 * using dma = container.mapDma(iova(0x10_0000n), { vaddr: hostAddress(addr), size: 0x10_0000n });
 * ```
 */
export class VfioContainer implements Disposable {
  #sys: Syscalls;
  #fd: number;
  #path: string;
  #iommuType: number | undefined;
  #pgsizes: bigint | undefined;
  #ranges: readonly IovaRange[] | undefined;
  #mappings: DmaMapping[] = [];
  #groups = new Set<VfioGroup>();
  #tracker: DirtyPageTracker | undefined;
  #trackerLimit: bigint | undefined;
  #unmapRefused = new WeakSet<DmaMapping>();

  private constructor(sys: Syscalls, fd: number, path: string) {
    this.#sys = sys;
    this.#fd = fd;
    this.#path = path;
    linkContainer(this, {
      attached: (group) => void this.#groups.add(group),
      blockers: (group) =>
        this.#groups.size === 1 && this.#groups.has(group)
          ? this.#mappings.filter((m) => !this.#unmapRefused.has(m)).map((m) =>
            `DMA mapping [${hex(m.iova)}, ${hex(m.end)})`
          )
          : [],
      detached: (group) => this.#detached(group),
    });
  }

  /**
   * Opens a container.
   *
   * @param options The path (default `/dev/vfio/vfio`) and the syscall boundary.
   * @returns The container, with no IOMMU set yet.
   * @throws {SyscallError} `ENOENT` when the vfio modules are not loaded,
   *   `EACCES` without permission on the path.
   * @throws {VfioStateError} If the kernel speaks another VFIO API version.
   */
  static open(options: VfioOptions & { path?: string } = {}): VfioContainer {
    const sys = options.syscalls ?? defaultSyscalls();
    const path = options.path ?? VFIO_CONTAINER_PATH;
    const fd = sys.open(path, O_RDWR | O_CLOEXEC);
    const container = new VfioContainer(sys, fd, path);
    try {
      const version = container.apiVersion();
      if (version !== 0) {
        throw new VfioStateError(`Cannot use ${path}: VFIO API version ${version}, expected 0`);
      }
    } catch (e) {
      container.close();
      throw e;
    }
    return container;
  }

  /**
   * Adopts a container fd opened elsewhere (for example passed over a unix
   * socket by a privileged helper). The object owns it from now on.
   *
   * @param fd An open `/dev/vfio/vfio` fd.
   * @param options The syscall boundary.
   * @returns The container.
   */
  static unsafeFromFd(fd: number, options: VfioOptions = {}): VfioContainer {
    return new VfioContainer(options.syscalls ?? defaultSyscalls(), fd, `fd ${fd}`);
  }

  /** The raw container fd; the only way to get it out. */
  get unsafeFd(): number {
    return this.#fd;
  }

  /** The path the container was opened from. */
  get path(): string {
    return this.#path;
  }

  /** Whether the container is closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** The IOMMU model set with `setIommu`, if any. */
  get iommuType(): number | undefined {
    return this.#iommuType;
  }

  /** The groups attached through this object, in attach order. */
  get groups(): readonly VfioGroup[] {
    return [...this.#groups];
  }

  /** The live DMA mappings made through this object, in IOVA order. */
  get mappings(): readonly DmaMapping[] {
    return this.#mappings;
  }

  /** The syscall boundary this container uses (groups and devices share it). */
  get syscalls(): Syscalls {
    return this.#sys;
  }

  #check(what: string): number {
    if (this.#fd < 0) throw new VfioStateError(`Cannot ${what}: the container is closed`);
    return this.#fd;
  }

  /**
   * Reads `VFIO_GET_API_VERSION`.
   *
   * @returns The API version (0).
   * @throws {IoctlError} If the kernel refuses.
   */
  apiVersion(): number {
    return this.#sys.ioctlValue(this.#check("read the API version"), VFIO_GET_API_VERSION, 0n);
  }

  /**
   * Asks `VFIO_CHECK_EXTENSION`.
   *
   * @param extension An extension number, such as `VFIO_TYPE1v2_IOMMU`.
   * @returns Whether the kernel supports it.
   * @throws {IoctlError} If the kernel refuses.
   */
  checkExtension(extension: number): boolean {
    const fd = this.#check("check an extension");
    return this.#sys.ioctlValue(fd, VFIO_CHECK_EXTENSION, BigInt(extension)) > 0;
  }

  /**
   * Checks every known extension.
   *
   * @returns Extension name to support.
   * @throws {IoctlError} If the kernel refuses.
   */
  extensions(): Record<string, boolean> {
    const out: Record<string, boolean> = {};
    for (const [name, n] of Object.entries(VFIO_EXTENSIONS)) out[name] = this.checkExtension(n);
    return out;
  }

  /**
   * Sets the IOMMU model (`VFIO_SET_IOMMU`). A group must be attached first.
   *
   * @param type The model; by default type1 v2 when supported, else type1.
   * @returns The model set.
   * @throws {IoctlError} `EINVAL` with no group attached or when already set.
   */
  setIommu(type?: number): number {
    const fd = this.#check("set the IOMMU");
    const model = type ??
      (this.checkExtension(VFIO_TYPE1v2_IOMMU) ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU);
    this.#sys.ioctlValue(fd, VFIO_SET_IOMMU, BigInt(model));
    this.#iommuType = model;
    return model;
  }

  /**
   * Opens a group and attaches it to this container, then sets the IOMMU
   * (type1 v2 preferred) if none is set yet.
   *
   * @param group A group number (`/dev/vfio/N`) or a path.
   * @param options `iommu`: the model to set (default type1 v2 when supported),
   *   or `false` to leave it to a later `setIommu`.
   * @returns The attached group; dispose it before the container.
   * @throws {SyscallError} `ENOENT` for an unknown group, `EACCES` without permission.
   * @throws {VfioStateError} If the group is not viable.
   * @throws {IoctlError} If the kernel refuses to attach it.
   */
  attachGroup(group: number | string, options: { iommu?: number | false } = {}): VfioGroup {
    this.#check("attach a group");
    const g = VfioGroup.open(group, { syscalls: this.#sys });
    try {
      const status = g.status();
      if (!status.viable) {
        throw new VfioStateError(
          `Cannot attach group ${g.path}: not viable (bind every device in the group to vfio-pci)`,
        );
      }
      g.setContainer(this);
      if (this.#iommuType === undefined && options.iommu !== false) this.setIommu(options.iommu);
    } catch (e) {
      g.close();
      throw e;
    }
    return g;
  }

  #detached(group: VfioGroup): void {
    this.#groups.delete(group);
    if (this.#groups.size > 0) return;
    // The kernel releases the IOMMU with the last group: mappings and
    // tracking are gone, and SET_IOMMU is needed again.
    this.#release();
    this.#iommuType = undefined;
    this.#pgsizes = undefined;
    this.#ranges = undefined;
  }

  #release(): void {
    for (const m of this.#mappings) markReleased(m);
    this.#mappings = [];
    if (this.#tracker !== undefined) markReleased(this.#tracker);
    this.#tracker = undefined;
    this.#trackerLimit = undefined;
  }

  /**
   * Reads `VFIO_IOMMU_GET_INFO` with its capability chain, re-querying with the
   * `argsz` the kernel asks for.
   *
   * @returns The decoded info.
   * @throws {IoctlError} `EINVAL` before `setIommu`.
   * @throws {CapChainError} If the kernel's cap chain is malformed.
   */
  info(): IommuInfo {
    const fd = this.#check("read IOMMU info");
    let argsz = IOMMU_INFO_SIZE;
    for (let attempt = 0; attempt < 4; attempt++) {
      const buf = encodeIommuInfoRequest(argsz);
      this.#sys.ioctl(fd, VFIO_IOMMU_GET_INFO, buf);
      const want = readArgsz(buf);
      if (want <= argsz) {
        const info = decodeIommuInfo(buf.subarray(0, argsz));
        this.#pgsizes = info.iovaPgsizes;
        this.#ranges = info.iovaRanges;
        return info;
      }
      argsz = want;
    }
    throw new VfioStateError("Cannot read IOMMU info: the kernel kept asking for a larger argsz");
  }

  /**
   * The smallest IOMMU page size (from `iova_pgsizes`). The first call after
   * `setIommu` reads `VFIO_IOMMU_GET_INFO`; later calls answer from what it
   * read (as does every `info()`), until the IOMMU is released.
   *
   * @returns The page size in bytes.
   * @throws {IoctlError} `EINVAL` before `setIommu`.
   */
  minPageSize(): bigint {
    if (this.#pgsizes === undefined) this.info();
    return lowestBit(this.#pgsizes!);
  }

  #validate(what: string, iova: bigint, size: bigint, vaddr?: bigint): void {
    checkIovaRange({ what, page: this.minPageSize(), ranges: this.#ranges ?? [] }, {
      iova,
      size,
      vaddr,
    });
  }

  /**
   * Maps host memory for device DMA (`VFIO_IOMMU_MAP_DMA`).
   *
   * Alignment and the IOVA ranges are checked before the ioctl. The host
   * memory must stay mapped for the lifetime of the returned lease.
   *
   * @param iova Where the device sees the memory.
   * @param host The host address and size.
   * @param options `readonly: true` to refuse device writes.
   * @returns The lease; dispose it to unmap.
   * @throws {RangeError} Naming the address, for misalignment or a range outside the IOVA ranges.
   * @throws {IoctlError} `EEXIST` on overlap, `ENOSPC` when no mapping is left.
   */
  mapDma(
    iova: Iova,
    host: { vaddr: HostAddress; size: bigint },
    options: { readonly?: boolean } = {},
  ): DmaMapping {
    const fd = this.#check("map DMA");
    this.#validate("map DMA", iova, host.size, host.vaddr);
    const flags = VFIO_DMA_MAP_FLAG_READ | (options.readonly ? 0 : VFIO_DMA_MAP_FLAG_WRITE);
    this.#sys.ioctl(
      fd,
      VFIO_IOMMU_MAP_DMA,
      encodeDmaMap({ flags, vaddr: host.vaddr, iova, size: host.size }),
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
    if (this.#fd >= 0) {
      try {
        this.#sys.ioctl(
          this.#fd,
          VFIO_IOMMU_UNMAP_DMA,
          encodeDmaUnmap({ flags: 0, iova: m.iova, size: m.size }),
        );
      } catch (e) {
        // The lease stays mapped (a later unmap() tries again), but it no
        // longer holds the last group back: releasing the IOMMU is then how
        // the kernel unmaps it.
        this.#unmapRefused.add(m);
        throw e;
      }
    }
    this.#forget(m.iova, m.end);
  }

  #forget(from: bigint, to: bigint): void {
    this.#mappings = this.#mappings.filter((m) => {
      const inside = m.iova >= from && m.end <= to;
      if (inside) markReleased(m);
      return !inside;
    });
  }

  /**
   * Unmaps an IOVA range (`VFIO_IOMMU_UNMAP_DMA`), optionally harvesting the
   * dirty bitmap of what is unmapped, as a vIOMMU unmap during migration must.
   *
   * @param iova The first IOVA.
   * @param size Bytes; the range must cover whole mappings.
   * @param options `dirtyBitmap: true` to get the dirty bits (tracking must be started).
   * @returns The bytes unmapped, and the dirty bitmap when asked.
   * @throws {RangeError} For misalignment.
   * @throws {IoctlError} `EINVAL` when the range bisects a mapping, or asking for
   *   a bitmap while tracking is stopped.
   */
  unmapDma(iova: Iova, size: bigint, options: { dirtyBitmap?: boolean } = {}): UnmapResult {
    const fd = this.#check("unmap DMA");
    this.#validate("unmap DMA", iova, size);
    if (options.dirtyBitmap) {
      const tracker = this.dirtyTracker();
      return tracker.unmapWithBitmap(fd, iova, size, (from, n) => this.#forget(from, from + n));
    }
    const buf = encodeDmaUnmap({ flags: 0, iova, size });
    this.#sys.ioctl(fd, VFIO_IOMMU_UNMAP_DMA, buf);
    this.#forget(iova, iova + size);
    return { unmapped: new DataView(buf.buffer).getBigUint64(16, true) };
  }

  /**
   * Returns the container's dirty page tracker: one per container (the
   * kernel tracks per container), created on first use after reading the
   * migration capability (page size and maximum bitmap size). Later calls
   * return the same tracker; asking it for a different limit is an error
   * (pass a per-query limit to `query()` instead).
   *
   * @param options A per-query bitmap limit for the tracker's life.
   * @returns The tracker.
   * @throws {DirtyTrackingUnavailableError} Without a migration capability.
   * @throws {TypeError} When the tracker exists with a different `maxBitmapBytes`.
   */
  dirtyTracker(options: DirtyTrackerOptions = {}): DirtyPageTracker {
    const fd = this.#check("track dirty pages");
    if (this.#tracker !== undefined) {
      const asked = options.maxBitmapBytes;
      if (asked !== undefined && asked !== this.#trackerLimit) {
        throw new TypeError(
          `Cannot make a dirty tracker with maxBitmapBytes ${asked}: container ${this.#path} ` +
            `already has one with ${this.#trackerLimit ?? "the kernel's limit"} (one tracker a ` +
            "container; pass maxBitmapBytes to query() for one query)",
        );
      }
      return this.#tracker;
    }
    this.#tracker = DirtyPageTracker.create(
      { sys: this.#sys, fd, info: this.info(), mappings: () => this.#mappings },
      options,
    );
    this.#trackerLimit = options.maxBitmapBytes;
    return this.#tracker;
  }

  /**
   * Closes the container. Idempotent. While a group is attached it refuses
   * and changes nothing (the kernel's order: devices, then groups, then the
   * container; `using` in declaration order gets it right).
   *
   * @throws {ResourceBusyError} While a group is attached, naming it.
   */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#groups.size > 0) {
      throw new ResourceBusyError(
        `container ${this.#path}`,
        [...this.#groups].map((g) => `group ${g.path}`),
        { order: "close its devices, then its groups, then the container" },
      );
    }
    this.#release();
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
  }

  /** Closes the container (see {@linkcode VfioContainer.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
