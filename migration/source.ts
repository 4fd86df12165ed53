/**
 * The source side of a live migration of `GuestMemory`: picks the CPU dirty
 * tracker, adds the VFIO container as a device-side source when the RAM is
 * mapped into one, connects the transport, runs pre-copy, and waits for the
 * destination's answer.
 *
 * @module
 */

import { selectDirtyTracker } from "../memory/auto_tracker.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";
import type { VfioContainer } from "../vfio/container.ts";
import { DirtyTrackingUnavailableError } from "../vfio/errors.ts";
import { readAck } from "./ack.ts";
import type { StreamSource } from "./transport.ts";
import { type ConvergenceLimits, ConvergencePolicy } from "./convergence.ts";
import { CpuDirtySource } from "./cpu_dirty_source.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import type { DirtySource } from "./dirty_source.ts";
import { parseEndpoint } from "./endpoint.ts";
import { MigrationError } from "./errors.ts";
import { ramDigest, sourceRam } from "./guest_ram.ts";
import { connectEndpoint } from "./open_endpoint.ts";
import { migrate, MigrationFailure, type MigrationProgress } from "./precopy.ts";
import { type MigrationReport, newReport } from "./report.ts";
import { RateLimitedSink } from "./rate_limited_sink.ts";
import { StreamWriter } from "./stream_writer.ts";
import { UntrackedDeviceSource } from "./untracked_device_source.ts";
import { VfioDirtySource } from "./vfio_dirty_source.ts";
import type { Workload } from "./workload.ts";

/** Options of {@linkcode migrateGuest}. */
export interface MigrateGuestOptions {
  /** The guest RAM. */
  memory: GuestMemory;
  /** Where to: `tcp:HOST:PORT`, `unix:PATH` or `file:PATH`. */
  to: string;
  /** The running workload. */
  workload?: Workload;
  /** The VFIO container the RAM is mapped into (IOVA = `iovaBase` + GPA). */
  vfio?: { container: VfioContainer; iovaBase?: bigint; maxBitmapBytes?: bigint };
  /** Devices whose state migrates. */
  devices?: DeviceMigrator[];
  /** Convergence limits. */
  limits?: ConvergenceLimits;
  /** Cap the stream at this many bytes per second (default: no cap). */
  maxBandwidth?: number;
  /** What to do with an all-mapped device source (default `refuse`). */
  imprecise?: "refuse" | "allow";
  /** Progress. */
  onProgress?: (p: MigrationProgress) => void;
  /** Called with the CPU tracker chosen and why others were rejected. */
  onTracker?: (chosen: string, rejected: { kind: string; reason: string }[]) => void;
}

/**
 * Migrates guest RAM to a destination.
 *
 * @param options What to migrate, where, and how.
 * @returns The report of a completed migration (the workload stays paused).
 * @throws {MigrationFailure} On any failure; the source RAM is untouched, the
 *   workload runs on, and the transport and trackers are released.
 *
 * @example
 * ```ts ignore
 * const report = await migrateGuest({ memory, to: "tcp:127.0.0.1:4444", workload });
 * ```
 */
export async function migrateGuest(options: MigrateGuestOptions): Promise<MigrationReport> {
  const startedAt = performance.now();
  const { memory } = options;
  const endpoint = parseEndpoint(options.to);
  const selection = selectDirtyTracker(memory);
  options.onTracker?.(
    selection.chosen,
    selection.rejected.map((r) => ({ kind: r.kind, reason: r.reason })),
  );
  const sources: DirtySource[] = [new CpuDirtySource(selection.tracker)];
  let channel: Awaited<ReturnType<typeof connectEndpoint>> | undefined;
  try {
    if (options.vfio) {
      const { container, iovaBase, maxBitmapBytes } = options.vfio;
      const regions = memory.regions;
      try {
        sources.push(new VfioDirtySource(container, regions, { iovaBase, maxBitmapBytes }));
      } catch (e) {
        if (!(e instanceof DirtyTrackingUnavailableError)) throw e;
        if (options.imprecise !== "allow") {
          throw new MigrationError(
            "setup",
            `Cannot migrate: ${e.message}; a device may write guest RAM unseen. Allow it with ` +
              `--allow-imprecise-device-dirty (mapped RAM is then resent in full at stop-and-copy)`,
            { cause: e },
          );
        }
        sources.push(new UntrackedDeviceSource(container, regions, { reason: e.reason, iovaBase }));
      }
      // Device-side tracking must be on before the bulk pass (start() may
      // also find the container cannot track: treated as above).
      try {
        sources.at(-1)!.start();
      } catch (e) {
        if (!(e instanceof DirtyTrackingUnavailableError)) throw e;
        if (options.imprecise !== "allow") {
          throw new MigrationError("setup", `Cannot migrate: ${e.message}`, { cause: e });
        }
        sources.pop();
        sources.push(new UntrackedDeviceSource(container, regions, { reason: e.reason, iovaBase }));
      }
    }
    channel = await connectEndpoint(endpoint).catch((e) => {
      throw new MigrationError("setup", `Cannot connect to ${options.to}: ${e.message}`, {
        cause: e,
      });
    });
    const live = endpoint.transport !== "file";
    const sink = options.maxBandwidth
      ? new RateLimitedSink(channel, { bytesPerSecond: options.maxBandwidth })
      : channel;
    const writer = new StreamWriter(sink, {
      // A running workload or device may write a page between its checksum and its send.
      snapshotRuns: options.workload !== undefined || options.vfio !== undefined,
    });
    const ch = channel;
    return await migrate({
      ram: sourceRam(memory),
      sink: writer,
      sources,
      workload: options.workload,
      devices: options.devices,
      limits: options.limits,
      imprecise: options.imprecise,
      digest: () => ramDigest(memory),
      destinationImage: live ? async () => void await destinationAck(ch, true) : undefined,
      destinationReady: live ? () => destinationAck(ch, false) : undefined,
      transport: options.to,
      startedAt,
      onProgress: options.onProgress,
    });
  } catch (e) {
    if (e instanceof MigrationFailure) throw e;
    const err = e instanceof MigrationError
      ? e
      : new MigrationError("setup", `Cannot migrate: ${e instanceof Error ? e.message : e}`, {
        cause: e,
      });
    for (const s of sources) s.stop();
    throw new MigrationFailure(err, failedReport(options, err));
  } finally {
    channel?.close();
    selection.tracker[Symbol.dispose]();
  }
}

// Reads the destination's next answer: the interim "image complete" one, or
// the final verdict (its digest).
async function destinationAck(from: StreamSource, image: boolean): Promise<string> {
  const ack = await readAck(from);
  if (!ack.ok) {
    throw new MigrationError("destination", `Destination rejected the image: ${ack.text}`);
  }
  if ((ack.image ?? false) !== image) {
    throw new MigrationError(
      "destination",
      `Destination answered out of order: expected ${image ? "image complete" : "its verdict"}`,
    );
  }
  return ack.text;
}

function failedReport(options: MigrateGuestOptions, err: MigrationError): MigrationReport {
  const report = newReport({
    transport: options.to,
    ramBytes: Number(options.memory.size),
    imprecise: options.imprecise ?? "refuse",
    applied: "none: failed in setup",
    limits: new ConvergencePolicy(options.limits).limits,
  });
  report.error = err.message;
  report.failedPhase = err.phase;
  return report;
}
