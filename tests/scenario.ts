/**
 * Scripted migration tests: one call sets up a source and a destination in
 * this process, a Worker workload, a transport and optional faults, runs the
 * migration, checks the outcome and releases everything. Use it from
 * `Deno.test`.
 *
 * @module
 */

import { fillRam } from "../cli/fill.ts";
import { digestMemory } from "../memory/digest.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { WorkerWriter, type WritePattern } from "../memory/worker_writer.ts";
import { guestAddress, iova } from "../sys/address.ts";
import type { VfioContainer } from "../vfio/container.ts";
import type { VfioDevice } from "../vfio/device.ts";
import type { HwPagetable } from "../vfio/iommufd/hw_pagetable.ts";
import type { IommufdIoas } from "../vfio/iommufd/ioas.ts";
import type { ConvergenceLimits } from "../migration/engine/convergence.ts";
import { startCutProxy } from "./cut_proxy.ts";
import type { DeviceMigrator, DeviceRestorer } from "../migration/engine/device_migrator.ts";
import { receiveGuest } from "../migration/guest/destination.ts";
import { formatEndpoint } from "../migration/transport/endpoint.ts";
import type { MigrationError } from "../migration/engine/errors.ts";
import { listenEndpoint } from "../migration/transport/open.ts";
import { MigrationFailure } from "../migration/engine/precopy.ts";
import type { MigrationReport } from "../migration/engine/report.ts";
import type { MigrationEvent } from "../migration/engine/status.ts";
import { migrateGuest } from "../migration/guest/source.ts";
import type { StreamCompression } from "../migration/stream/compression.ts";
import { WorkerWorkload } from "../migration/guest/worker_workload.ts";
import { combineWorkloads, type Workload } from "../migration/engine/workload.ts";

/** Options of {@linkcode runMigrationScenario}. */
export interface MigrationScenario {
  /** Guest RAM bytes (a multiple of 4 KiB). */
  ram: number;
  /** Destination RAM bytes, when it should differ from the source's. */
  destinationRam?: number;
  /** Initial content: `random` (default), `zero`, or `half` (every other page zero). */
  fill?: (view: Uint8Array) => void;
  /** A Worker writing the source RAM during pre-copy. */
  workload?: { pattern: WritePattern; pagesPerSecond: number; seed?: number };
  /** More writers to run (and pause at stop-and-copy), such as a device doing DMA. */
  workloads?: Workload[];
  /** `tcp` (default), `unix` or `file`. */
  transport?: "tcp" | "unix" | "file";
  /** Convergence limits. */
  limits?: ConvergenceLimits;
  /** Cap the stream at this many bytes per second. */
  maxBandwidth?: number;
  /** Compress RAM runs (`zstd`) or not (`none`, the default). */
  compress?: StreamCompression;
  /** Parallel channels on both sides (default 1: none besides the main connection). */
  channels?: number;
  /** The all-mapped device policy. */
  imprecise?: "refuse" | "allow";
  /** A VFIO container to map the source RAM into (IOVA = GPA). */
  vfio?: { container: VfioContainer; maxBitmapBytes?: bigint };
  /**
   * An iommufd IOAS to map the source RAM into (IOVA = GPA) and the HWPT the
   * devices DMA through, as a device-side dirty source.
   */
  iommufd?: {
    hwpt: HwPagetable;
    ioas: IommufdIoas;
    devices?: readonly string[];
    /** IOVA = `iovaBase` + GPA (default 0). */
    iovaBase?: bigint;
  };
  /** A device that logs its own DMA, as a device-side dirty source (IOVA = GPA). */
  dmaLogging?: { device: VfioDevice; devices?: readonly string[]; maxBitmapBytes?: number };
  /** Devices whose state migrates. */
  devices?: DeviceMigrator[];
  /** Device pre-copy bytes per iteration (`migrateGuest()`'s `devicePrecopyBytes`). */
  devicePrecopyBytes?: number;
  /** The source's bound on each wait on the destination (`migrateGuest()`'s `peerTimeoutMs`). */
  peerTimeoutMs?: number;
  /** The destination's devices, restored from the stream by id. */
  destinationDevices?: DeviceRestorer[];
  /**
   * Called once the RAM is mapped and tracking is about to start (test
   * hooks), with a view of the source RAM (GPA 0 at index 0).
   */
  beforeMigrate?: (sourceRam: Uint8Array) => void;
  /** Passed to `migrateGuest()`'s `onEvent`. */
  onEvent?: (event: MigrationEvent) => void;
  /** The directory the scenario makes its own temp directory in (default: the system's). */
  tempDir?: string;
  /** Faults. */
  faults?: {
    /** TCP only: cut the connection after this many stream bytes. */
    cutAfterBytes?: number;
    /** File only: change the stream file before the destination reads it. */
    corruptFile?: (bytes: Uint8Array) => Uint8Array;
  };
}

/** What a scenario did. */
export interface MigrationScenarioResult {
  /** The source's report (completed or failed). */
  report: MigrationReport;
  /** The source's failure, if any. */
  sourceError?: MigrationError;
  /** The destination's outcome. */
  destination: {
    ok: boolean;
    digest?: string;
    error?: string;
    deviceStates?: Map<string, Uint8Array[]>;
  };
  /** The source RAM digest before migration started (hex). */
  sourceDigestBefore: string;
  /** The source RAM digest after the scenario (hex). */
  sourceDigestAfter: string;
  /** Whether the workload was running again after a failed migration (or paused after success). */
  workloadState?: string;
  /** Pages the workload wrote. */
  workloadPages?: number;
}

function fillRandom(view: Uint8Array): void {
  fillRam(view, { pattern: "random", seed: 0x12345678 });
}

/**
 * Runs one migration scenario end to end and releases everything it made
 * (RAM, Worker, sockets, temp files), whatever happens.
 *
 * @param s The scenario.
 * @returns What happened on both sides.
 *
 * @example A too-high dirty rate fails cleanly
 * ```ts ignore
 * const r = await runMigrationScenario({
 *   ram: 256 << 20,
 *   workload: { pattern: "random", pagesPerSecond: 200_000 },
 *   limits: { maxIterations: 5 },
 * });
 * assert.equal(r.report.result, "failed");
 * assert.equal(r.workloadState, "running");
 * ```
 */
export async function runMigrationScenario(s: MigrationScenario): Promise<MigrationScenarioResult> {
  const transport = s.transport ?? "tcp";
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-scenario-", dir: s.tempDir });
  await using stack = new AsyncDisposableStack();
  stack.defer(() => Deno.remove(dir, { recursive: true }));
  const source = stack.use(
    GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(s.ram) }], { backing: "memfd" }),
  );
  (s.fill ?? fillRandom)(source.view(guestAddress(0n), s.ram));
  const destination = stack.use(
    GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(s.destinationRam ?? s.ram) }], {
      prefault: true,
    }),
  );
  const sourceDigestBefore = digestMemory(source).hex;
  if (s.vfio) stack.use(source.mapInto(s.vfio.container));
  if (s.iommufd) {
    for (const r of source.regions) {
      const at = iova((s.iommufd.iovaBase ?? 0n) + r.gpa);
      stack.use(s.iommufd.ioas.map(at, { vaddr: r.hostAddress, size: r.size }));
    }
  }
  let writer: WorkerWriter | undefined;
  let workload: WorkerWorkload | undefined;
  if (s.workload) {
    writer = await WorkerWriter.start(source, {
      pattern: s.workload.pattern,
      pagesPerSecond: s.workload.pagesPerSecond,
      seed: s.workload.seed ?? 1,
    });
    stack.defer(() => writer!.stop());
    workload = new WorkerWorkload([writer], { pagesPerSecond: s.workload.pagesPerSecond });
  }

  const all = [...(workload ? [workload] : []), ...(s.workloads ?? [])];
  const combined = all.length === 0 ? undefined : all.length === 1 ? all[0] : combineWorkloads(all);
  const endpoint = transport === "tcp"
    ? "tcp:127.0.0.1:0"
    : transport === "unix"
    ? `unix:${dir}/migration.sock`
    : `file:${dir}/migration.stream`;
  const listener = transport === "file" ? undefined : listenEndpoint(endpoint);
  if (listener) stack.defer(() => listener.close());
  let to = listener ? formatEndpoint(listener.endpoint) : endpoint;
  const abort = new AbortController();
  const received = listener
    ? receiveGuest({
      memory: destination,
      zeroed: true,
      from: listener,
      signal: abort.signal,
      devices: s.destinationDevices,
      channels: s.channels,
    }).then(
      (g) => ({ ok: true, digest: g.digest, deviceStates: g.summary.deviceStates }),
      (e) => ({ ok: false, error: (e as Error).message }),
    )
    : undefined;
  if (s.faults?.cutAfterBytes !== undefined) {
    const proxy = await startCutProxy(to, { cutAfter: s.faults.cutAfterBytes });
    stack.use(proxy);
    to = proxy.endpoint;
  }
  s.beforeMigrate?.(source.view(guestAddress(0n), s.ram));
  let report: MigrationReport;
  let sourceError: MigrationError | undefined;
  try {
    report = await migrateGuest({
      memory: source,
      to,
      workload: combined,
      vfio: s.vfio,
      iommufd: s.iommufd,
      dmaLogging: s.dmaLogging,
      devices: s.devices,
      devicePrecopyBytes: s.devicePrecopyBytes,
      peerTimeoutMs: s.peerTimeoutMs,
      limits: s.limits,
      maxBandwidth: s.maxBandwidth,
      compress: s.compress,
      channels: s.channels,
      imprecise: s.imprecise,
      onEvent: s.onEvent,
    });
  } catch (e) {
    if (!(e instanceof MigrationFailure)) throw e;
    report = e.report;
    sourceError = e;
    // A source that failed before connecting leaves the destination waiting.
    abort.abort(new Error(`the source failed: ${e.message}`));
  }
  let dest: MigrationScenarioResult["destination"];
  if (received) {
    dest = await received;
  } else if (sourceError) {
    dest = { ok: false, error: "the source failed before the file was complete" };
  } else {
    const file = `${dir}/migration.stream`;
    if (s.faults?.corruptFile) {
      Deno.writeFileSync(file, s.faults.corruptFile(Deno.readFileSync(file)));
    }
    dest = await receiveGuest({
      memory: destination,
      zeroed: true,
      from: `file:${file}`,
      devices: s.destinationDevices,
    }).then(
      (g) => ({ ok: true, digest: g.digest, deviceStates: g.summary.deviceStates }),
      (e) => ({ ok: false, error: (e as Error).message }),
    );
  }
  const workloadState = writer?.state;
  const workloadPages = writer?.writes;
  if (writer && workloadState === "running") await writer.pause();
  return {
    report,
    ...(sourceError ? { sourceError } : {}),
    destination: dest,
    sourceDigestBefore,
    sourceDigestAfter: digestMemory(source).hex,
    ...(writer ? { workloadState, workloadPages } : {}),
  };
}
