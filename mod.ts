/**
 * deno-vmm: a modular slice of a userspace virtual machine monitor for Deno.
 *
 * The root names what most programs need: the VFIO container, group and
 * device; guest RAM and its CPU-side dirty tracking; both sides of a live
 * migration, with its report and events; the typed errors; the address
 * brands. The entry points hold the rest:
 *
 * - `./vfio`: every VFIO and iommufd object, the migration v2 state machine;
 * - `./vfio/uapi`: the raw ioctl requests, constants and struct codecs;
 * - `./memory`: guest RAM, the dirty trackers, Worker writers, digests;
 * - `./migration`: the engine, the stream format, the transports;
 * - `./testing`: `FakeKernel`, the fake migration device, scripted
 *   migration scenarios and fault injection, for your own tests.
 *
 * Run as a program, it is the CLI:
 * `deno run --allow-ffi --allow-read mod.ts info --group 26` (`--help` lists
 * the commands).
 *
 * @example Read the IOMMU info
 * ```ts ignore
 * import { VfioContainer } from "./mod.ts";
 * using container = VfioContainer.open();
 * using group = container.attachGroup(26);
 * console.log(container.info());
 * ```
 *
 * @example Migrate guest RAM to a destination in the same process
 * ```ts
 * import { GuestMemory, guestAddress, migrateGuest, receiveGuest } from "./mod.ts";
 * using source = GuestMemory.create([{ gpa: guestAddress(0n), size: 16n << 20n }]);
 * using target = GuestMemory.create([{ gpa: guestAddress(0n), size: 16n << 20n }]);
 * source.view(guestAddress(0x1000n), 4).set([1, 2, 3, 4]);
 * const dir = await Deno.makeTempDir();
 * const received = receiveGuest({ memory: target, from: `unix:${dir}/m.sock`, zeroed: true });
 * const report = await migrateGuest({ memory: source, to: `unix:${dir}/m.sock` });
 * console.log(report.result, (await received).digest === report.sourceDigest); // completed true
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

// VFIO.
export {
  DirtyPageTracker,
  DirtyTrackingUnavailableError,
  VfioContainer,
  VfioDevice,
  VfioDeviceMigration,
  VfioGroup,
} from "./vfio/mod.ts";
// Guest RAM.
export {
  digestMemory,
  DirtyBitmap,
  GuestMemory,
  HugePagesUnavailableError,
  selectDirtyTracker,
  WorkerWriter,
} from "./memory/mod.ts";
export type { DirtyTracker, GuestMemoryOptions, RegionSpec } from "./memory/mod.ts";
// Live migration.
export {
  DestinationFailure,
  loadTlsCredentials,
  migrateGuest,
  MigrationError,
  MigrationFailure,
  parseReport,
  receiveGuest,
  renderReportSvg,
  StreamError,
  TlsAuthz,
} from "./migration/mod.ts";
export type {
  CompressionStats,
  ConvergenceLimits,
  DeviceReport,
  MigrateGuestOptions,
  MigrationCounters,
  MigrationEvent,
  MigrationReport,
  ReceivedGuest,
  ReceiveGuestOptions,
  RegionSources,
  SourceSelection,
  StreamCompression,
  TlsCredentials,
  TlsCredentialsEndpoint,
  TlsListenOptions,
  TlsPeerIdentity,
  UnavailableSource,
} from "./migration/mod.ts";
// The syscall boundary, its errors and the address brands.
export {
  type GuestAddress,
  guestAddress,
  type HostAddress,
  hostAddress,
  IoctlError,
  type Iova,
  iova,
  LibcSyscalls,
  ResourceBusyError,
  SyscallError,
  type Syscalls,
} from "./vfio/mod.ts";

if (import.meta.main) {
  const { main } = await import("./cli/main.ts");
  Deno.exit(await main(Deno.args));
}
// closure: types the API above names, from the layers below.
export type {
  DigestAlgorithm,
  DirtyTrackerKind,
  DmaLease,
  DmaMapper,
  GuestMemoryDescriptor,
  GuestMemoryDmaLease,
  GuestRegion,
  HarvestOptions,
  IoctlRequest,
  MapIntoOptions,
  MemoryBacking,
  MemoryDigest,
  PrefaultMode,
  RejectedTracker,
  TrackerSelection,
  WriteObserver,
  WriterState,
} from "./memory/mod.ts";
export type {
  DeviceInfo,
  DirtyBitmapReport,
  DirtyScope,
  DirtyTrackerOptions,
  DmaMapping,
  GroupStatus,
  HwPagetable,
  IommufdDirtyReport,
  IommufdIoas,
  IommuInfo,
  IovaRange,
  IrqInfo,
  LoadStateOptions,
  MigrationCap,
  MigrationDataChunk,
  MigrationDataFd,
  PrecopyInfo,
  RawCap,
  ReadDirtyOptions,
  RegionInfo,
  RegionMapping,
  SetStateOptions,
  UnknownCap,
  UnmapResult,
} from "./vfio/mod.ts";
export type {
  AcceptOptions,
  DeviceMigrator,
  DevicePrecopyInfo,
  DeviceRestorer,
  DirtySource,
  Endpoint,
  IterationRow,
  MigrationPhase,
  MigrationStatus,
  Pausable,
  ReceiveSummary,
  SectionCounts,
  SourceHarvest,
  StreamChannel,
  StreamListener,
  StreamSink,
  StreamSource,
  Workload,
} from "./migration/mod.ts";
