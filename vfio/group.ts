/**
 * A VFIO group (`/dev/vfio/N`): the unit of ownership the IOMMU isolates,
 * attached to a container, and the source of device fds.
 *
 * @module
 */

import { O_CLOEXEC, O_RDWR } from "../sys/constants.ts";
import { EBUSY } from "../sys/errno.ts";
import { IoctlError, ResourceBusyError } from "../sys/errors.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE } from "./constants.ts";
import type { VfioContainer } from "./container.ts";
import { VfioDevice } from "./device.ts";
import { VfioStateError } from "./errors.ts";
import { containerLink } from "./_links.ts";
import {
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
} from "./ioctls.ts";
import { decodeGroupStatus, encodeGroupStatus } from "./uapi/group_status.ts";

/** What `VFIO_GROUP_GET_STATUS` reports. */
export interface GroupStatus {
  /** Raw `VFIO_GROUP_FLAGS_*`. */
  readonly flags: number;
  /** Every device in the group is bound to a VFIO driver (or none at all). */
  readonly viable: boolean;
  /** The group is attached to a container. */
  readonly containerSet: boolean;
}

/**
 * Resolves a group number or path to its `/dev/vfio` path.
 *
 * @param group A number such as `26`, or a path.
 * @returns The path.
 * @throws {RangeError} For a negative or fractional number.
 *
 * @example
 * ```ts
 * import { groupPath } from "./group.ts";
 * console.log(groupPath(26)); // "/dev/vfio/26"
 * ```
 */
export function groupPath(group: number | string): string {
  if (typeof group === "string") return group;
  if (!Number.isInteger(group) || group < 0) {
    throw new RangeError(`Cannot open VFIO group ${group}: not a group number`);
  }
  return `/dev/vfio/${group}`;
}

/**
 * A VFIO group.
 *
 * @example Open a device
 * ```ts ignore
 * import { VfioContainer } from "./container.ts";
 * using container = VfioContainer.open();
 * using group = container.attachGroup(26);
 * using device = group.openDevice("0000:00:03.0");
 * ```
 */
export class VfioGroup implements Disposable {
  #sys: Syscalls;
  #fd: number;
  #path: string;
  #container: VfioContainer | undefined;
  #devices = new Set<VfioDevice>();

  private constructor(sys: Syscalls, fd: number, path: string) {
    this.#sys = sys;
    this.#fd = fd;
    this.#path = path;
  }

  /**
   * Opens a group by number or path.
   *
   * @param group The group number or path.
   * @param options The syscall boundary.
   * @returns The group, not yet attached.
   * @throws {SyscallError} `ENOENT` for an unknown group, `EACCES` without
   *   permission, `EBUSY` when another process holds it.
   */
  static open(group: number | string, options: { syscalls?: Syscalls } = {}): VfioGroup {
    const sys = options.syscalls ?? defaultSyscalls();
    const path = groupPath(group);
    return new VfioGroup(sys, sys.open(path, O_RDWR | O_CLOEXEC), path);
  }

  /** The raw group fd. */
  get unsafeFd(): number {
    return this.#fd;
  }

  /** The group's path. */
  get path(): string {
    return this.#path;
  }

  /** The group number, when the path is `/dev/vfio/N`. */
  get id(): number | undefined {
    const m = /\/(\d+)$/.exec(this.#path);
    return m ? Number(m[1]) : undefined;
  }

  /** The container this group is attached to, if any. */
  get container(): VfioContainer | undefined {
    return this.#container;
  }

  /** Whether the group is closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  #check(what: string): number {
    if (this.#fd < 0) throw new VfioStateError(`Cannot ${what}: group ${this.#path} is closed`);
    return this.#fd;
  }

  /**
   * Reads `VFIO_GROUP_GET_STATUS`.
   *
   * @returns Viability and whether a container is set.
   * @throws {IoctlError} If the kernel refuses.
   */
  status(): GroupStatus {
    const buf = encodeGroupStatus();
    this.#sys.ioctl(this.#check("read status"), VFIO_GROUP_GET_STATUS, buf);
    const { flags } = decodeGroupStatus(buf);
    return {
      flags,
      viable: (flags & VFIO_GROUP_FLAGS_VIABLE) !== 0,
      containerSet: (flags & VFIO_GROUP_FLAGS_CONTAINER_SET) !== 0,
    };
  }

  /**
   * Attaches the group to a container (`VFIO_GROUP_SET_CONTAINER`).
   *
   * @param container The container.
   * @throws {IoctlError} `EINVAL` when already attached.
   */
  setContainer(container: VfioContainer): void {
    const fd = this.#check("set the container");
    const arg = new Uint8Array(4);
    new DataView(arg.buffer).setInt32(0, container.unsafeFd, true);
    this.#sys.ioctl(fd, VFIO_GROUP_SET_CONTAINER, arg);
    this.#container = container;
    containerLink(container).attached(this);
  }

  /** Refuses to detach the last group while the container's DMA mappings live. */
  #checkDetach(verb: string): void {
    const container = this.#container;
    if (container === undefined) return;
    const blockers = containerLink(container).blockers(this);
    if (blockers.length > 0) {
      throw new ResourceBusyError(`group ${this.#path}`, blockers, {
        verb,
        order: `it is the last group of container ${container.path}, whose IOMMU and every ` +
          "mapping in it the kernel releases with it: unmap them first",
      });
    }
  }

  /**
   * Detaches the group from its container (`VFIO_GROUP_UNSET_CONTAINER`).
   * The last group refuses while the container still has DMA mappings (the
   * kernel would drop them with the IOMMU).
   *
   * @throws {ResourceBusyError} For the last group while DMA mappings live.
   * @throws {IoctlError} `EBUSY` while a device fd of the group is open,
   *   `EINVAL` when not attached.
   */
  unsetContainer(): void {
    const fd = this.#check("unset the container");
    this.#checkDetach("detach");
    this.#sys.ioctl(fd, VFIO_GROUP_UNSET_CONTAINER, new Uint8Array(0));
    const container = this.#container;
    this.#container = undefined;
    if (container !== undefined) containerLink(container).detached(this);
  }

  /**
   * Opens a device of the group (`VFIO_GROUP_GET_DEVICE_FD`).
   *
   * @param name The device name, such as the PCI address `"0000:00:03.0"`.
   * @returns The device; dispose it before the group.
   * @throws {IoctlError} `ENODEV` for an unknown name, `EINVAL` before the
   *   container has an IOMMU.
   */
  openDevice(name: string): VfioDevice {
    const fd = this.#check("open a device");
    const arg = new TextEncoder().encode(`${name}\0`);
    const deviceFd = this.#sys.ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, arg);
    const device = new VfioDevice(this.#sys, deviceFd, name, () => this.#devices.delete(device));
    this.#devices.add(device);
    return device;
  }

  /**
   * Closes the group: detaches it from its container, then closes the fd.
   * Idempotent. While a device of the group is open, or (for the last group
   * of its container) while the container has DMA mappings, it refuses and
   * changes nothing: close those first (`using` in declaration order does).
   *
   * @throws {ResourceBusyError} Naming the open devices or the live mappings.
   */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#devices.size > 0) {
      throw new ResourceBusyError(
        `group ${this.#path}`,
        [...this.#devices].map((d) => `device ${d.name}`),
        { order: "close its devices first" },
      );
    }
    this.#checkDetach("close");
    let failure: unknown;
    if (this.#container !== undefined) {
      try {
        this.unsetContainer();
      } catch (e) {
        // EBUSY: a device this object did not open is still open (the kernel's order).
        if (e instanceof IoctlError && e.errno === EBUSY) throw e;
        // Anything else: releasing the fd detaches the group in the kernel anyway.
        failure = e;
        const container = this.#container;
        this.#container = undefined;
        if (container !== undefined) containerLink(container).detached(this);
      }
    }
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
    if (failure !== undefined) throw failure;
  }

  /** Closes the group (see {@linkcode VfioGroup.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
