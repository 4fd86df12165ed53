/**
 * The source side of a live migration of `GuestMemory`: picks the CPU dirty
 * tracker, adds the VFIO container as a device-side source when the RAM is
 * mapped into one, connects the transport, runs pre-copy, and waits for the
 * destination's answer.
 *
 * @module
 */

import { selectDirtyTracker } from "../../memory/auto_tracker.ts";
import type { GuestMemory } from "../../memory/guest_memory.ts";
import type { VfioContainer } from "../../vfio/container.ts";
import { DirtyTrackingUnavailableError } from "../../vfio/errors.ts";
import { readAck } from "../stream/ack.ts";
import type { StreamChannel } from "../transport/channel.ts";
import { peerText } from "../stream/peer_text.ts";
import { type ConvergenceLimits, ConvergencePolicy } from "../engine/convergence.ts";
import { CpuDirtySource } from "./cpu_dirty_source.ts";
import type { DeviceMigrator } from "../engine/device_migrator.ts";
import type { DirtySource } from "../engine/dirty_source.ts";
import { parseEndpoint } from "../transport/endpoint.ts";
import { MigrationError } from "../engine/errors.ts";
import { ramDigest, sourceRam } from "./guest_ram.ts";
import { connectEndpoint } from "../transport/open.ts";
import type { TlsCredentials } from "../transport/tls_credentials.ts";
import { migrate, MigrationFailure } from "../engine/precopy.ts";
import type { MigrationEvent } from "../engine/status.ts";
import { type MigrationReport, newReport } from "../engine/report.ts";
import { RateLimitedSink } from "../transport/rate_limited_sink.ts";
import { StreamWriter } from "../stream/writer.ts";
import type { StreamCompression } from "../stream/compression.ts";
import { UntrackedDeviceSource } from "./untracked_device_source.ts";
import { VfioDirtySource } from "./vfio_dirty_source.ts";
import { IommufdDirtySource } from "./iommufd_dirty_source.ts";
import { DmaLoggingDirtySource } from "./dma_logging_dirty_source.ts";
import type { VfioDevice } from "../../vfio/device.ts";
import type { HwPagetable } from "../../vfio/iommufd/hw_pagetable.ts";
import type { IommufdIoas } from "../../vfio/iommufd/ioas.ts";
import type { UnavailableSource } from "../engine/source_selection.ts";
import type { Workload } from "../engine/workload.ts";
import { checkChannelCount } from "../stream/channel_hello.ts";
import { ChannelSink } from "../channels/channel_sink.ts";

/** Options of {@linkcode migrateGuest}. */
export interface MigrateGuestOptions {
  /** The guest RAM. */
  memory: GuestMemory;
  /** Where to: `tcp:HOST:PORT`, `tls:HOST:PORT`, `unix:PATH` or `file:PATH`. */
  to: string;
  /**
   * For a `tls:` destination (required there): the source's credentials,
   * and the name the destination's certificate must carry (default its host).
   */
  tls?: { credentials: TlsCredentials; serverName?: string };
  /** The running workload. */
  workload?: Workload;
  /**
   * The sources of the guest's own writes, in place of the CPU dirty
   * tracker picked for `memory` (`selectDirtyTracker`): for a KVM guest,
   * KVM's dirty log or ring and the VMM's writes (`KvmGuestDirtySource`,
   * `VmmWriteSource`). They are started in setup and stopped at the end.
   */
  guestSources?: DirtySource[];
  /** The VFIO container the RAM is mapped into (IOVA = `iovaBase` + GPA). */
  vfio?: { container: VfioContainer; iovaBase?: bigint; maxBitmapBytes?: bigint };
  /**
   * An iommufd HWPT the devices DMA through (IOVA = `iovaBase` + GPA): a
   * precise device-side source. Name its devices as the container's
   * (`group N`) where the same devices are behind both, so it replaces the
   * container's coarser bits. A HWPT allocated without dirty tracking is
   * listed as unavailable.
   */
  iommufd?: {
    hwpt: HwPagetable;
    ioas: IommufdIoas;
    iovaBase?: bigint;
    devices?: readonly string[];
  };
  /**
   * A device whose driver logs its own DMA (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`,
   * IOVA = `iovaBase` + GPA): a precise device-side source. Name it as the
   * container names its group (`group N`) so it replaces the container's
   * coarser bits for that device. A device without DMA logging, or a kernel
   * whose REPORT answers `EOPNOTSUPP`, is listed as unavailable and the
   * other sources serve; ranges merged for the driver's limit are a warning.
   */
  dmaLogging?: {
    device: VfioDevice;
    iovaBase?: bigint;
    devices?: readonly string[];
    pageSize?: bigint;
    maxBitmapBytes?: number;
  };
  /** Device-side sources the caller could not create, and why (for the report). */
  unavailableSources?: UnavailableSource[];
  /** Devices whose state migrates. */
  devices?: DeviceMigrator[];
  /**
   * Device pre-copy bytes sent per iteration, over all devices in
   * `PRE_COPY` (default 8 MiB).
   */
  devicePrecopyBytes?: number;
  /** Convergence limits. */
  limits?: ConvergenceLimits;
  /** Cap the stream at this many bytes per second (default: no cap). */
  maxBandwidth?: number;
  /**
   * Compress RAM runs with zstd (`zstd`; needs the system's libzstd), for
   * links slower than memory: runs that do not compress go raw. `auto`
   * compresses only while that is estimated faster than sending raw (per
   * writer, from the time zstd and the sink's writes take). The report's
   * `compression` says what it saved. Default `none`.
   */
  compress?: StreamCompression;
  /** What to do with an all-mapped device source (default `refuse`). */
  imprecise?: "refuse" | "allow";
  /** Hears each status change, progress within iterations, and each iteration's row. */
  onEvent?: (event: MigrationEvent) => void;
  /** Called with the CPU tracker chosen and why others were rejected. */
  onTracker?: (chosen: string, rejected: { kind: string; reason: string }[]) => void;
  /**
   * Bound on every wait on the destination: a write it accepts no byte of,
   * its switchover ack (with devices in pre-copy), its answer to COMPLETE
   * (the guest is paused meanwhile). Default
   * {@linkcode DEFAULT_PEER_TIMEOUT_MS}. Its verdict gets this plus 0.25 s per
   * GiB of RAM, for its digest.
   */
  peerTimeoutMs?: number;
  /**
   * Aborting fails the migration at once: the transport closes, the
   * workload is resumed, and the failure names the signal's reason.
   */
  signal?: AbortSignal;
  /**
   * Connections to send RAM over besides the main one (QEMU's multifd
   * channels), 2 to 64, each fed by its own Worker; the destination must
   * receive with the same count. Default 1: one connection, as without
   * channels. Not for `file:`.
   */
  channels?: number;
}

/** How long the source waits on a destination that makes no progress: 10 s. */
export const DEFAULT_PEER_TIMEOUT_MS = 10_000;

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
  const peerTimeoutMs = options.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
  if (!(peerTimeoutMs > 0)) throw new RangeError(`Cannot wait ${peerTimeoutMs} ms on the peer`);
  const limits = new ConvergencePolicy(options.limits).limits;
  const channels = checkChannelCount(options.channels ?? 1, "migrate");
  if (channels > 1 && endpoint.transport === "file") {
    throw new RangeError(
      "Cannot migrate over parallel channels to a file: use tcp:, tls: or unix:",
    );
  }
  // The whole migration has a deadline; on it the transport closes at once.
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new Deno.errors.TimedOut(
          `the migration did not complete within its limit of ${limits.maxTotalMs / 1000} s`,
        ),
      ),
    limits.maxTotalMs - (performance.now() - startedAt),
  );
  const stopOnAbort = () => deadline.abort(options.signal!.reason);
  if (options.signal?.aborted) stopOnAbort();
  options.signal?.addEventListener("abort", stopOnAbort, { once: true });
  const selection = options.guestSources === undefined ? selectDirtyTracker(memory) : undefined;
  if (selection !== undefined) {
    options.onTracker?.(
      selection.chosen,
      selection.rejected.map((r) => ({ kind: r.kind, reason: r.reason })),
    );
  }
  const sources: DirtySource[] = selection === undefined
    ? [...options.guestSources!]
    : [new CpuDirtySource(selection.tracker)];
  let channel: StreamChannel | undefined;
  const unavailable: UnavailableSource[] = [...(options.unavailableSources ?? [])];
  let writer: StreamWriter | undefined;
  // The channels' Workers load while tracking starts and the main stream connects.
  const channelSink = channels === 1 ? undefined : new ChannelSink({
    count: channels,
    to: options.to,
    tls: options.tls,
    memory: memory.describe(),
    timeoutMs: peerTimeoutMs,
    snapshotRuns: options.workload !== undefined || options.vfio !== undefined,
    compress: options.compress,
    bytesPerSecond: options.maxBandwidth,
  });
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
        unavailable.push({ source: "vfio-container", reason: e.reason });
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
        unavailable.push({ source: "vfio-container", reason: e.reason });
      }
    }
    if (options.iommufd) {
      const { hwpt, ioas, iovaBase, devices } = options.iommufd;
      if (hwpt.dirtyTrackingCapable) {
        const source = new IommufdDirtySource(hwpt, ioas, memory.regions, { iovaBase, devices });
        source.start();
        sources.push(source);
      } else {
        unavailable.push({
          source: "iommufd-hwpt",
          reason: `HWPT ${hwpt.id} was allocated without dirty tracking`,
        });
      }
    }
    const notes: string[] = [];
    if (options.dmaLogging) {
      const { device, ...rest } = options.dmaLogging;
      const source = new DmaLoggingDirtySource(device, memory.regions, rest);
      try {
        source.start();
        sources.push(source);
        if (source.startNote !== "") notes.push(source.startNote);
      } catch (e) {
        if (!(e instanceof DirtyTrackingUnavailableError)) throw e;
        unavailable.push({ source: source.name, reason: e.reason });
      }
    }
    const live = endpoint.transport !== "file";
    const connect = async () => {
      channel = await connectEndpoint(endpoint, {
        timeoutMs: peerTimeoutMs,
        signal: deadline.signal,
        tls: options.tls,
      }).catch((e) => {
        throw e instanceof MigrationError
          ? e
          : new MigrationError("setup", e.message, { cause: e });
      });
      const sink = options.maxBandwidth
        ? new RateLimitedSink(channel, { bytesPerSecond: options.maxBandwidth })
        : channel;
      // A running workload or device may write a page between its checksum and its send.
      const snapshotRuns = options.workload !== undefined || options.vfio !== undefined;
      writer = new StreamWriter(sink, { snapshotRuns, compress: options.compress });
      return channelSink?.attach(writer, channel) ?? writer;
    };
    const verdictMs = peerTimeoutMs + Math.ceil(Number(memory.size) / 2 ** 30) * 250;
    const report = await migrate({
      ram: sourceRam(memory),
      sink: connect,
      signal: deadline.signal,
      sources,
      workload: options.workload,
      devices: options.devices,
      devicePrecopyBytes: options.devicePrecopyBytes,
      limits: options.limits,
      imprecise: options.imprecise,
      unavailableSources: unavailable,
      digest: () => ramDigest(memory),
      switchoverAck: live
        ? async () => void await destinationAck(channel!, "switchover", peerTimeoutMs)
        : undefined,
      destinationImage: live
        ? async () => void await destinationAck(channel!, "image", peerTimeoutMs)
        : undefined,
      destinationReady: live ? () => destinationAck(channel!, "verdict", verdictMs) : undefined,
      transport: options.to,
      startedAt,
      onEvent: options.onEvent,
    }).catch((e) => {
      if (e instanceof MigrationFailure && notes.length > 0) {
        (e.report.warnings ??= []).push(...notes);
      }
      throw e;
    });
    if (notes.length > 0) (report.warnings ??= []).push(...notes);
    return report;
  } catch (e) {
    if (e instanceof MigrationFailure) {
      throw channel !== undefined && endpoint.transport !== "file"
        ? await withRefusal(e, channel)
        : e;
    }
    const err = e instanceof MigrationError
      ? e
      : new MigrationError("setup", `Cannot migrate: ${e instanceof Error ? e.message : e}`, {
        cause: e,
      });
    for (const s of sources) s.stop();
    throw new MigrationFailure(err, failedReport(options, err));
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", stopOnAbort);
    channelSink?.close();
    writer?.close();
    channel?.close();
    selection?.tracker[Symbol.dispose]();
  }
}

// A destination that refuses a stream (a wrong layout) answers why and
// closes: the source sees a broken pipe, and the answer is still there to read.
async function withRefusal(
  failure: MigrationFailure,
  channel: StreamChannel,
): Promise<MigrationFailure> {
  const cause = failure.cause;
  if (!(cause instanceof Deno.errors.BrokenPipe || cause instanceof Deno.errors.ConnectionReset)) {
    return failure;
  }
  channel.timeoutMs = 1000;
  const ack = await readAck(channel).catch((e) =>
    e instanceof Deno.errors.InvalidData ? e : undefined
  );
  if (ack instanceof Error) {
    // A TLS destination's alert, read by a plaintext source.
    const err = new MigrationError("destination", ack.message, { cause: failure });
    return new MigrationFailure(err, {
      ...failure.report,
      error: err.message,
      failedPhase: err.phase,
    });
  }
  if (ack === undefined || ack.ok) return failure;
  const err = new MigrationError(
    "destination",
    `Destination refused the stream: ${peerText(ack.text)}`,
    { cause: failure },
  );
  return new MigrationFailure(err, {
    ...failure.report,
    error: err.message,
    failedPhase: err.phase,
  });
}

const EXPECTED = {
  switchover: "acknowledge the devices' initial pre-copy data (switchover ack)",
  image: "confirm it holds the whole image",
  verdict: "give its verdict",
} as const;

// Reads the destination's next answer within `ms`: the switchover ack (with
// devices in pre-copy), the interim "image complete" one, or the final
// verdict (its digest). Answers come in that order on the return path.
async function destinationAck(
  from: StreamChannel,
  expect: "switchover" | "image" | "verdict",
  ms: number,
): Promise<string> {
  from.timeoutMs = ms;
  let ack;
  try {
    ack = await readAck(from);
  } catch (e) {
    if (!(e instanceof Deno.errors.TimedOut)) throw e;
    throw new MigrationError(
      "destination",
      `The destination did not ${EXPECTED[expect]} within ${ms / 1000} s`,
      { cause: e },
    );
  }
  if (!ack.ok) {
    throw new MigrationError(
      "destination",
      `Destination rejected the image: ${peerText(ack.text)}`,
    );
  }
  const got = ack.switchover ? "switchover" : ack.image ? "image" : "verdict";
  if (got !== expect) {
    throw new MigrationError(
      "destination",
      `Destination answered out of order: expected ${
        { switchover: "switchover ack", image: "image complete", verdict: "its verdict" }[expect]
      }`,
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
