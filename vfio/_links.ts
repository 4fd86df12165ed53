// What the VFIO objects of this folder may do to each other without a public
// method: a group tells its container it attached or is detaching; a
// container tells its leases and its dirty tracker that the kernel dropped
// them. Each object registers its side here when it is made; nothing outside
// vfio/ imports this file.

import type { VfioGroup } from "./group.ts";

/** A container's side of the link with its groups. */
export interface ContainerLink {
  /** The group attached (`VFIO_GROUP_SET_CONTAINER` succeeded). */
  attached(group: VfioGroup): void;
  /**
   * What keeps `group` from detaching now: the container's live DMA
   * mappings when it is the last group (the kernel releases the IOMMU, and
   * every mapping in it, with the last group). Empty when it may detach.
   */
  blockers(group: VfioGroup): string[];
  /** The group detached (or its fd was released). */
  detached(group: VfioGroup): void;
}

const containers = new WeakMap<object, ContainerLink>();
const releasers = new WeakMap<object, () => void>();

/**
 * Registers a container's side of the link.
 *
 * @param container The container.
 * @param link Its side.
 */
export function linkContainer(container: object, link: ContainerLink): void {
  containers.set(container, link);
}

/**
 * A container's side of the link.
 *
 * @param container The container.
 * @returns Its side.
 */
export function containerLink(container: object): ContainerLink {
  const link = containers.get(container);
  if (link === undefined) throw new TypeError("Cannot link to an object that is not a container");
  return link;
}

/**
 * Registers what marks an object released without a syscall (a lease the
 * kernel dropped, a tracker whose IOMMU is gone).
 *
 * @param object The lease or tracker.
 * @param release Marks it released.
 */
export function onRelease(object: object, release: () => void): void {
  releasers.set(object, release);
}

/**
 * Marks an object released without a syscall.
 *
 * @param object The lease or tracker.
 */
export function markReleased(object: object): void {
  releasers.get(object)?.();
}
