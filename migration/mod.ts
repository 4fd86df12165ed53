/**
 * Pre-copy live migration of guest RAM and device state.
 *
 * - Both sides of a guest: {@linkcode migrateGuest} (source) and
 *   {@linkcode receiveGuest} (destination), `GuestMemory` and the VFIO
 *   container wired into the engine.
 * - The engine: {@linkcode migrate}, in phases (setup, iterate,
 *   stop-and-copy, complete, cleanup): dirty sources merged per iteration,
 *   the {@linkcode ConvergencePolicy} with auto-converge, the explicit policy
 *   for the all-mapped device scope, device state, a stream of
 *   {@linkcode MigrationEvent}s with QEMU's status and counters, and a
 *   {@linkcode MigrationReport} (chart it with {@linkcode renderReportSvg}).
 * - Parallel channels (QEMU's multifd): `migrateGuest({ channels })` and
 *   `receiveGuest({ channels })` send RAM over more connections, each fed
 *   by a Worker, kept in order by iteration markers (`STREAM.md`,
 *   "Parallel channels").
 * - Scripted tests: `runMigrationScenario()` in `./testing`.
 * - The versioned stream format (see `STREAM.md`), its writer and its
 *   untrusting receiver, and the file, unix-socket, TCP and TLS transports
 *   behind one interface. TLS (`tls:HOST:PORT`) authenticates both sides
 *   with certificates in QEMU's `tls-creds-x509` layout
 *   ({@linkcode loadTlsCredentials}) and lets in only the clients an
 *   authorization list names ({@linkcode TlsAuthz}).
 *
 * Requires `--allow-net` for TCP and TLS, and `--allow-read`/`--allow-write`
 * for unix sockets, files and TLS credentials.
 *
 * @example Migrate RAM over TCP
 * ```ts
 * import { createHash } from "node:crypto";
 * import {
 *   arrayRam,
 *   connectEndpoint,
 *   formatEndpoint,
 *   guestAddress,
 *   listenEndpoint,
 *   type RamAccess,
 *   receiveStream,
 *   StreamWriter,
 * } from "./mod.ts";
 *
 * function sha256(ram: RamAccess): Uint8Array {
 *   const h = createHash("sha256");
 *   for (const r of ram.layout) h.update(ram.view(r.gpa, Number(r.size)));
 *   return h.digest();
 * }
 * const layout = [{ gpa: 0n, size: 4n << 20n }];
 * const src = arrayRam(layout);
 * crypto.getRandomValues(src.view(guestAddress(0n), 65536));
 * const dst = arrayRam(layout);
 *
 * using listener = listenEndpoint("tcp:127.0.0.1:0");
 * const received = (async () => {
 *   using conn = await listener.accept();
 *   return await receiveStream(conn, dst, { digest: sha256 });
 * })();
 * {
 *   using conn = await connectEndpoint(formatEndpoint(listener.endpoint));
 *   const w = new StreamWriter(conn);
 *   await w.writeHeader(src.layout, 4096);
 *   await w.writePages(src, guestAddress(0n), 1024);
 *   await w.writeEnd(sha256(src));
 * }
 * console.log((await received).pages); // 16
 * ```
 *
 * @module
 */

// Both sides of a guest.
export { DEFAULT_PEER_TIMEOUT_MS, migrateGuest, type MigrateGuestOptions } from "./guest/source.ts";
export {
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_PENDING,
  defaultIdleTimeoutMs,
  DestinationFailure,
  type ReceivedGuest,
  receiveGuest,
  type ReceiveGuestOptions,
} from "./guest/destination.ts";
export { destinationRam, ramDigest, sourceRam } from "./guest/guest_ram.ts";
export { CpuDirtySource } from "./guest/cpu_dirty_source.ts";
export {
  containerDevices,
  type RegionLayout,
  VfioDirtySource,
  type VfioDirtySourceOptions,
} from "./guest/vfio_dirty_source.ts";
export {
  IommufdDirtySource,
  type IommufdDirtySourceOptions,
} from "./guest/iommufd_dirty_source.ts";
export {
  DmaLoggingDirtySource,
  type DmaLoggingDirtySourceOptions,
} from "./guest/dma_logging_dirty_source.ts";
export { UntrackedDeviceSource } from "./guest/untracked_device_source.ts";
export { WorkerWorkload } from "./guest/worker_workload.ts";
export { KvmGuestDirtySource, type KvmSlots } from "./guest/kvm_dirty_source.ts";
export { VmmWriteSource } from "./guest/vmm_write_source.ts";
export {
  type KvmThrottleStats,
  KvmWorkload,
  type KvmWorkloadOptions,
  type PausableVm,
} from "./guest/kvm_workload.ts";
export { KVM_STATE_DEVICE_ID, KvmStateDevice } from "./guest/kvm_state_device.ts";
// The engine.
export { migrate } from "./engine/precopy.ts";
export {
  DEFAULT_DEVICE_PRECOPY_BYTES,
  type MigrateOptions,
  MigrationFailure,
  type MigrationSink,
} from "./engine/types.ts";
export { MigrationError } from "./engine/errors.ts";
export type {
  MigrationCounters,
  MigrationEvent,
  MigrationPhase,
  MigrationStatus,
} from "./engine/status.ts";
export {
  type ConvergenceDecision,
  type ConvergenceLimits,
  ConvergencePolicy,
  type IterationSample,
} from "./engine/convergence.ts";
export {
  type DirtyScope,
  type DirtySource,
  expandBitmapInto,
  type SourceHarvest,
} from "./engine/dirty_source.ts";
export {
  describeSelection,
  type RegionSources,
  selectDeviceSources,
  type SourceCandidate,
  type SourceSelection,
  type UnavailableSource,
} from "./engine/source_selection.ts";
export type {
  DeviceMigrator,
  DevicePrecopyInfo,
  DeviceRestorer,
} from "./engine/device_migrator.ts";
export { combineWorkloads, type Pausable, type Workload } from "./engine/workload.ts";
export {
  type DeviceReport,
  type IterationRow,
  type MigrationReport,
  newReport,
  parseReport,
} from "./engine/report.ts";
export { renderReportSvg } from "./engine/report_svg.ts";
// The stream.
export { StreamWriter, type StreamWriterOptions, type WritePagesResult } from "./stream/writer.ts";
export { type CompressionStats, type StreamCompression } from "./stream/compression.ts";
export {
  type IncomingStream,
  openStream,
  type ReceiveOptions,
  receiveStream,
  type ReceiveSummary,
  type SectionCounts,
} from "./stream/reader.ts";
export { StreamError } from "./stream/error.ts";
export { arrayRam, type RamAccess, type RamRegionLayout } from "./stream/ram.ts";
export { type DestinationAck, readAck, writeAck } from "./stream/ack.ts";
export {
  COMPRESSED_HEAD_BYTES,
  CompressionCodec,
  DEFAULT_DEVICE_STATE_BYTES,
  DEFAULT_DEVICE_STATE_CHUNKS,
  DEFAULT_DEVICE_STATE_CHUNKS_PER_DEVICE,
  MAX_DEVICE_PRECOPY_BYTES,
  MAX_RUN_BYTES,
  SectionType,
  STREAM_VERSION,
} from "./stream/format.ts";
export { escapeControl, peerText } from "./stream/peer_text.ts";
// Transports.
export {
  connectEndpoint,
  type ConnectEndpointOptions,
  listenEndpoint,
  type ListenEndpointOptions,
  openListener,
} from "./transport/open.ts";
export {
  DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
  type TlsConnectOptions,
  type TlsListenOptions,
} from "./transport/tls.ts";
export {
  loadTlsCredentials,
  type TlsCredentials,
  type TlsCredentialsEndpoint,
} from "./transport/tls_credentials.ts";
export { TlsAuthz, type TlsPeerIdentity } from "./transport/tls_authz.ts";
export { type Endpoint, formatEndpoint, parseEndpoint } from "./transport/endpoint.ts";
export {
  type AcceptOptions,
  type ConnectOptions,
  type RawStream,
  StreamChannel,
  type StreamChannelOptions,
  type StreamListener,
  type StreamSink,
  type StreamSource,
} from "./transport/channel.ts";
export { RateLimitedSink } from "./transport/rate_limited_sink.ts";
// The GPA brand the RAM and stream APIs take.
export { guestAddress } from "../sys/address.ts";
// closure: types the API above names, from the layers below.
export type {
  DirtyBitmap,
  DmaLease,
  DmaMapper,
  GuestAddress,
  GuestMemory,
  GuestMemoryDescriptor,
  GuestMemoryDmaLease,
  GuestRegion,
  HostAddress,
  IoctlRequest,
  Iova,
  MapIntoOptions,
  MemoryBacking,
  Syscalls,
  WriteObserver,
} from "../memory/mod.ts";
export type {
  DeviceInfo,
  DirtyBitmapReport,
  DirtyPageTracker,
  DirtyTrackerOptions,
  DmaMapping,
  GroupStatus,
  HwPagetable,
  IommufdDirtyReport,
  IommufdIoas,
  IommuInfo,
  IovaRange,
  IrqInfo,
  MigrationCap,
  RawCap,
  ReadDirtyOptions,
  RegionInfo,
  RegionMapping,
  UnknownCap,
  UnmapResult,
  VfioContainer,
  VfioDevice,
  VfioGroup,
} from "../vfio/mod.ts";
