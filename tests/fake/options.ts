/**
 * Options of the fake kernel, and the resolved configuration its parts share.
 *
 * @module
 */

import {
  DIRTY_BITMAP_SIZE_MAX,
  VFIO_DMA_CC_IOMMU,
  VFIO_NOIOMMU_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from "../../vfio/constants.ts";
import type { IovaRange } from "../../vfio/uapi/iommu_info.ts";
import type { DeviceFeatureHandler } from "./device.ts";

/** `VFIO_TYPE1_NESTING_IOMMU` (obsolete; 6.1 still answers 1). */
export const VFIO_TYPE1_NESTING_IOMMU = 6;

/** One fake device in a group. */
export interface FakeDeviceOptions {
  /** The device name passed to `VFIO_GROUP_GET_DEVICE_FD`, such as `"0000:00:03.0"`. */
  readonly name: string;
  /**
   * Handles `VFIO_DEVICE_FEATURE` after the generic header checks. Default:
   * every feature is `ENOTTY` (vfio-pci without `mig_ops` / `log_ops`).
   */
  readonly features?: DeviceFeatureHandler;
  /**
   * What the device is: `"edu"` (default), QEMU's edu on vfio-pci, or
   * `"pintest"`, the test mdev of `tests/kernel/modules/pintest/` (an
   * emulated-IOMMU device that pins and DMA-writes pages on request; its
   * group is in type1's pinned dirty scope from the moment it attaches).
   */
  readonly model?: "edu" | "pintest";
}

/** One fake IOMMU group. */
export interface FakeGroupOptions {
  /** The group number: `/dev/vfio/<id>`. */
  readonly id: number;
  /** Whether every device is bound to vfio (default true). */
  readonly viable?: boolean;
  /** The devices (default: one edu device `"0000:00:03.0"`). */
  readonly devices?: readonly FakeDeviceOptions[];
}

/** The `VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION` the fake reports. */
export interface FakeMigrationCap {
  /** Reported `pgsize_bitmap` (default: the smallest IOVA page size). */
  readonly pgsizeBitmap?: bigint;
  /** Reported and enforced `max_dirty_bitmap_size` (default 256 MiB). */
  readonly maxDirtyBitmapSize?: bigint;
}

/** Options of {@linkcode FakeKernel}. All are optional. */
export interface FakeKernelOptions {
  /** The groups (default: group 26 with one edu device `"0000:00:03.0"`). */
  readonly groups?: readonly FakeGroupOptions[];
  /** `iova_pgsizes` (default `0x40201000n`: 4 KiB, 2 MiB, 1 GiB). */
  readonly iovaPgsizes?: bigint;
  /** Usable IOVA ranges, `end` inclusive (default: the two observed on q35 + VT-d). */
  readonly iovaRanges?: readonly IovaRange[];
  /** The type1 `dma_entry_limit` module parameter (default 65535). */
  readonly dmaEntryLimit?: number;
  /**
   * The migration cap; `null` models a kernel without type1 dirty tracking
   * (no cap, `VFIO_IOMMU_DIRTY_PAGES` is `ENOTTY`, the unmap bitmap flag is `EINVAL`).
   */
  readonly migrationCap?: FakeMigrationCap | null;
  /**
   * Model the iommufd VFIO compatibility container: `VFIO_IOMMU_DIRTY_PAGES`
   * is `ENOTTY`, no migration cap, DMA_AVAIL reports `U32_MAX`, caps are
   * DMA_AVAIL then IOVA_RANGE, each 8-byte aligned.
   */
  readonly iommufdCompat?: boolean;
  /**
   * Pad each `VFIO_IOMMU_GET_INFO` capability to 8 bytes, as 6.12's
   * `vfio_info_cap_add` does (`ALIGN(size, sizeof(u64))`). Default false:
   * 6.1 packs them back to back.
   */
  readonly alignInfoCaps?: boolean;
  /** `VFIO_CHECK_EXTENSION` answers that override the defaults, by extension number. */
  readonly extensions?: Readonly<Record<number, number>>;
  /**
   * Paths whose `open` fails with `EACCES`: VFIO nodes, and the host files
   * the fake opens for the caller (`/proc/self/pagemap`,
   * `/proc/self/clear_refs`, `/dev/userfaultfd`, any `/proc` or `/sys` file).
   */
  readonly deniedPaths?: readonly string[];
  /**
   * Whether the kernel has soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`).
   * Default `false`, as on this project's 6.18 hosts: `/proc/self/clear_refs`
   * accepts `1` to `5` and changes nothing, and bit 55 of every
   * `/proc/self/pagemap` entry reads clear. `true`: bit 55 of a page the fake
   * mapped is set from its `mmap` (the new VMA is `VM_SOFTDIRTY`) until a
   * `clear_refs` write of `4`, and afterwards exactly when the page was
   * written since the last one; the fake finds the writes with the host's
   * userfaultfd async write-protect and `PAGEMAP_SCAN` (Linux 6.7), so it
   * needs those on the host, and a range it watches cannot also be
   * registered with a userfaultfd of the caller's (`UFFDIO_REGISTER`
   * answers `EBUSY`). Pages the fake did not map report what the host reports.
   * One trace of the method shows: once watched, a never-written anonymous
   * page reads as swapped (bit 62, the write-protect marker), not as a hole.
   */
  readonly softDirty?: boolean;
  /**
   * Whether `/proc/self/pagemap` has the `PAGEMAP_SCAN` ioctl (Linux 6.7).
   * Default `true`: the ioctl goes to the host kernel. `false`: it answers
   * `ENOTTY`, as before 6.7.
   */
  readonly pagemapScan?: boolean;
  /**
   * Model `userfaultfd(2)`'s permission check instead of asking the host:
   * `vm.unprivileged_userfaultfd` (what `/proc/sys/vm/unprivileged_userfaultfd`
   * reads). As on Linux 5.11 and later, a call with `UFFD_USER_MODE_ONLY` is
   * allowed whatever the value, and one without it needs `1` (the fake's
   * process has no `CAP_SYS_PTRACE`). Default: the host's answer and the host's
   * file. Allowed calls go to the host kernel.
   */
  readonly unprivilegedUserfaultfd?: 0 | 1;
  /**
   * A seccomp filter refuses `userfaultfd(2)` with `EPERM` whatever its flags
   * (a container runtime's default profile does). `/dev/userfaultfd` is a
   * separate path: deny it with `deniedPaths`. Default false.
   */
  readonly seccompDeniesUserfaultfd?: boolean;
  /**
   * Model the hugetlb pool instead of using the host's: `vm.nr_hugepages`,
   * 2 MiB pages, all free at first. `/proc/sys/vm/nr_hugepages` reads (and,
   * as for root, writes) it; `/proc/meminfo` reports `HugePages_Total` and
   * `HugePages_Free` from it (the rest of the file is the host's). A
   * `MAP_HUGETLB` mapping, or a `MAP_SHARED` mapping of an `MFD_HUGETLB`
   * memfd, reserves its pages at `mmap` and fails with `ENOMEM` when too few
   * are free, as hugetlbfs does; `munmap` returns them. The pages are the
   * host's 4 KiB pages: the accounting is modelled, the page size is not.
   * Default: the host's pool.
   */
  readonly nrHugepages?: number;
  /** What `getuid(2)` answers (default: the host's). */
  readonly uid?: number;
  /**
   * Check that MAP_DMA's `vaddr` range is mapped in this process, as the
   * kernel's pinning does (`EFAULT` otherwise). Default true.
   */
  readonly verifyVaddr?: boolean;
}

/** The resolved configuration of a container's IOMMU. */
export interface Type1Config {
  /** `iova_pgsizes`. */
  readonly pgsizeBitmap: bigint;
  /** Usable IOVA ranges. */
  readonly iovaRanges: readonly IovaRange[];
  /** `dma_entry_limit`. */
  readonly dmaEntryLimit: number;
  /** The migration cap, or null when type1 dirty tracking is absent. */
  readonly migrationCap:
    | { readonly pgsizeBitmap: bigint; readonly maxDirtyBitmapSize: bigint }
    | null;
  /** iommufd compat container. */
  readonly iommufdCompat: boolean;
  /** Info capabilities padded to 8 bytes (6.12). */
  readonly alignInfoCaps: boolean;
  /** MAP_DMA checks `vaddr`. */
  readonly verifyVaddr: boolean;
  /** `VFIO_CHECK_EXTENSION` answers by extension number, with an IOMMU set. */
  readonly extensions: ReadonlyMap<number, number>;
}

/** The default IOVA ranges observed with QEMU's intel-iommu (MSI hole excluded). */
export const DEFAULT_IOVA_RANGES: readonly IovaRange[] = Object.freeze([
  { start: 0x0n, end: 0xfedf_ffffn },
  { start: 0xfef0_0000n, end: 0x7f_ffff_ffffn },
]);

/** The default group: 26, holding one edu device. */
export const DEFAULT_GROUPS: readonly FakeGroupOptions[] = Object.freeze([
  { id: 26, viable: true, devices: [{ name: "0000:00:03.0" }] },
]);

/**
 * Returns the smallest page size in a bitmap (`1 << __ffs(bitmap)`).
 *
 * @param bitmap The page size bitmap (non-zero).
 * @returns The smallest page size.
 */
export function smallestPage(bitmap: bigint): bigint {
  return bitmap & -bitmap;
}

/**
 * Resolves the options into the IOMMU configuration.
 *
 * @param options The options.
 * @returns The configuration.
 */
export function resolveType1Config(options: FakeKernelOptions): Type1Config {
  const pgsizeBitmap = options.iovaPgsizes ?? 0x4020_1000n;
  const compat = options.iommufdCompat ?? false;
  const mig = options.migrationCap === undefined ? {} : options.migrationCap;
  // Debian's 6.1 as observed: NESTING answers 1, UPDATE_VADDR 0, NOIOMMU 0.
  // DMA_CC_IOMMU answers 0: QEMU's VT-d has no snoop control by default.
  const extensions = new Map<number, number>([
    [VFIO_TYPE1_IOMMU, 1],
    [VFIO_TYPE1v2_IOMMU, 1],
    [VFIO_TYPE1_NESTING_IOMMU, compat ? 0 : 1],
    [VFIO_UNMAP_ALL, 1],
    [VFIO_UPDATE_VADDR, 0],
    [VFIO_NOIOMMU_IOMMU, 0],
    [VFIO_DMA_CC_IOMMU, 0],
  ]);
  for (const [k, v] of Object.entries(options.extensions ?? {})) extensions.set(Number(k), v);
  return {
    pgsizeBitmap,
    iovaRanges: options.iovaRanges ?? DEFAULT_IOVA_RANGES,
    dmaEntryLimit: options.dmaEntryLimit ?? 65535,
    migrationCap: compat || mig === null ? null : {
      pgsizeBitmap: mig.pgsizeBitmap ?? smallestPage(pgsizeBitmap),
      maxDirtyBitmapSize: mig.maxDirtyBitmapSize ?? DIRTY_BITMAP_SIZE_MAX,
    },
    iommufdCompat: compat,
    alignInfoCaps: options.alignInfoCaps ?? false,
    verifyVaddr: options.verifyVaddr ?? true,
    extensions,
  };
}
