/**
 * Guest RAM and CPU-side dirty tracking.
 *
 * - {@linkcode GuestMemory}: regions at guest-physical addresses, backed by
 *   anonymous memory, a shared memfd, or 2 MiB huge pages; checked
 *   accessors, zero-copy views, GPA to host translation, and
 *   {@linkcode GuestMemory.mapInto} for VFIO DMA.
 * - {@linkcode DirtyTracker}: which 4 KiB pages the CPU wrote, as
 *   {@linkcode DirtyBitmap}s. {@linkcode PagemapScanTracker} (userfaultfd
 *   async write-protect + `PAGEMAP_SCAN`, Linux 6.7+), {@linkcode SoftDirtyTracker}
 *   (`CONFIG_MEM_SOFT_DIRTY`), {@linkcode SoftwareDirtyLog} (writes through
 *   the API); {@linkcode selectDirtyTracker} picks the best that works and
 *   says why the others were rejected.
 * - {@linkcode WorkerWriter}: a Worker writing RAM concurrently, as vCPUs would.
 * - {@linkcode digestMemory}: per-page CRC-32 combined with SHA-256, to verify
 *   a migration.
 *
 * Requires `--allow-ffi` and `--allow-read` (soft-dirty also `--allow-write`
 * for /proc/self/clear_refs).
 *
 * @example Track writes with the best tracker
 * ```ts
 * import { GuestMemory, selectDirtyTracker } from "./mod.ts";
 * import { guestAddress } from "./mod.ts";
 * using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: 1n << 20n }]);
 * const { tracker, chosen } = selectDirtyTracker(mem);
 * using _t = tracker;
 * mem.writeU64(guestAddress(0x2000n), 42n);
 * console.log(chosen, tracker.harvest()[0].pageIndexes()); // [2]
 * ```
 *
 * @module
 */

export { HUGE_PAGE_SIZE, type MemoryBacking, type PrefaultMode } from "./_backing.ts";
export type { RegionSpec } from "./_layout.ts";
export {
  AUTO_TRACKER_ORDER,
  createDirtyTracker,
  type RejectedTracker,
  selectDirtyTracker,
  type TrackerSelection,
} from "./auto_tracker.ts";
export { DIRTY_PAGE_SIZE, DirtyBitmap } from "./dirty_bitmap.ts";
export {
  createDirtyBitmaps,
  type DirtyTracker,
  type DirtyTrackerKind,
  type HarvestOptions,
} from "./dirty_tracker.ts";
export {
  diffPageDigests,
  type DigestAlgorithm,
  digestMemory,
  type MemoryDigest,
  pageCrcs,
} from "./digest.ts";
export { type DmaLease, type DmaMapper, GuestMemoryDmaLease, type MapIntoOptions } from "./dma.ts";
export { DirtyTrackerUnavailableError, HugePagesUnavailableError } from "./errors.ts";
export { ResourceBusyError } from "../sys/errors.ts";
export {
  GuestMemory,
  type GuestMemoryDescriptor,
  type GuestMemoryOptions,
  type WriteObserver,
} from "./guest_memory.ts";
export { GuestRegion } from "./guest_region.ts";
export { checkHostCapacity, type HostCapacity, hostCapacity } from "./host_capacity.ts";
export { PAGEMAP_SCAN_UFFD_FEATURES, PagemapScanTracker } from "./pagemap_scan_tracker.ts";
export { probeSoftDirty, type SoftDirtyProbe, SoftDirtyTracker } from "./soft_dirty_tracker.ts";
export {
  joinSoftwareDirtyLog,
  SoftwareDirtyLog,
  type SoftwareDirtyLogHandle,
} from "./software_dirty_log.ts";
export {
  WorkerWriter,
  type WorkerWriterOptions,
  type WritePattern,
  type WriterState,
} from "./worker_writer.ts";
// The address brands and the syscall boundary these APIs take.
export type { GuestAddress, HostAddress, Iova } from "../sys/address.ts";
export { guestAddress, hostAddress, iova } from "../sys/address.ts";
export type {
  IoctlRequest,
  MemorySyscalls,
  PagemapSyscalls,
  ProcSyscalls,
  Syscalls,
  UffdSyscalls,
} from "../sys/syscalls.ts";
export type { ProcOptions } from "../sys/procfs.ts";
