/**
 * The fake VFIO container (`/dev/vfio/vfio`, drivers/vfio/container.c):
 * API version, extensions, `VFIO_SET_IOMMU`, and pass-through of every other
 * ioctl to the IOMMU backend once one is set.
 *
 * @module
 */

import { EINVAL, ENODEV } from "../../sys/errno.ts";
import {
  VFIO_API_VERSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
} from "../../vfio/constants.ts";
import { VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_SET_IOMMU } from "../../vfio/ioctls.ts";
import type { FakeGroup } from "./group.ts";
import { type Type1Config, VFIO_TYPE1_NESTING_IOMMU } from "./options.ts";
import { Type1Iommu } from "./type1.ts";
import { fail, type UserArg } from "./user_memory.ts";

/** One container. It outlives its fd while groups are attached (they hold a reference). */
export class FakeContainer {
  /** The resolved IOMMU configuration. */
  readonly config: Type1Config;
  /** Attached groups. */
  readonly groups: Set<FakeGroup> = new Set();
  /** The IOMMU backend, once `VFIO_SET_IOMMU` succeeded. */
  iommu: Type1Iommu | null = null;

  /**
   * Creates an empty container (`vfio_fops_open`).
   *
   * @param config The IOMMU configuration.
   */
  constructor(config: Type1Config) {
    this.config = config;
  }

  /**
   * `vfio_fops_unl_ioctl`.
   *
   * @param code The request number.
   * @param arg The argument as a user pointer.
   * @param value The argument as an integer.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  ioctl(code: number, arg: UserArg, value: bigint): number {
    switch (code) {
      case Number(VFIO_GET_API_VERSION.code):
        return VFIO_API_VERSION;
      case Number(VFIO_CHECK_EXTENSION.code):
        return this.checkExtension(value);
      case Number(VFIO_SET_IOMMU.code):
        return this.#setIommu(value);
      default:
        // Before SET_IOMMU there is no backend: the container answers EINVAL.
        if (this.iommu === null) fail(EINVAL);
        return this.iommu.ioctl(code, arg);
    }
  }

  /**
   * `VFIO_CHECK_EXTENSION`: the type1 driver's answer, with `iommu` NULL before
   * SET_IOMMU (DMA_CC_IOMMU is then 0).
   *
   * @param ext The extension number.
   * @returns 0 or 1 (or an override).
   */
  checkExtension(ext: bigint): number {
    if (ext > 0xffff_ffffn) return 0;
    const n = Number(ext);
    if (n === VFIO_DMA_CC_IOMMU && this.iommu === null) return 0;
    return this.config.extensions.get(n) ?? 0;
  }

  #setIommu(type: bigint): number {
    if (this.groups.size === 0 || this.iommu !== null) fail(EINVAL);
    // No driver claims the type: the initial -ENODEV of vfio_ioctl_set_iommu.
    if (this.checkExtension(type) <= 0) fail(ENODEV);
    const n = Number(type);
    // type1 claims UNMAP_ALL etc. in CHECK_EXTENSION but its open() refuses them.
    if (n !== VFIO_TYPE1_IOMMU && n !== VFIO_TYPE1v2_IOMMU && n !== VFIO_TYPE1_NESTING_IOMMU) {
      fail(EINVAL);
    }
    const iommu = new Type1Iommu(this.config, n !== VFIO_TYPE1_IOMMU);
    for (const g of this.groups) iommu.attachGroup(g.id, g.emulated);
    this.iommu = iommu;
    return 0;
  }

  /**
   * Attaches a group (`vfio_container_attach_group`).
   *
   * @param group The group.
   */
  attach(group: FakeGroup): void {
    this.iommu?.attachGroup(group.id, group.emulated);
    this.groups.add(group);
  }

  /**
   * Detaches a group; the last one deprivileges the container and releases
   * the IOMMU with every mapping (`vfio_group_detach_container`).
   *
   * @param group The group.
   */
  detach(group: FakeGroup): void {
    this.iommu?.detachGroup(group.id);
    this.groups.delete(group);
    if (this.groups.size === 0 && this.iommu !== null) {
      this.iommu.removeAll();
      this.iommu = null;
    }
  }
}
