/**
 * Fakes and harnesses for your own tests, as `@std/testing` ships `FakeTime`:
 *
 * - {@linkcode FakeKernel}: the Linux VFIO type1 stack and vfio-pci (edu)
 *   at the syscall boundary: pass it as `syscalls` to `VfioContainer.open()`
 *   and the objects run as on a real kernel, with every errno rule, both
 *   dirty scopes (`pin()` moves a group into the precise one), fault
 *   injection by ioctl or syscall name ({@linkcode FakeKernel.failNext}),
 *   and fd, mapping and DMA accounting to assert nothing leaked.
 * - {@linkcode FakeDmaLoggingDevice}: a device that logs its own DMA writes
 *   (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`), with the vfio core's checks.
 * - {@linkcode FakeMigrationDevice}: a VFIO migration v2 device with the
 *   kernel's state table, injectable failures per arc, and a `data_fd`.
 * - {@linkcode runMigrationScenario}: one call runs a source and a
 *   destination in this process, with a Worker workload, a transport and
 *   faults, and releases everything afterwards.
 * - {@linkcode startCutProxy}: a TCP proxy that cuts a migration after N bytes.
 * - {@linkcode startFlipProxy}: a TCP proxy that flips one bit the source sends
 *   (over `tls:`, TLS must refuse the altered record).
 *
 * Requires `--allow-ffi` (the fakes hand out real memory) and, for
 * scenarios, `--allow-net`, `--allow-read`, `--allow-write` and `--allow-env`.
 *
 * @example A scripted migration test: the container reports every mapped page dirty
 * ```ts
 * import assert from "node:assert/strict";
 * import { VfioContainer } from "../vfio/mod.ts";
 * import { FakeKernel, runMigrationScenario } from "./mod.ts";
 *
 * const kernel = new FakeKernel(); // group 26 with an edu device on vfio-pci
 * {
 *   using container = VfioContainer.open({ syscalls: kernel });
 *   using _group = container.attachGroup(26);
 *   // vfio-pci never pins pages: the engine refuses unless told otherwise ...
 *   const refused = await runMigrationScenario({ ram: 16 << 20, vfio: { container } });
 *   assert.equal(refused.report.result, "failed");
 *   assert.equal(refused.sourceDigestAfter, refused.sourceDigestBefore);
 *   // ... and converges with the mapped RAM resent in full at stop-and-copy.
 *   const allowed = await runMigrationScenario({
 *     ram: 16 << 20,
 *     vfio: { container },
 *     imprecise: "allow",
 *     workload: { pattern: "random", pagesPerSecond: 1000, seed: 1 },
 *     limits: { downtimeLimitMs: 5_000 }, // about the policy, not this machine's speed
 *   });
 *   assert.equal(allowed.report.result, "completed");
 *   assert.equal(allowed.destination.digest, allowed.report.sourceDigest);
 * }
 * assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
 * ```
 *
 * @example Inject an errno into one ioctl, and see nothing leak
 * ```ts
 * import assert from "node:assert/strict";
 * import { IoctlError, VfioContainer } from "../vfio/mod.ts";
 * import { EINVAL } from "../vfio/uapi/mod.ts";
 * import { FakeKernel } from "./mod.ts";
 *
 * const kernel = new FakeKernel().failNext("VFIO_SET_IOMMU", EINVAL);
 * {
 *   using container = VfioContainer.open({ syscalls: kernel });
 *   assert.throws(
 *     () => container.attachGroup(26),
 *     (e: unknown) => e instanceof IoctlError && e.ioctl === "VFIO_SET_IOMMU" && e.errno === EINVAL,
 *   );
 * }
 * assert.equal(kernel.openFds, 0);
 * ```
 *
 * @module
 */

export {
  type DeviceFeatureHandler,
  type DirtyScope,
  type FailArcOptions,
  type FailNextOptions,
  type FakeCall,
  type FakeDataFile,
  type FakeDeviceOptions,
  FakeDmaLoggingDevice,
  type FakeDmaLoggingDeviceOptions,
  type FakeGroupOptions,
  FakeKernel,
  type FakeKernelOptions,
  type FakeMigrationCap,
  FakeMigrationDevice,
  type FakeMigrationDeviceOptions,
  type FeatureContext,
  KernelError,
  NO_FEATURES,
  type UserArg,
} from "./fake_kernel.ts";
export {
  type MigrationScenario,
  type MigrationScenarioResult,
  runMigrationScenario,
} from "./scenario.ts";
export { type CutProxy, startCutProxy } from "./cut_proxy.ts";
export { type FlipProxy, startFlipProxy } from "./flip_proxy.ts";
export { type ForwardedCall, ForwardingSyscalls } from "./forwarding_syscalls.ts";
export { FakeHostCalls } from "./fake/host_calls.ts";
// closure: types the API above names, from the layers below.
export type {
  DeviceInfo,
  DirtyBitmapReport,
  DirtyPageTracker,
  DirtyTrackerOptions,
  DmaMapping,
  GroupStatus,
  HostAddress,
  HwPagetable,
  IoctlRequest,
  IommufdDirtyReport,
  IommufdIoas,
  IommuInfo,
  Iova,
  IovaRange,
  IrqInfo,
  MigrationCap,
  RawCap,
  ReadDirtyOptions,
  RegionInfo,
  RegionMapping,
  Syscalls,
  UnknownCap,
  UnmapResult,
  VfioContainer,
  VfioDevice,
  VfioGroup,
} from "../vfio/mod.ts";
export type { WritePattern } from "../memory/mod.ts";
export type {
  CompressionStats,
  ConvergenceLimits,
  DeviceMigrator,
  DevicePrecopyInfo,
  DeviceReport,
  DeviceRestorer,
  IterationRow,
  MigrationCounters,
  MigrationError,
  MigrationEvent,
  MigrationPhase,
  MigrationReport,
  MigrationStatus,
  Pausable,
  RegionSources,
  SourceSelection,
  StreamCompression,
  UnavailableSource,
  Workload,
} from "../migration/mod.ts";
