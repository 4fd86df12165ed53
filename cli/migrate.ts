/**
 * `migrate`: live-migrate guest RAM (with a running Worker workload, and the
 * real VFIO container when a group is named) to a destination.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { GuestMemory } from "../memory/guest_memory.ts";
import { WorkerWriter, type WritePattern } from "../memory/worker_writer.ts";
import { MigrationFailure } from "../migration/precopy.ts";
import type { MigrationReport } from "../migration/report.ts";
import { migrateGuest } from "../migration/source.ts";
import { WorkerWorkload } from "../migration/worker_workload.ts";
import { parseEndpoint } from "../migration/endpoint.ts";
import { guestAddress } from "../sys/address.ts";
import { VfioContainer } from "../vfio/container.ts";
import { VfioDeviceMigration } from "../vfio/device_migration.ts";
import { iommuGroupDevices } from "../vfio/sysfs.ts";
import { UsageError } from "./describe_error.ts";
import { type FillPattern, fillRam } from "./fill.ts";
import { parseChoice, parseInteger, parseRate, parseSize } from "./parse.ts";
import { Progress } from "./progress.ts";
import { peakRssBytes } from "../sys/procfs.ts";

/** The usage text of `migrate`. */
export const MIGRATE_USAGE =
  "usage: mod.ts migrate --to tcp:HOST:PORT|unix:PATH|file:PATH --ram SIZE [--workload random|sequential|hotspot --dirty-rate RATE] [--group N] [--downtime-ms N] [--auto-converge] [--allow-imprecise-device-dirty] [--max-iterations N] [--max-seconds N] [--max-bandwidth RATE] [--fill random|zero|half|untouched] [--seed N] [--report FILE]";

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
  const lines = [
    `migration ${r.result}: ${(r.ramBytes / MiB).toFixed(0)} MiB over ${r.transport}`,
    `  iterations ${r.iterations.length}, stream ${(r.totalBytes / MiB).toFixed(1)} MiB, image in ${
      r.imageMs === undefined ? "-" : `${r.imageMs.toFixed(0)} ms`
    }, throughput ${
      r.imageMs === undefined ? "-" : (r.ramBytes / 1e6 / (r.imageMs / 1000 || 1)).toFixed(0)
    } MB/s; verified, total ${r.totalMs.toFixed(0)} ms`,
    `  downtime ${r.downtimeMs === null ? "-" : `${r.downtimeMs.toFixed(0)} ms`} (expected ${
      r.expectedDowntimeMs === null ? "-" : `${r.expectedDowntimeMs.toFixed(0)} ms`
    }, limit ${r.policy.downtimeLimitMs} ms)`,
    `  dirty scope ${Object.entries(r.dirtyScope).map(([k, v]) => `${k}=${v}`).join(", ") || "-"}`,
    `  policy ${r.policy.applied}`,
  ];
  for (const d of r.devices) {
    lines.push(
      `  device ${d.id}: ${
        d.migrated ? `state migrated (${d.stateBytes} bytes)` : `state not migrated: ${d.reason}`
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
          : `≠ destination ${r.destinationDigest.slice(0, 16)}…`
      }`,
    );
  }
  if (r.peakRssBytes) lines.push(`  peak RSS ${(r.peakRssBytes / MiB).toFixed(0)} MiB`);
  if (r.error) lines.push(`  error: ${r.error}`);
  return lines.join("\n");
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
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        to: { type: "string" },
        ram: { type: "string" },
        workload: { type: "string" },
        "dirty-rate": { type: "string" },
        group: { type: "string" },
        "downtime-ms": { type: "string" },
        "auto-converge": { type: "boolean", default: false },
        "allow-imprecise-device-dirty": { type: "boolean", default: false },
        "max-iterations": { type: "string" },
        "max-seconds": { type: "string" },
        "max-bandwidth": { type: "string" },
        fill: { type: "string" },
        seed: { type: "string" },
        report: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (${MIGRATE_USAGE})`);
  }
  if (values.to === undefined) throw new UsageError(`--to is required (${MIGRATE_USAGE})`);
  try {
    parseEndpoint(values.to);
  } catch (e) {
    throw new UsageError(`--to: ${(e as Error).message}`);
  }
  const ram = parseSize("--ram", values.ram);
  if (ram % 4096 !== 0) throw new UsageError(`--ram ${values.ram} is not a multiple of 4 KiB`);
  const pattern = values.workload === undefined
    ? undefined
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
  const fill: FillPattern = values.fill === undefined
    ? "random"
    : parseChoice("--fill", values.fill, ["random", "zero", "half", "untouched"] as const);
  const seed = values.seed === undefined ? 1 : parseInteger("--seed", values.seed);

  const progress = new Progress();
  using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(ram) }], {
    backing: "memfd",
  });
  fillRam(memory.view(guestAddress(0n), ram), { pattern: fill, seed });
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
      workload,
      vfio,
      devices,
      limits,
      maxBandwidth: values["max-bandwidth"] === undefined
        ? undefined
        : parseRate("--max-bandwidth", values["max-bandwidth"]) || undefined,
      imprecise: values["allow-imprecise-device-dirty"] ? "allow" : "refuse",
      onTracker: (chosen, rejected) =>
        progress.done(
          `cpu dirty tracking: ${chosen}${
            rejected.length
              ? ` (rejected: ${rejected.map((r) => `${r.kind}: ${r.reason}`).join("; ")})`
              : ""
          }`,
        ),
      onProgress: (p) => {
        if (p.row) {
          const r = p.row;
          progress.update(
            `iteration ${r.iteration}: sent ${(r.bytes / MiB).toFixed(1)} MiB at ${
              r.bandwidthMBps.toFixed(0)
            } MB/s, ${r.dirtyPages} pages dirty, expected downtime ${
              Number.isFinite(r.expectedDowntimeMs) ? r.expectedDowntimeMs.toFixed(0) : "∞"
            } ms${r.throttle ? `, throttle ${r.throttle} %` : ""}`,
            { keep: true },
          );
        } else if (p.phase === "stop-and-copy") {
          progress.update("stop-and-copy: workload paused", { keep: true });
        }
      },
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
  if (values.report !== undefined) {
    Deno.writeTextFileSync(values.report, JSON.stringify(report, null, 2) + "\n");
  }
  return code;
}
