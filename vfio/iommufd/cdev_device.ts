/**
 * A VFIO device opened through its cdev (`/dev/vfio/devices/vfioN`) and bound
 * to iommufd instead of a type1 container: `VFIO_DEVICE_BIND_IOMMUFD`,
 * `VFIO_DEVICE_ATTACH_IOMMUFD_PT`, `VFIO_DEVICE_DETACH_IOMMUFD_PT`. Once
 * bound, it is a {@linkcode VfioDevice}: regions, config space, reset.
 *
 * Requires a kernel with `CONFIG_VFIO_DEVICE_CDEV` and read-write access to
 * the cdev.
 *
 * @module
 */

import { O_CLOEXEC, O_RDWR } from "../../sys/constants.ts";
import { defaultSyscalls } from "../../sys/libc.ts";
import type { Syscalls } from "../../sys/syscalls.ts";
import { VfioDevice } from "../device.ts";
import { VfioStateError } from "../errors.ts";
import type { HwPagetable } from "./hw_pagetable.ts";
import type { IommufdIoas } from "./ioas.ts";
import type { Iommufd } from "./iommufd.ts";
import { type ContextChild, type ContextLink, contextLink } from "./_context.ts";
import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
} from "./ioctls.ts";
import {
  decodeAttachPtId,
  decodeBindDevId,
  encodeAttachIommufdPt,
  encodeBindIommufd,
  encodeDetachIommufdPt,
} from "./uapi/vfio_cdev.ts";

/** Where the VFIO cdevs live. */
export const VFIO_CDEV_DIR = "/dev/vfio/devices";

/**
 * Finds the cdev of a device bound to a VFIO driver, from sysfs
 * (`<device>/vfio-dev/vfioN`): a PCI address or an mdev UUID.
 *
 * @param name The device name, such as `"0000:00:02.0"`.
 * @param options `sysfs`: the sysfs root (default `/sys`).
 * @returns The cdev path, such as `/dev/vfio/devices/vfio0`.
 * @throws {VfioStateError} When the device has no VFIO cdev (not bound to a
 *   VFIO driver, or a kernel without `CONFIG_VFIO_DEVICE_CDEV`).
 * @throws {Deno.errors.NotCapable} Without the permission to read sysfs
 *   (Deno asks `--allow-all` for `/sys`).
 *
 * @example
 * ```ts ignore
 * import { vfioCdevPath } from "./cdev_device.ts";
 * console.log(vfioCdevPath("0000:00:02.0")); // "/dev/vfio/devices/vfio0"
 * ```
 */
export function vfioCdevPath(name: string, options: { sysfs?: string } = {}): string {
  const sysfs = options.sysfs ?? "/sys";
  for (const bus of ["pci", "mdev", "platform"]) {
    const dir = `${sysfs}/bus/${bus}/devices/${name}/vfio-dev`;
    try {
      const cdev = [...Deno.readDirSync(dir)].map((e) => e.name).find((n) => /^vfio\d+$/.test(n));
      if (cdev !== undefined) return `${VFIO_CDEV_DIR}/${cdev}`;
    } catch (e) {
      // Not on this bus; but a sysfs read Deno does not permit (it wants
      // --allow-all for /sys) is not an absent device.
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) throw e;
    }
  }
  throw new VfioStateError(
    `Cannot find the VFIO cdev of ${name}: no ${sysfs}/bus/*/devices/${name}/vfio-dev ` +
      "(bind it to a VFIO driver; the kernel needs CONFIG_VFIO_DEVICE_CDEV)",
  );
}

/**
 * A VFIO cdev device. Bind it to an iommufd, attach it to an IOAS or HWPT,
 * then use it as any {@linkcode VfioDevice}. Closing it detaches and unbinds.
 * While bound it keeps its iommufd from closing, and while attached the IOAS
 * or HWPT it is attached to.
 *
 * @example edu through its cdev
 * ```ts ignore
 * using iommufd = Iommufd.open();
 * using ioas = iommufd.allocIoas();
 * using device = VfioCdevDevice.open(vfioCdevPath("0000:00:02.0"));
 * device.bind(iommufd);
 * device.attach(ioas);
 * ```
 */
export class VfioCdevDevice extends VfioDevice {
  #sys: Syscalls;
  #devId: number | undefined;
  #ptId: number | undefined;
  #target: number | undefined;
  #context: ContextLink | undefined;
  #child: ContextChild;

  private constructor(sys: Syscalls, fd: number, path: string) {
    super(sys, fd, path);
    this.#sys = sys;
    this.#child = {
      label: `device ${path}`,
      uses: () => this.#target === undefined ? [] : [this.#target],
    };
  }

  /**
   * Opens a VFIO cdev.
   *
   * @param path The cdev, such as `/dev/vfio/devices/vfio0` (see {@linkcode vfioCdevPath}).
   * @param options The syscall boundary.
   * @returns The device, not yet bound.
   * @throws {SyscallError} `ENOENT` for no such cdev, `EACCES` without
   *   permission, `EBUSY` when the device is open through its group.
   */
  static open(path: string, options: { syscalls?: Syscalls } = {}): VfioCdevDevice {
    const sys = options.syscalls ?? defaultSyscalls();
    return new VfioCdevDevice(sys, sys.open(path, O_RDWR | O_CLOEXEC), path);
  }

  /** The device's iommufd id once bound (`dev_id` for HWPT allocation and hw info). */
  get devId(): number | undefined {
    return this.#devId;
  }

  /** The HWPT the device is attached to, once attached. */
  get attachedPtId(): number | undefined {
    return this.#ptId;
  }

  #open(what: string): number {
    if (this.closed) throw new VfioStateError(`Cannot ${what}: device ${this.name} is closed`);
    return this.unsafeFd;
  }

  /**
   * Binds the device to an iommufd (`VFIO_DEVICE_BIND_IOMMUFD`).
   *
   * @param iommufd The context.
   * @returns The device's iommufd id.
   * @throws {IoctlError} `EINVAL` when already bound, `EPERM`/`EBUSY` when the
   *   device is in use elsewhere.
   */
  bind(iommufd: Iommufd): number {
    const fd = this.#open("bind to iommufd");
    const context = contextLink(iommufd);
    const buf = encodeBindIommufd(context.fd("bind a device"));
    this.#sys.ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, buf);
    this.#devId = decodeBindDevId(buf);
    this.#context = context;
    context.adopt(this.#child);
    return this.#devId;
  }

  /**
   * Attaches the bound device to an IOAS (the kernel makes or reuses a HWPT
   * for it) or to a HWPT (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`). Attaching again
   * replaces the HWPT.
   *
   * @param pt An IOAS, a HWPT, or an object id.
   * @returns The id of the HWPT the device is now attached to.
   * @throws {VfioStateError} Before `bind`.
   * @throws {IoctlError} `EINVAL` for an incompatible HWPT (one allocated for
   *   dirty tracking and a device whose IOMMU cannot), `ENOENT` unknown id.
   */
  attach(pt: number | IommufdIoas | HwPagetable): number {
    const fd = this.#open("attach to an IOAS");
    if (this.#devId === undefined) {
      throw new VfioStateError(`Cannot attach device ${this.name}: bind it to an iommufd first`);
    }
    const target = typeof pt === "number" ? pt : pt.id;
    const buf = encodeAttachIommufdPt(target);
    this.#sys.ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, buf);
    this.#ptId = decodeAttachPtId(buf);
    // It uses what it was attached to (an IOAS through its automatic HWPT).
    this.#target = target;
    return this.#ptId;
  }

  /**
   * Detaches the device from its IOAS or HWPT (`VFIO_DEVICE_DETACH_IOMMUFD_PT`):
   * its DMA is blocked until attached again.
   *
   * @throws {IoctlError} If the kernel refuses.
   */
  detach(): void {
    const fd = this.#open("detach from iommufd");
    this.#sys.ioctl(fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, encodeDetachIommufdPt());
    this.#ptId = undefined;
    this.#target = undefined;
  }

  /**
   * Closes the device (see {@linkcode VfioDevice.close}); the kernel detaches
   * and unbinds it, which frees its IOAS or HWPT and its iommufd to close.
   *
   * @throws {ResourceBusyError} While a region mapping is mapped.
   * @throws {SyscallError} From `close` (the fd is released anyway).
   */
  override close(): void {
    if (this.closed) return;
    try {
      super.close();
    } finally {
      if (this.closed && this.#context !== undefined) {
        this.#context.release(this.#child);
        this.#context = undefined;
        this.#ptId = undefined;
        this.#target = undefined;
      }
    }
  }
}
