/**
 * Helpers for real-kernel test files: they run in the QEMU guest that
 * `deno task test:kernel` boots (or on a host with a VFIO group), never
 * skipped.
 *
 * @module
 */

/** A real-kernel test was started outside the harness. */
export class KernelEnvError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is missing and how to run the test instead.
   */
  constructor(message: string) {
    super(message);
    this.name = "KernelEnvError";
  }
}

/**
 * Returns the IOMMU group the harness bound a vfio-pci device to
 * (`DENO_VMM_VFIO_GROUP`); `/dev/vfio/<group>` exists.
 *
 * @returns The group number.
 * @throws {KernelEnvError} When the variable is unset or not a number, so
 * the test fails rather than skips.
 *
 * @example Open the group
 * ```ts ignore
 * import { kernelGroup } from "./env.ts";
 * const path = `/dev/vfio/${kernelGroup()}`;
 * ```
 */
export function kernelGroup(): number {
  const value = Deno.env.get("DENO_VMM_VFIO_GROUP");
  if (value === undefined || !/^\d+$/.test(value)) {
    const why = value === undefined ? "is not set" : `is not a group number (${value})`;
    throw new KernelEnvError(
      `Cannot run a real-kernel test: DENO_VMM_VFIO_GROUP ${why}; run it with ` +
        "`deno task test:kernel` (boots a QEMU guest with a vfio-pci device), " +
        "or `deno task test:kernel --host --group N` on a host with a VFIO group",
    );
  }
  return Number(value);
}

/** Whether this process runs inside the harness's QEMU guest. */
export function inGuest(): boolean {
  return Deno.env.get("DENO_VMM_IN_GUEST") === "1";
}

/** The boot profiles of `tests/kernel/harness/profiles.ts`. */
export type BootProfileName =
  | "stock-6.1"
  | "stock-6.1-kvm"
  | "custom-6.12"
  | "custom-6.12-viommu"
  | "stock-6.12";

/**
 * Returns the boot profile the harness booted this guest with
 * (`DENO_VMM_KERNEL_PROFILE`).
 *
 * @param expected When given, the profiles the calling test can run in.
 * @returns The profile name.
 * @throws {KernelEnvError} Outside the harness, or in a profile not expected,
 * so the test fails rather than skips.
 */
export function bootProfile(...expected: BootProfileName[]): BootProfileName {
  const value = Deno.env.get("DENO_VMM_KERNEL_PROFILE") as BootProfileName | undefined;
  if (value === undefined) {
    throw new KernelEnvError(
      "Cannot run a real-kernel test: DENO_VMM_KERNEL_PROFILE is not set; run it with " +
        "`deno task test:kernel`, which boots the profile named on the file's " +
        "`// kernel-profiles:` line",
    );
  }
  if (expected.length > 0 && !expected.includes(value)) {
    throw new KernelEnvError(
      `Cannot run this test in boot profile ${value}: it needs ${expected.join(" or ")}`,
    );
  }
  return value;
}
