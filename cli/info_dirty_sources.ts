/**
 * `info`'s dirty-source survey: per container and device, which device-side
 * dirty sources are available and why the others are not. Each answer is
 * the kernel's own: the container's scope from one tracked query of one
 * mapped page, the device's migration and DMA-logging features from
 * `VFIO_DEVICE_FEATURE` probes, and iommufd from `/dev/iommu`, the device's
 * cdev, `IOMMU_GET_HW_INFO` and an `IOMMU_HWPT_ALLOC` with dirty tracking.
 *
 * @module
 */

import { hostAddress, iova } from "../sys/address.ts";
import { EACCES, ENOENT, EPERM } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { VfioContainer } from "../vfio/container.ts";
import { probeDmaLogging, readMigrationFlags } from "../vfio/device_migration_feature.ts";
import type { VfioDevice } from "../vfio/device.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../vfio/errors.ts";
import { VfioCdevDevice, vfioCdevPath } from "../vfio/iommufd/cdev_device.ts";
import { Iommufd } from "../vfio/iommufd/iommufd.ts";

/** One dirty source for one container or device, as `info --json` lists it. */
export interface DirtySourceInfo {
  /** `vfio-container`, `device-dma-logging` or `iommufd-hwpt`. */
  source: string;
  /** What it is for: `group N` or a device name. */
  for: string;
  /** Whether a migration could use it. */
  available: boolean;
  /** Its scope when available (`precise` or `all-mapped`). */
  scope?: "precise" | "all-mapped";
  /** Why it is unavailable, or what its scope means. */
  reason: string;
}

const PAGE = 4096n;

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function denied(e: unknown): boolean {
  return (e instanceof SyscallError || e instanceof IoctlError) &&
    (e.errno === EACCES || e.errno === EPERM);
}

/**
 * The container's own dirty tracking: unavailable without a migration
 * capability; otherwise its scope, read by mapping one scratch page at the
 * first allowed IOVA and querying it once with tracking on (type1 reports a
 * page nobody wrote only in the all-mapped scope).
 *
 * @param container The container, a group attached and its IOMMU set.
 * @param options What it is for (`group N`), and the syscalls for the scratch page.
 * @returns The container's entry.
 *
 * @example
 * ```ts ignore
 * console.log(containerSource(container, { for: "group 26" }).scope); // "all-mapped" with edu
 * ```
 */
export function containerSource(
  container: VfioContainer,
  options: { for: string; syscalls?: Syscalls },
): DirtySourceInfo {
  const entry = { source: "vfio-container", for: options.for };
  const info = container.info();
  if (!info.migration) {
    return {
      ...entry,
      available: false,
      reason: "no migration capability (type1 without dirty tracking, or the iommufd " +
        "compatibility container)",
    };
  }
  const sys = options.syscalls ?? container.syscalls;
  const start = info.iovaRanges[0]?.start ?? 0n;
  const at = (start + PAGE - 1n) & ~(PAGE - 1n);
  const vaddr = sys.mmap(PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  try {
    using dma = container.mapDma(iova(at), { vaddr: hostAddress(vaddr), size: PAGE });
    const tracker = container.dirtyTracker();
    tracker.start();
    let allMapped: boolean;
    try {
      allMapped = tracker.query(dma.iova, PAGE).allMapped;
    } finally {
      tracker.stop();
    }
    return allMapped
      ? {
        ...entry,
        available: true,
        scope: "all-mapped",
        reason: "all-mapped scope (a group has not pinned pages, as every vfio-pci group): " +
          "every mapped page is reported dirty on every query",
      }
      : {
        ...entry,
        available: true,
        scope: "precise",
        reason: "pinned scope: only the pages the devices pinned or wrote through vfio_dma_rw",
      };
  } catch (e) {
    return { ...entry, available: false, reason: `cannot probe its scope: ${errText(e)}` };
  } finally {
    sys.munmap(vaddr, PAGE);
  }
}

/**
 * The device's own DMA logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`), which
 * needs the driver's migration support and log ops.
 *
 * @param device The device, opened through its group.
 * @returns The device's entry.
 *
 * @example
 * ```ts ignore
 * console.log(deviceLoggingSource(device).reason); // "no migration capability (...)"
 * ```
 */
export function deviceLoggingSource(device: VfioDevice): DirtySourceInfo {
  const entry = { source: "device-dma-logging", for: device.name };
  try {
    if (readMigrationFlags(device.syscalls, device.unsafeFd) === undefined) {
      return {
        ...entry,
        available: false,
        reason: "no migration capability (the driver has no migration support)",
      };
    }
    return probeDmaLogging(device.syscalls, device.unsafeFd)
      ? { ...entry, available: true, scope: "precise", reason: "the driver logs the device's DMA" }
      : { ...entry, available: false, reason: "the driver has no DMA logging (no log ops)" };
  } catch (e) {
    return { ...entry, available: false, reason: `cannot probe it: ${errText(e)}` };
  }
}

/**
 * iommufd HWPT dirty tracking for a device: `/dev/iommu`, the device's cdev
 * bound and attached to a scratch IOAS, its IOMMU's dirty-tracking
 * capability, and a HWPT allocated with dirty tracking. Everything is
 * released again; the device's group must be closed first (a cdev and its
 * group are exclusive).
 *
 * @param device The device name (a PCI address or an mdev UUID), or undefined.
 * @param options The syscall boundary and the sysfs root (tests).
 * @returns The entry.
 *
 * @example
 * ```ts ignore
 * console.log(iommufdSource("0000:00:03.0").reason);
 * ```
 */
export function iommufdSource(
  device: string | undefined,
  options: { syscalls?: Syscalls; sysfs?: string } = {},
): DirtySourceInfo {
  const entry = { source: "iommufd-hwpt", for: device ?? "-" };
  const sys = options.syscalls ?? defaultSyscalls();
  let iommufd: Iommufd;
  try {
    iommufd = Iommufd.open({ syscalls: sys });
  } catch (e) {
    if (e instanceof SyscallError && denied(e)) {
      return { ...entry, available: false, reason: `not root: ${errText(e)}` };
    }
    if (e instanceof SyscallError && e.errno === ENOENT) {
      return {
        ...entry,
        available: false,
        reason: "no iommufd: no /dev/iommu (a kernel without CONFIG_IOMMUFD)",
      };
    }
    return { ...entry, available: false, reason: `no iommufd: ${errText(e)}` };
  }
  using _iommufd = iommufd;
  if (device === undefined) {
    return {
      ...entry,
      available: false,
      reason: "/dev/iommu is there; name a device (--device) to ask its IOMMU",
    };
  }
  let path: string;
  try {
    path = vfioCdevPath(device, { sysfs: options.sysfs });
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return {
        ...entry,
        available: false,
        reason: `cannot look up its VFIO cdev in sysfs (run with --allow-all): ${e.message}`,
      };
    }
    if (!(e instanceof VfioStateError)) throw e;
    return { ...entry, available: false, reason: `no VFIO cdev: ${e.message}` };
  }
  try {
    using ioas = iommufd.allocIoas();
    using cdev = VfioCdevDevice.open(path, { syscalls: sys });
    const devId = cdev.bind(iommufd);
    cdev.attach(ioas);
    const caps = iommufd.hwInfo(devId);
    try {
      iommufd.allocHwpt({ devId, ioas, dirtyTracking: true }).close();
      return {
        ...entry,
        available: true,
        scope: "precise",
        reason: "the IOMMU tracks the device's writes (IOMMU_HWPT_ALLOC_DIRTY_TRACKING)",
      };
    } catch (e) {
      if (!(e instanceof DirtyTrackingUnavailableError)) throw e;
      return {
        ...entry,
        available: false,
        reason: `device-side dirty tracking unavailable: the IOMMU has no dirty tracking ` +
          `(IOMMU_HW_CAP_DIRTY_TRACKING ${caps.dirtyTracking ? "set" : "clear"}; ` +
          `IOMMU_HWPT_ALLOC refused it)`,
      };
    }
  } catch (e) {
    if (denied(e)) return { ...entry, available: false, reason: `not root: ${errText(e)}` };
    return { ...entry, available: false, reason: `cannot probe it: ${errText(e)}` };
  }
}
