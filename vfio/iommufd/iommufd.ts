/**
 * `/dev/iommu`: the iommufd context that IOASes, hardware page tables and
 * bound VFIO cdev devices live in.
 *
 * Requires `--allow-ffi` and read-write access to `/dev/iommu` (a kernel
 * built with `CONFIG_IOMMUFD`), unless a fake is passed as `syscalls`.
 *
 * @module
 */

import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
} from "../../sys/constants.ts";
import { ENOENT, EOPNOTSUPP } from "../../sys/errno.ts";
import { IoctlError, ResourceBusyError, SyscallError } from "../../sys/errors.ts";
import { hostView } from "../../sys/host_memory.ts";
import { defaultSyscalls } from "../../sys/libc.ts";
import type { Syscalls } from "../../sys/syscalls.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../errors.ts";
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMUFD_PATH,
} from "./constants.ts";
import { type ContextChild, linkContext } from "./_context.ts";
import { HwPagetable } from "./hw_pagetable.ts";
import { IommufdIoas } from "./ioas.ts";
import { IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_IOAS_ALLOC } from "./ioctls.ts";
import {
  decodeHwInfo,
  decodeHwInfoVtd,
  decodeHwptAllocId,
  encodeHwInfo,
  encodeHwptAlloc,
  type HwInfoVtd,
  IOMMU_HW_INFO_VTD_SIZE,
} from "./uapi/hwpt.ts";
import { decodeIoasAlloc, encodeDestroy, encodeIoasAlloc } from "./uapi/ioas.ts";

/** Options of {@linkcode Iommufd.open}. */
export interface IommufdOptions {
  /** The device node (default `/dev/iommu`). */
  path?: string;
  /** The syscall boundary; defaults to libc. */
  syscalls?: Syscalls;
}

/** What `IOMMU_GET_HW_INFO` says about the IOMMU behind a device. */
export interface IommuHwInfo {
  /** `IOMMU_HW_INFO_TYPE_*` (`IOMMU_HW_INFO_TYPE_INTEL_VTD`, the selftest's `0xfeedbeef`). */
  readonly dataType: number;
  /** Raw `IOMMU_HW_CAP_*`. */
  readonly capabilities: bigint;
  /** `IOMMU_HW_CAP_DIRTY_TRACKING`: the IOMMU can track the device's DMA writes. */
  readonly dirtyTracking: boolean;
  /** `out_max_pasid_log2`. */
  readonly maxPasidLog2: number;
  /** The vendor data the kernel wrote (for VT-d, `struct iommu_hw_info_vtd`). */
  readonly data: Uint8Array;
  /** The VT-d registers, when `dataType` is `IOMMU_HW_INFO_TYPE_INTEL_VTD`. */
  readonly vtd?: HwInfoVtd;
}

/** Options of {@linkcode Iommufd.allocHwpt}. */
export interface HwptAllocOptions {
  /** The device (its iommufd `dev_id`, from binding) the page table is for. */
  devId: number;
  /** The IOAS it translates through (an id or the object). */
  ioas: number | IommufdIoas;
  /** Ask for `IOMMU_HWPT_ALLOC_DIRTY_TRACKING` (default false). */
  dirtyTracking?: boolean;
}

const VENDOR_DATA_BYTES = 64;

/**
 * An iommufd context (`/dev/iommu`).
 *
 * It refuses to close while its objects live (IOASes, HWPTs, bound cdev
 * devices): close devices, then HWPTs, then IOASes, then the context, as
 * `using` in declaration order does.
 *
 * @example Map memory into an IOAS
 * ```ts ignore
 * import { Iommufd } from "./iommufd.ts";
 * import { iova } from "../../sys/address.ts";
 * using iommufd = Iommufd.open();
 * using ioas = iommufd.allocIoas();
 * using dma = ioas.map(iova(1n << 24n), { vaddr, size: 0x10000n });
 * ```
 */
export class Iommufd implements Disposable {
  #sys: Syscalls;
  #fd: number;
  #path: string;
  #objects = new Set<ContextChild>();

  private constructor(sys: Syscalls, fd: number, path: string) {
    this.#sys = sys;
    this.#fd = fd;
    this.#path = path;
    linkContext(this, {
      fd: (what) => this.#fdFor(what),
      adopt: (child) => void this.#objects.add(child),
      release: (child) => void this.#objects.delete(child),
      usersOf: (id) => [...this.#objects].filter((o) => o.uses().includes(id)).map((o) => o.label),
    });
  }

  /**
   * Opens `/dev/iommu`.
   *
   * @param options The path and the syscall boundary.
   * @returns The context.
   * @throws {SyscallError} `ENOENT` when the kernel has no iommufd
   *   (`CONFIG_IOMMUFD`), `EACCES` without read-write permission on the node.
   */
  static open(options: IommufdOptions = {}): Iommufd {
    const sys = options.syscalls ?? defaultSyscalls();
    const path = options.path ?? IOMMUFD_PATH;
    try {
      return new Iommufd(sys, sys.open(path, O_RDWR | O_CLOEXEC), path);
    } catch (e) {
      if (e instanceof SyscallError && e.errno === ENOENT && path === IOMMUFD_PATH) {
        throw new SyscallError("open", ENOENT, {
          path: `${path} (the kernel has no iommufd: CONFIG_IOMMUFD is off)`,
          cause: e,
        });
      }
      throw e;
    }
  }

  /**
   * Adopts an iommufd fd opened elsewhere; the object owns it from now on.
   *
   * @param fd An open `/dev/iommu` fd.
   * @param options The syscall boundary.
   * @returns The context.
   */
  static unsafeFromFd(fd: number, options: { syscalls?: Syscalls } = {}): Iommufd {
    return new Iommufd(options.syscalls ?? defaultSyscalls(), fd, `fd ${fd}`);
  }

  /** The raw fd; the only way to get it out. */
  get unsafeFd(): number {
    return this.#fd;
  }

  /** The syscall boundary (objects of this context share it). */
  get syscalls(): Syscalls {
    return this.#sys;
  }

  /** The path it was opened from. */
  get path(): string {
    return this.#path;
  }

  /** Whether the context is closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  #fdFor(what: string): number {
    if (this.#fd < 0) throw new VfioStateError(`Cannot ${what}: ${this.#path} is closed`);
    return this.#fd;
  }

  /**
   * Allocates an I/O address space (`IOMMU_IOAS_ALLOC`).
   *
   * @returns The IOAS; dispose it (`IOMMU_DESTROY`) after what is attached to it.
   * @throws {IoctlError} If the kernel refuses.
   */
  allocIoas(): IommufdIoas {
    const buf = encodeIoasAlloc();
    this.#sys.ioctl(this.#fdFor("allocate an IOAS"), IOMMU_IOAS_ALLOC, buf);
    return new IommufdIoas(this, decodeIoasAlloc(buf));
  }

  /**
   * Reads `IOMMU_GET_HW_INFO` for a bound device: the IOMMU's type, its
   * vendor registers and whether it can track dirty pages.
   *
   * @param devId The device's iommufd id.
   * @returns The info.
   * @throws {IoctlError} `ENOENT` for an unknown id.
   */
  hwInfo(devId: number): IommuHwInfo {
    const fd = this.#fdFor("read IOMMU hardware info");
    // The kernel copies the vendor data to a user pointer: memory that does not move.
    const mem = this.#sys.mmap(4096n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    try {
      const buf = encodeHwInfo({ devId, dataLen: VENDOR_DATA_BYTES, dataUptr: mem });
      this.#sys.ioctl(fd, IOMMU_GET_HW_INFO, buf);
      const reply = decodeHwInfo(buf);
      // SAFETY: `mem` is mapped until the finally block; the copy outlives it.
      const data = hostView(mem, Math.min(reply.dataLen, VENDOR_DATA_BYTES)).slice();
      const vtd = reply.dataType === IOMMU_HW_INFO_TYPE_INTEL_VTD &&
          data.byteLength >= IOMMU_HW_INFO_VTD_SIZE
        ? decodeHwInfoVtd(data)
        : undefined;
      return {
        dataType: reply.dataType,
        capabilities: reply.capabilities,
        dirtyTracking: (reply.capabilities & BigInt(IOMMU_HW_CAP_DIRTY_TRACKING)) !== 0n,
        maxPasidLog2: reply.maxPasidLog2,
        data,
        ...(vtd ? { vtd } : {}),
      };
    } finally {
      this.#sys.munmap(mem, 4096n);
    }
  }

  /**
   * Allocates a hardware page table for a device over an IOAS
   * (`IOMMU_HWPT_ALLOC`), with dirty tracking when asked.
   *
   * @param options The device, the IOAS, and whether to track dirty pages.
   * @returns The page table; attach the device to it, dispose it after detaching.
   * @throws {DirtyTrackingUnavailableError} With `dirtyTracking` when the IOMMU
   *   cannot track dirty pages (`EOPNOTSUPP`: no `IOMMU_HW_CAP_DIRTY_TRACKING`,
   *   as behind QEMU's emulated VT-d); the cause is the `IoctlError`.
   * @throws {IoctlError} For other refusals (`ENOENT` unknown ids, `EINVAL`).
   */
  allocHwpt(options: HwptAllocOptions): HwPagetable {
    const fd = this.#fdFor("allocate a hardware page table");
    const ptId = typeof options.ioas === "number" ? options.ioas : options.ioas.id;
    const dirty = options.dirtyTracking === true;
    const buf = encodeHwptAlloc({
      flags: dirty ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0,
      devId: options.devId,
      ptId,
    });
    try {
      this.#sys.ioctl(fd, IOMMU_HWPT_ALLOC, buf);
    } catch (e) {
      if (dirty && e instanceof IoctlError && e.errno === EOPNOTSUPP) {
        throw new DirtyTrackingUnavailableError(
          `the IOMMU behind device ${options.devId} cannot track dirty pages ` +
            "(IOMMU_HWPT_ALLOC with IOMMU_HWPT_ALLOC_DIRTY_TRACKING: EOPNOTSUPP)",
          { cause: e },
        );
      }
      throw e;
    }
    return new HwPagetable(this, {
      id: decodeHwptAllocId(buf),
      ioasId: ptId,
      dirtyTracking: dirty,
    });
  }

  /**
   * Destroys an object by id (`IOMMU_DESTROY`); the objects' own `close()`
   * calls this.
   *
   * @param id The object id.
   * @throws {IoctlError} `EBUSY` while something uses it, `ENOENT` for an unknown id.
   */
  destroy(id: number): void {
    this.#sys.ioctl(this.#fdFor(`destroy object ${id}`), IOMMU_DESTROY, encodeDestroy(id));
  }

  /**
   * Closes the context. Idempotent. While an IOAS, a HWPT or a bound cdev
   * device of it is live it refuses and changes nothing.
   *
   * @throws {ResourceBusyError} Naming what is still open.
   */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#objects.size > 0) {
      throw new ResourceBusyError(this.#path, [...this.#objects].map((o) => o.label), {
        order: "close its devices, then its HWPTs, then its IOASes, then the context",
      });
    }
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
  }

  /** Closes the context (see {@linkcode Iommufd.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
