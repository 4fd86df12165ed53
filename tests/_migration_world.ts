// Shared set-up for the device migration tests: a FakeKernel with one or two
// groups whose devices carry FakeMigrationDevice drivers.
import assert from "node:assert/strict";
import { VfioContainer } from "../vfio/container.ts";
import type { VfioDevice } from "../vfio/device.ts";
import type { VfioGroup } from "../vfio/group.ts";
import { FakeKernel, type FakeMigrationDevice } from "./fake_kernel.ts";

/** The source device (group 26). */
export const SRC = "0000:00:03.0";
/** The destination device (group 27). */
export const DST = "0000:00:04.0";

/**
 * A kernel with group 26 (SRC) and, when given, group 27 (DST).
 *
 * @param src The driver of SRC, or undefined for plain vfio-pci.
 * @param dst The driver of DST.
 * @returns The kernel.
 */
export function migrationKernel(src?: FakeMigrationDevice, dst?: FakeMigrationDevice): FakeKernel {
  return new FakeKernel({
    groups: [
      { id: 26, devices: [{ name: SRC, ...(src ? { features: src } : {}) }] },
      { id: 27, devices: [{ name: DST, ...(dst ? { features: dst } : {}) }] },
    ],
  });
}

/** A container, a group and its device; dispose in reverse order. */
export class Opened implements Disposable {
  /** The container. */
  readonly container: VfioContainer;
  /** The group. */
  readonly group: VfioGroup;
  /** The device. */
  readonly device: VfioDevice;

  /**
   * Opens `/dev/vfio/vfio`, the group and its device.
   *
   * @param kernel The fake kernel.
   * @param group The group number.
   * @param name The device name.
   */
  constructor(kernel: FakeKernel, group: number, name: string) {
    this.container = VfioContainer.open({ syscalls: kernel });
    this.group = this.container.attachGroup(group);
    this.device = this.group.openDevice(name);
  }

  /** Closes device, group, container. */
  [Symbol.dispose](): void {
    this.device.close();
    this.group.close();
    this.container.close();
  }
}

/**
 * Asserts the kernel has exactly `n` open fds, naming them when not.
 *
 * @param kernel The fake kernel.
 * @param n The expected count.
 */
export function assertFds(kernel: FakeKernel, n: number): void {
  assert.equal(kernel.openFds, n, `open fds: ${kernel.openFdDescriptions().join(", ")}`);
}
