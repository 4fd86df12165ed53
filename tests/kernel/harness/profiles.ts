/**
 * Boot profiles: which kernel a guest boots and what machine it has. Each
 * real-kernel test file names the profiles it runs in on a marker line near
 * its top,
 *
 * ```ts ignore
 * // kernel-profiles: custom-6.12-viommu
 * ```
 *
 * and a file without a marker runs in `stock-6.1`. The harness boots one
 * guest per profile that has files and adds up their results.
 *
 * @module
 */

import { HarnessError } from "./exec.ts";
import type { MachineOptions } from "./qemu.ts";

/** The kernels the harness can boot. */
export type KernelKind = "stock-6.1" | "custom-6.12" | "stock-6.12";

/** One way to boot the guest. */
export interface BootProfile {
  /** The name used on marker lines. */
  readonly name: string;
  /** What it is for, in the harness's output. */
  readonly description: string;
  /** The kernel it boots. */
  readonly kernel: KernelKind;
  /** The machine. */
  readonly machine: MachineOptions;
  /** Test modules (`tests/kernel/modules/<name>`) built for the kernel and loaded by `/init`. */
  readonly modules: readonly string[];
}

/** Every profile, in boot order. */
export const PROFILES: readonly BootProfile[] = Object.freeze([
  {
    name: "stock-6.1",
    description: "Debian's 6.1 kernel, emulated VT-d, edu on vfio-pci",
    kernel: "stock-6.1",
    machine: { viommu: true, edu: true },
    modules: [],
  },
  {
    // The nested-KVM tests get a guest of their own. Under QEMU 7.2's
    // multi-threaded TCG, a stock-6.1 guest that had run the VFIO, DMA and
    // memory files first locked up inside a KVM test in 2 of 5 full runs
    // (soft lockups on both vCPUs, or silence); booted for the KVM files
    // alone it passed 7 of 7.
    name: "stock-6.1-kvm",
    description: "Debian's 6.1 kernel as stock-6.1, booted afresh for the nested-KVM tests",
    kernel: "stock-6.1",
    machine: { viommu: true, edu: true },
    modules: [],
  },
  {
    name: "custom-6.12",
    description: "the 6.12 test kernel without a vIOMMU (the iommufd selftest mock)",
    kernel: "custom-6.12",
    machine: { viommu: false, edu: false },
    modules: [],
  },
  {
    name: "custom-6.12-viommu",
    description: "the 6.12 test kernel, emulated VT-d, edu on vfio-pci, the pintest mdev module",
    kernel: "custom-6.12",
    // no_timer_check: QEMU 10's VT-d with interrupt remapping panics 6.12's
    // timer check under TCG ("timer doesn't work through Interrupt-remapped IO-APIC").
    machine: { viommu: true, edu: true, append: ["no_timer_check"] },
    modules: ["pintest"],
  },
  {
    name: "stock-6.12",
    description:
      "Debian's stock 6.12 kernel (no iova_bitmap helpers), no vIOMMU, the mtty sample built out of tree",
    kernel: "stock-6.12",
    // mtty is an emulated-IOMMU mdev on type1: no IOMMU, no edu.
    machine: { viommu: false, edu: false },
    modules: ["mtty"],
  },
]);

const MARKER = /^\/\/\s*kernel-profiles:\s*(.+)$/m;
const HEAD_BYTES = 2000;

/**
 * The profiles a test file asks for.
 *
 * @param text The file's text.
 * @param path The file, for the error message.
 * @returns Profile names; `["stock-6.1"]` without a marker.
 * @throws {HarnessError} For an unknown profile name.
 */
export function profilesOf(text: string, path: string): string[] {
  const m = MARKER.exec(text.slice(0, HEAD_BYTES));
  if (!m) return ["stock-6.1"];
  const names = m[1].trim().split(/[\s,]+/).filter(Boolean);
  for (const name of names) {
    if (!PROFILES.some((p) => p.name === name)) {
      throw new HarnessError(
        `Unknown kernel profile '${name}' in ${path} (known: ${
          PROFILES.map((p) => p.name).join(", ")
        })`,
      );
    }
  }
  return names;
}

/**
 * How many tests a file declares (`Deno.test(` calls), to count a boot that
 * cannot run as that many failures.
 *
 * @param text The file's text.
 * @returns At least 1.
 */
export function declaredTests(text: string): number {
  return Math.max(1, (text.match(/\bDeno\.test\(/g) ?? []).length);
}
