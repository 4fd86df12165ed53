/**
 * The fake VFIO group (`/dev/vfio/<id>`, drivers/vfio/group.c, 6.1 rules).
 *
 * Device fds hold a reference on the group file: closing the group fd while a
 * device fd is open keeps the group open (and attached) until the last device
 * fd closes, and a second `open` of the group fails with EBUSY meanwhile.
 *
 * @module
 */

import { EBADF, EBUSY, EINVAL, ENODEV, ENOTTY, EPERM } from "../../sys/errno.ts";
import { VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE } from "../../vfio/constants.ts";
import {
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
} from "../../vfio/ioctls.ts";
import { FakeContainer } from "./container.ts";
import type { FakeDevice } from "./device.ts";
import { fail, u32, type UserArg } from "./user_memory.ts";

/** What a group needs from the kernel around it. */
export interface GroupHost {
  /**
   * Looks an fd up.
   *
   * @param fd The fd.
   * @returns The container behind it, `"other"` for another fake fd, undefined when closed.
   */
  lookup(fd: number): FakeContainer | "other" | undefined;
  /**
   * Installs a new device fd.
   *
   * @param device The device.
   * @returns The fd.
   */
  installDevice(device: FakeDevice): number;
}

/** One IOMMU group. */
export class FakeGroup {
  /** The group number. */
  readonly id: number;
  /** Whether every device is bound to vfio (not claimed by a host driver). */
  readonly viable: boolean;
  /** The devices. */
  readonly devices: FakeDevice[] = [];
  /** The group fd is open. */
  fdOpen = false;
  /** Open device fds of this group. */
  deviceFds = 0;
  /** The container, when set. */
  container: FakeContainer | null = null;
  /** An emulated IOMMU group (an mdev's): no IOMMU domain, pinned dirty scope. */
  readonly emulated: boolean;

  /**
   * Creates a group.
   *
   * @param id The group number.
   * @param viable Viability.
   * @param emulated Whether it is an emulated IOMMU group.
   */
  constructor(id: number, viable: boolean, emulated = false) {
    this.id = id;
    this.viable = viable;
    this.emulated = emulated;
  }

  /** The group file is open (its fd, or a device fd holding it). */
  get opened(): boolean {
    return this.fdOpen || this.deviceFds > 0;
  }

  /** Releases the group file (`vfio_group_fops_release`) once nothing holds it. */
  maybeRelease(): void {
    if (this.opened) return;
    this.container?.detach(this);
    this.container = null;
  }

  /**
   * `vfio_group_fops_unl_ioctl`.
   *
   * @param code The request number.
   * @param arg The user argument.
   * @param host The kernel.
   * @returns The return value (a new fd for GET_DEVICE_FD).
   * @throws {KernelError} The errno.
   */
  ioctl(code: number, arg: UserArg, host: GroupHost): number {
    switch (code) {
      case Number(VFIO_GROUP_GET_STATUS.code):
        return this.#getStatus(arg);
      case Number(VFIO_GROUP_SET_CONTAINER.code):
        return this.#setContainer(arg, host);
      case Number(VFIO_GROUP_UNSET_CONTAINER.code):
        if (this.container === null) fail(EINVAL);
        if (this.deviceFds > 0) fail(EBUSY); // container_users != 1
        this.container.detach(this);
        this.container = null;
        return 0;
      case Number(VFIO_GROUP_GET_DEVICE_FD.code):
        return this.#getDeviceFd(arg, host);
      default:
        return fail(ENOTTY);
    }
  }

  #getStatus(arg: UserArg): number {
    const head = arg.read(0, 8);
    if (u32(head, 0) < 8) fail(EINVAL);
    let flags = 0;
    if (this.container !== null) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (this.viable) flags = VFIO_GROUP_FLAGS_VIABLE;
    const out = new Uint8Array(8);
    out.set(head.subarray(0, 4));
    new DataView(out.buffer).setUint32(4, flags, true);
    arg.write(0, out);
    return 0;
  }

  #setContainer(arg: UserArg, host: GroupHost): number {
    const fd = new DataView(arg.read(0, 4).buffer).getInt32(0, true);
    const target = host.lookup(fd);
    if (target === undefined) fail(EBADF);
    if (this.container !== null) fail(EINVAL);
    // 6.1: "Sanity check, is this really our fd?" answers EINVAL (6.2+: EBADFD).
    if (!(target instanceof FakeContainer)) fail(EINVAL);
    // iommu_group_claim_dma_owner fails while a host driver owns a device.
    if (!this.viable) fail(EPERM);
    target.attach(this);
    this.container = target;
    return 0;
  }

  #getDeviceFd(arg: UserArg, host: GroupHost): number {
    const name = arg.readCString(4096);
    const device = this.devices.find((d) => d.name === name);
    if (device === undefined) fail(ENODEV);
    // vfio_group_use_container: a container with an IOMMU is required.
    if (this.container === null || this.container.iommu === null) fail(EINVAL);
    device.open();
    this.deviceFds++;
    return host.installDevice(device);
  }
}
