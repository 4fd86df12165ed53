/**
 * `migrate`: live-migrate guest RAM (with a running Worker workload, or the
 * KVM test guest running on it with `--guest kvm`, and the real VFIO
 * container when a group is named) to a destination.
 *
 * @module
 */

import { describeSelection } from "../migration/engine/source_selection.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { WorkerWriter, type WritePattern } from "../memory/worker_writer.ts";
import { MigrationFailure } from "../migration/engine/precopy.ts";
import type { MigrationReport } from "../migration/engine/report.ts";
import { DEFAULT_PEER_TIMEOUT_MS, migrateGuest } from "../migration/guest/source.ts";
import { checkHostCapacity, formatBytes } from "../memory/host_capacity.ts";
import type { MigrationEvent } from "../migration/engine/status.ts";
import { escapeControl, peerText } from "../migration/stream/peer_text.ts";
import { WorkerWorkload } from "../migration/guest/worker_workload.ts";
import { parseEndpoint } from "../migration/transport/endpoint.ts";
import { guestAddress } from "../sys/address.ts";
import { VfioContainer } from "../vfio/container.ts";
import { VfioDeviceMigration } from "../vfio/device_migration.ts";
import { iommuGroupDevices } from "../vfio/sysfs.ts";
import { UsageError } from "./describe_error.ts";
import { MAX_CHANNELS } from "../migration/stream/channel_hello.ts";
import { checkFillFile, type FillPattern, fillRam, fillRamFromFile } from "./fill.ts";
import { helpText, parseCommand } from "./flags.ts";
import { parseChoice, parseInteger, parseRate, parseSeconds, parseSize } from "./parse.ts";
import { ReportFile } from "./report_file.ts";
import { abortWhenStdinCloses } from "./terminate.ts";
import { Progress } from "./progress.ts";
import { SOURCE_TLS_FLAGS, sourceTls } from "./_tls_flags.ts";
import { peakRssBytes } from "../sys/procfs.ts";
import { GUEST_LAYOUT } from "../kvm/guest/layout.ts";
import { checkKvmFlags, openKvm, parseGuest, parseKvmDirty } from "./_kvm_guest.ts";
import { migrateKvmGuest } from "./_kvm_migrate.ts";

/** The flags of `migrate`. */
export const MIGRATE_COMMAND = {
  name: "migrate",
  summary:
    "Live-migrate guest RAM (with a Worker writing it, or the KVM test guest running on it, and the real VFIO container when a group is named) to a destination started with `receive`.",
  flags: {
    to: {
      type: "string",
      value: "ENDPOINT",
      help: "the destination: tls:HOST:PORT, tcp:HOST:PORT, unix:PATH, or file:PATH (required)",
    },
    ...SOURCE_TLS_FLAGS,
    ram: { type: "string", value: "SIZE", help: "guest RAM, such as 256M or 1G (required)" },
    fill: {
      type: "string",
      value: "random|zero|half|text|untouched",
      help: "what the RAM holds before migration",
      default: "random",
    },
    "fill-from": {
      type: "string",
      value: "FILE",
      help: "fill the RAM with this file's bytes instead (its size must be --ram)",
    },
    seed: {
      type: "string",
      value: "N",
      help: "seed of the random fill and workload",
      default: "1",
    },
    workload: {
      type: "string",
      value: "random|sequential|hotspot",
      help:
        "a Worker that writes the RAM during pre-copy, as vCPUs would (with --guest kvm: the guest's pattern, default random)",
    },
    guest: {
      type: "string",
      value: "worker|kvm",
      help:
        "kvm: boot the test guest on KVM and migrate it running (KVM's dirty log drives pre-copy, its vCPU state goes with the RAM)",
      default: "worker",
    },
    "kvm-dirty": {
      type: "string",
      value: "bitmap|ring",
      help: "with --guest kvm: KVM's dirty bitmap or its per-vCPU dirty ring",
      default: "bitmap",
    },
    "heartbeat-ms": {
      type: "string",
      value: "N",
      help: "with --guest kvm: the guest's heartbeat period on its serial port (0: none)",
      default: "250",
    },
    "run-before-ms": {
      type: "string",
      value: "N",
      help: "with --guest kvm: how long the guest runs before the migration starts",
      default: "0",
    },
    "kvm-device": {
      type: "string",
      value: "PATH",
      help: "with --guest kvm: the KVM device",
      default: "/dev/kvm",
    },
    "dirty-rate": {
      type: "string",
      value: "RATE",
      help: "how fast the workload writes, such as 32M (bytes/s; 0 = full speed)",
      default: "0",
    },
    group: { type: "string", value: "N", help: "map the RAM into this VFIO group's container" },
    "allow-imprecise-device-dirty": {
      type: "boolean",
      help:
        "migrate although the container reports every mapped page dirty (resent at stop-and-copy)",
    },
    "downtime-ms": {
      type: "string",
      value: "N",
      help: "stop and copy once the expected downtime is at most this",
      default: "300",
    },
    "max-iterations": {
      type: "string",
      value: "N",
      help: "fail after this many pre-copy iterations",
      default: "30",
    },
    "max-seconds": {
      type: "string",
      value: "N",
      help: "fail (resuming the guest) if the whole migration takes longer",
      default: "120",
    },
    "auto-converge": {
      type: "boolean",
      help: "throttle the workload when it dirties faster than pages are sent",
    },
    "max-bandwidth": {
      type: "string",
      value: "RATE",
      help: "cap the stream at this many bytes/s, such as 100M (at least 64K)",
      default: "no cap",
    },
    compress: {
      type: "string",
      value: "zstd|auto|none",
      help:
        "compress RAM runs with zstd, for links slower than memory (runs that do not compress go raw; needs libzstd); auto compresses only while that is estimated faster than sending raw (it times zstd and the link as it goes)",
      default: "none",
    },
    channels: {
      type: "string",
      value: "N",
      help:
        "send RAM over N parallel connections (tcp:, tls:, unix:), each fed by a Worker; receive needs the same N",
      default: "1",
    },
    "peer-timeout": {
      type: "string",
      value: "SECONDS",
      help: "fail (resuming the guest) when the destination makes no progress for this long",
      default: String(DEFAULT_PEER_TIMEOUT_MS / 1000),
    },
    report: { type: "string", value: "FILE", help: "write the JSON report here" },
    "until-stdin-closes": {
      type: "boolean",
      help: "fail (resuming the guest) when stdin reaches its end, as when a parent dies",
    },
  },
  notes: [
    "Exit status: 0 when the destination verified an image equal to the source's, 1 on any",
    "failure (the guest runs on), 2 for bad arguments.",
  ],
} as const;

/** The smallest `--max-bandwidth`: below it a migration of any size cannot finish. */
const MIN_BANDWIDTH = 64 * 1024;

const MiB = 2 ** 20;

/**
 * Formats a report's outcome in a few lines.
 *
 * @param r The report.
 * @returns The text.
 *
 * @example
 * ```ts ignore
 * console.log(summarize(report));
 * ```
 */
export function summarize(r: MigrationReport): string {
  const verified = r.result === "completed" && r.destinationDigest !== null &&
    r.destinationDigest === r.sourceDigest;
  const lines = [
    `migration ${r.result}: ${(r.ramBytes / MiB).toFixed(0)} MiB over ${peerText(r.transport)}`,
    `  iterations ${r.iterations.length}, stream ${(r.totalBytes / MiB).toFixed(1)} MiB, image in ${
      r.imageMs === undefined ? "-" : `${r.imageMs.toFixed(0)} ms`
    }, throughput ${
      r.imageMs === undefined ? "-" : (r.ramBytes / 1e6 / (r.imageMs / 1000 || 1)).toFixed(0)
    } MB/s; ${
      verified
        ? "verified"
        : r.result === "completed"
        ? "not verified (the destination is not live)"
        : "not verified"
    }, total ${r.totalMs.toFixed(0)} ms`,
    `  downtime ${r.downtimeMs === null ? "-" : `${r.downtimeMs.toFixed(0)} ms`} (expected ${
      r.expectedDowntimeMs === null ? "-" : `${r.expectedDowntimeMs.toFixed(0)} ms`
    }, limit ${r.policy.downtimeLimitMs} ms)`,
    ...(r.switchoverWaitMs === undefined ? [] : [
      `  switchover ack ${
        r.switchoverWaitMs.toFixed(0)
      } ms after ready (the destination loaded the devices' initial pre-copy data)`,
    ]),
    ...(r.compression === undefined ? [] : [compressionLine(r.compression)]),
    `  dirty scope ${Object.entries(r.dirtyScope).map(([k, v]) => `${k}=${v}`).join(", ") || "-"}`,
    `  policy ${r.policy.applied}`,
    ...(r.sourceSelection ? describeSelection(r.sourceSelection).map((l) => `  ${l}`) : []),
  ];
  for (const d of r.devices) {
    lines.push(
      `  device ${d.id}: ${
        !d.migrated
          ? `state not migrated: ${d.reason}`
          : d.precopyBytes === undefined
          ? `state migrated (${d.stateBytes} bytes)`
          : `state migrated (${d.stateBytes} bytes: ${d.precopyBytes} in pre-copy, ${d.stopCopyBytes} at stop-and-copy)`
      }`,
    );
  }
  if (r.sourceDigest) {
    lines.push(
      `  digest ${r.sourceDigest.slice(0, 16)}… ${
        r.destinationDigest === null
          ? "(destination not live: verify with receive)"
          : r.destinationDigest === r.sourceDigest
          ? "= destination"
          : `≠ destination ${peerText(r.destinationDigest, { max: 16 })}`
      }`,
    );
  }
  if (r.peakRssBytes) lines.push(`  peak RSS ${(r.peakRssBytes / MiB).toFixed(0)} MiB`);
  if (r.error) lines.push(`  error: ${escapeControl(r.error)}`);
  return lines.join("\n");
}

// What compression saved: raw bytes against bytes on the wire.
function compressionLine(c: NonNullable<MigrationReport["compression"]>): string {
  const ratio = c.rawBytes === 0 ? "-" : (c.wireBytes / c.rawBytes).toFixed(3);
  return `  compression ${c.policy === "auto" ? "auto " : ""}${c.codec}: ${
    (c.rawBytes / MiB).toFixed(1)
  } MiB of runs raw, ${
    (c.wireBytes / MiB).toFixed(1)
  } MiB on the wire (${ratio}); ${c.compressedRuns} of ${c.runs} runs compressed${
    c.policy === "auto"
      ? `; auto: ${c.wireRawRuns} runs raw as the wire was faster, ${c.sampledRuns} sampled`
      : ""
  }`;
}

/**
 * The progress line for an event: a kept line per iteration and status
 * change, a live line during iterations (percent, bytes, rate), and, when the
 * guest dirties pages faster than they are sent, that instead of a percentage.
 *
 * @param e The event.
 * @returns The line, and whether it is kept; `undefined` for nothing to show.
 *
 * @example
 * ```ts ignore
 * migrateGuest({ ..., onEvent: (e) => console.log(progressLine(e)?.text) });
 * ```
 */
export function progressLine(e: MigrationEvent): { text: string; keep: boolean } | undefined {
  const c = e.counters;
  const rate = `${(c.throughputMbps / 1000).toFixed(2)} Gbit/s`;
  if (e.type === "status") {
    if (c.status === "device") return { text: "stop-and-copy: guest paused", keep: true };
    return undefined;
  }
  if (e.type === "switchover") {
    return { text: "switchover ack: the destination holds the devices' initial data", keep: true };
  }
  if (e.type === "iteration") {
    const r = e.row;
    const down = Number.isFinite(r.expectedDowntimeMs) ? r.expectedDowntimeMs.toFixed(0) : "∞";
    const head = c.outpaced
      ? `dirtying outpaces sending: ${c.dirtyPagesRate.toFixed(0)} pages/s dirtied`
      : `${c.percent.toFixed(1)} %`;
    return {
      text:
        `iteration ${r.iteration}: ${head}; sent ${formatBytes(r.bytes)} at ${
          r.bandwidthMBps.toFixed(0)
        } MB/s (${r.zeroPages} of ${r.sentPages} pages zero), ${r.dirtyPages} pages dirty, ` +
        `expected downtime ${down} ms${r.throttle ? `, throttle ${r.throttle} %` : ""}${
          r.deviceBytes === undefined ? "" : `; device pre-copy ${formatBytes(r.deviceBytes)}`
        }`,
      keep: true,
    };
  }
  const head = c.outpaced ? "dirtying outpaces sending" : `${c.percent.toFixed(1)} %`;
  return {
    text: `${c.status === "device" ? "stop-and-copy" : `iteration ${c.iterations}`}: ${head}, ${
      formatBytes(c.transferredBytes)
    } sent, ${formatBytes(c.remainingBytes)} remaining, ${rate}`,
    keep: false,
  };
}

/**
 * Runs `migrate`.
 *
 * @param args The arguments after `migrate`.
 * @returns The exit status: 0 when the destination verified the image.
 * @throws {UsageError} For bad arguments.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runMigrate(["--to", "tcp:127.0.0.1:4444", "--ram", "256M"]));
 * ```
 */
export async function runMigrate(args: string[]): Promise<number> {
  const parsed = parseCommand(MIGRATE_COMMAND, args);
  if (parsed === "help") {
    console.log(helpText(MIGRATE_COMMAND));
    return 0;
  }
  const { values } = parsed;
  if (values.to === undefined) throw new UsageError("--to is required (see --help)");
  let endpoint;
  try {
    endpoint = parseEndpoint(values.to);
  } catch (e) {
    throw new UsageError(`--to: ${(e as Error).message}`);
  }
  const tls = sourceTls(endpoint, values);
  const ram = parseSize("--ram", values.ram);
  if (ram % 4096 !== 0) throw new UsageError(`--ram ${values.ram} is not a multiple of 4 KiB`);
  const guest = parseGuest(values.guest);
  checkKvmFlags(guest, values, ["kvm-dirty", "heartbeat-ms", "run-before-ms", "kvm-device"]);
  const pattern = values.workload === undefined
    ? guest === "kvm" ? "random" : undefined
    : parseChoice("--workload", values.workload, ["random", "sequential", "hotspot"] as const);
  if (values["dirty-rate"] !== undefined && pattern === undefined) {
    throw new UsageError("--dirty-rate needs --workload");
  }
  const rate = values["dirty-rate"] === undefined
    ? 0
    : parseRate("--dirty-rate", values["dirty-rate"]);
  const group = values.group === undefined ? undefined : parseInteger("--group", values.group);
  const limits = {
    downtimeLimitMs: values["downtime-ms"] === undefined
      ? undefined
      : parseInteger("--downtime-ms", values["downtime-ms"], { min: 1 }),
    maxIterations: values["max-iterations"] === undefined
      ? undefined
      : parseInteger("--max-iterations", values["max-iterations"], { min: 1 }),
    maxTotalMs: values["max-seconds"] === undefined
      ? undefined
      : parseInteger("--max-seconds", values["max-seconds"], { min: 1 }) * 1000,
    autoConverge: values["auto-converge"],
  };
  const maxBandwidth = values["max-bandwidth"] === undefined
    ? undefined
    : parseRate("--max-bandwidth", values["max-bandwidth"]) || undefined;
  if (maxBandwidth !== undefined && maxBandwidth < MIN_BANDWIDTH) {
    throw new UsageError(
      `--max-bandwidth ${values["max-bandwidth"]} is ${maxBandwidth} bytes/s; the cap must be at ` +
        `least 64K (at ${maxBandwidth} bytes/s, 1 GiB would take ${
          (2 ** 30 / maxBandwidth / 86400).toFixed(0)
        } days)`,
    );
  }
  const compress = values.compress === undefined
    ? "none"
    : parseChoice("--compress", values.compress, ["zstd", "auto", "none"] as const);
  const channels = values.channels === undefined
    ? 1
    : parseInteger("--channels", values.channels, { min: 1 });
  if (channels > MAX_CHANNELS) {
    throw new UsageError(`--channels ${channels}: at most ${MAX_CHANNELS} parallel channels`);
  }
  if (channels > 1 && values.to.startsWith("file:")) {
    throw new UsageError(`--channels ${channels}: a file: destination takes one stream`);
  }
  const peerTimeoutMs = values["peer-timeout"] === undefined
    ? DEFAULT_PEER_TIMEOUT_MS
    : parseSeconds("--peer-timeout", values["peer-timeout"]);
  const fill: FillPattern = values.fill === undefined
    ? "random"
    : parseChoice("--fill", values.fill, ["random", "zero", "half", "text", "untouched"] as const);
  const seed = values.seed === undefined ? 1 : parseInteger("--seed", values.seed);
  // Checked before any work: a bad path must not turn a migration into a failure.
  using reportFile = values.report === undefined
    ? undefined
    : ReportFile.open("--report", values.report);
  // Filling writes every page: more than the host can back fails here, in one line.
  const fillFrom = values["fill-from"];
  if (fillFrom !== undefined) {
    if (values.fill !== undefined) {
      throw new UsageError("--fill-from and --fill exclude each other");
    }
    if (guest === "kvm") {
      throw new UsageError("--fill-from is for the Worker guest, not --guest kvm");
    }
    checkFillFile("--fill-from", fillFrom, ram);
  }
  if (fill !== "untouched" || fillFrom !== undefined) {
    checkHostCapacity(ram, { what: `--ram ${values.ram}` });
  }
  const heartbeatMs = values["heartbeat-ms"] === undefined
    ? 250
    : parseInteger("--heartbeat-ms", values["heartbeat-ms"]);
  if (guest === "kvm" && BigInt(ram) <= GUEST_LAYOUT.data) {
    throw new UsageError(`--ram ${values.ram}: the KVM test guest needs more than 1 MiB`);
  }
  // Where /dev/kvm is missing or not permitted this fails first, in one line.
  using kvm = guest === "kvm" ? openKvm(values["kvm-device"]) : undefined;

  const stop = new AbortController();
  if (values["until-stdin-closes"]) void abortWhenStdinCloses(stop);
  const progress = new Progress();
  using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(ram) }], {
    backing: "memfd",
  });
  if (fillFrom !== undefined) {
    fillRamFromFile(memory.view(guestAddress(0n), ram), fillFrom);
  } else {
    // The KVM test guest's own pages (below GUEST_LAYOUT.data) are its image's.
    const from = kvm === undefined ? 0 : Number(GUEST_LAYOUT.data);
    fillRam(memory.view(guestAddress(BigInt(from)), ram - from), { pattern: fill, seed });
  }
  using stack = new DisposableStack();
  let vfio: { container: VfioContainer } | undefined;
  const devices: VfioDeviceMigration[] = [];
  if (group !== undefined) {
    const container = stack.use(VfioContainer.open());
    const g = stack.use(container.attachGroup(group));
    stack.use(memory.mapInto(container));
    vfio = { container };
    progress.done(
      `vfio: group ${group} attached; ${(ram / MiB).toFixed(0)} MiB mapped at IOVA = GPA`,
    );
    for (const name of iommuGroupDevices(group)) {
      const migration = VfioDeviceMigration.probe(stack.use(g.openDevice(name)));
      devices.push(migration);
      progress.done(
        `vfio: device ${name}: ${
          migration.supported
            ? "migration v2 supported"
            : `state will not migrate (${migration.reason})`
        }`,
      );
    }
  }
  const onEvent = (e: MigrationEvent) => {
    const line = progressLine(e);
    if (line !== undefined) progress.update(line.text, { keep: line.keep });
  };
  if (kvm !== undefined) {
    return await migrateKvmGuest(kvm, {
      memory,
      to: values.to,
      tls,
      pattern: pattern!,
      rate,
      seed,
      filled: fill === "random" || fill === "half" || fill === "text",
      heartbeatMs,
      runBeforeMs: values["run-before-ms"] === undefined
        ? 0
        : parseInteger("--run-before-ms", values["run-before-ms"]),
      dirtyLog: parseKvmDirty(values["kvm-dirty"]),
      limits,
      maxBandwidth,
      compress,
      channels,
      peerTimeoutMs,
      signal: stop.signal,
      vfio,
      devices,
      imprecise: values["allow-imprecise-device-dirty"] ? "allow" : "refuse",
      progress,
      reportFile,
      onEvent,
      summarize,
    });
  }
  let writer: WorkerWriter | undefined;
  let workload: WorkerWorkload | undefined;
  if (pattern !== undefined) {
    const pagesPerSecond = Math.round(rate / 4096);
    writer = await WorkerWriter.start(memory, {
      pattern: pattern as WritePattern,
      pagesPerSecond,
      seed,
    });
    workload = new WorkerWorkload([writer], { pagesPerSecond });
    progress.done(
      `workload: ${pattern} writes at ${
        rate === 0 ? "full speed" : `${(rate / MiB).toFixed(1)} MiB/s`
      }`,
    );
  }
  let report: MigrationReport;
  let code = 0;
  try {
    report = await migrateGuest({
      memory,
      to: values.to,
      tls,
      workload,
      vfio,
      devices,
      limits,
      maxBandwidth,
      compress,
      channels,
      peerTimeoutMs,
      signal: stop.signal,
      imprecise: values["allow-imprecise-device-dirty"] ? "allow" : "refuse",
      onTracker: (chosen, rejected) =>
        progress.done(
          `cpu dirty tracking: ${chosen}${
            rejected.length
              ? ` (rejected: ${rejected.map((r) => `${r.kind}: ${r.reason}`).join("; ")})`
              : ""
          }`,
        ),
      onEvent,
    });
  } catch (e) {
    if (!(e instanceof MigrationFailure)) throw e;
    report = e.report;
    code = 1;
  } finally {
    await writer?.stop();
  }
  report.peakRssBytes = peakRssBytes();
  progress.done(summarize(report));
  reportFile?.write(JSON.stringify(report, null, 2) + "\n");
  return code;
}
