/**
 * The pre-copy engine: send all RAM, then send what the merged dirty sources
 * report, iteration by iteration, until the convergence policy says the rest
 * fits the downtime limit; then pause the workload, take a final harvest from
 * every source, save device state, send the rest, mark the image complete
 * (downtime ends when the destination answers), and wait for the
 * destination to verify the image against the source's digest.
 *
 * Device-side dirty tracking with type1 reports every mapped page dirty while
 * a group has not pinned pages (every vfio-pci device). Pre-copy of those
 * pages never converges, so the engine makes it an explicit choice
 * (`imprecise`): `refuse` (the default) fails before anything is sent;
 * `allow` sends those pages once in the bulk pass, leaves them out of later
 * iterations, resends them in full at stop-and-copy, and counts that in the
 * expected downtime.
 *
 * @module
 */

import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { RamAccess } from "../stream/ram.ts";
import type { DirtySource } from "./dirty_source.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import { ConvergencePolicy } from "./convergence.ts";
import { peerText } from "../stream/peer_text.ts";
import { MigrationError } from "./errors.ts";
import {
  type MigrateOptions,
  MigrationFailure,
  type MigrationRam,
  type MigrationSink,
} from "./precopy_types.ts";
import { type IterationRow, type MigrationReport, newReport } from "./report.ts";

export * from "./precopy_types.ts";

const PAGE = 4096;

function bitmapsFor(ram: MigrationRam): DirtyBitmap[] {
  return ram.regions.map((r) => new DirtyBitmap(r.pages));
}

function count(bitmaps: DirtyBitmap[]): number {
  return bitmaps.reduce((n, b) => n + b.count(), 0);
}

function andNot(bitmaps: DirtyBitmap[], mask: DirtyBitmap[] | undefined): void {
  if (mask === undefined) return;
  bitmaps.forEach((b, i) => {
    const w = b.words, m = mask[i].words;
    for (let j = 0; j < w.length; j++) if (w[j] !== 0) w[j] &= ~m[j];
  });
}

/** Sends every run of dirty pages, region by region. */
async function sendDirty(
  sink: MigrationSink,
  ram: RamAccess,
  dirty: DirtyBitmap[],
): Promise<{ sentPages: number; zeroPages: number }> {
  let sentPages = 0;
  let zeroPages = 0;
  const zerosOf = (result: unknown) => {
    const z = (result as { zeroPages?: number } | undefined)?.zeroPages;
    if (typeof z === "number") zeroPages += z;
  };
  for (let i = 0; i < dirty.length; i++) {
    const base = ram.layout[i].gpa;
    const runs: number[] = [];
    dirty[i].forEachRun((first, n) => void runs.push(first, n));
    for (let k = 1; k < runs.length; k += 2) sentPages += runs[k];
    if (sink.writePageRuns) {
      // Scattered dirty pages go in one call per region.
      if (runs.length > 0) zerosOf(await sink.writePageRuns(ram, base, runs));
      continue;
    }
    for (let k = 0; k < runs.length; k += 2) {
      zerosOf(await sink.writePages(ram, base + BigInt(runs[k] * PAGE), runs[k + 1]));
    }
  }
  return { sentPages, zeroPages };
}

function phaseOf(e: unknown, fallback: string): MigrationError {
  if (e instanceof MigrationError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new MigrationError(fallback, `Migration failed in ${fallback}: ${message}`, { cause: e });
}

/**
 * Runs a pre-copy live migration of guest RAM into a stream.
 *
 * On failure the workload is resumed, sources are stopped, and a
 * {@linkcode MigrationFailure} carrying the report is thrown: the source's
 * RAM is untouched and keeps running.
 *
 * @param options The RAM, sink, sources, workload, limits and policy.
 * @returns The report of a completed migration. The workload stays paused:
 *   the destination now owns the guest.
 * @throws {MigrationFailure} When the policy refuses, migration cannot
 *   converge within its limits, or anything fails.
 *
 * @example
 * ```ts ignore
 * const report = await migrate({ ram, sink: writer, sources: [cpu, vfio], digest, transport });
 * console.log(report.downtimeMs);
 * ```
 */
export async function migrate(options: MigrateOptions): Promise<MigrationReport> {
  const { ram, sources, signal } = options;
  const policy = new ConvergencePolicy(options.limits);
  const imprecise = options.imprecise ?? "refuse";
  const t0 = options.startedAt ?? performance.now();
  const layout = ram.regions.map((r) => ({ gpa: r.gpa, size: r.size }));
  const ramAccess: RamAccess = {
    layout,
    view: (gpa, n) => ram.view(gpa, n),
    unpopulated: ram.unpopulated && ((gpa, n) => ram.unpopulated!(gpa, n)),
  };
  const report = newReport({
    transport: options.transport,
    ramBytes: Number(layout.reduce((n, r) => n + r.size, 0n)),
    imprecise,
    applied: "precise sources only",
    limits: policy.limits,
  });
  const scope = report.dirtyScope;
  report.devices = (options.devices ?? []).map((d) => ({
    id: d.id,
    migrated: false,
    ...(d.supported ? {} : { reason: d.reason ?? "not supported" }),
  }));
  let started: DirtySource[] = [];
  let paused = false;
  let deviceStopped = false;
  let sink: MigrationSink | undefined = typeof options.sink === "function"
    ? undefined
    : options.sink;
  const fail = (e: unknown, phase: string): never => {
    // An abort (the migration's own deadline) is blamed on the phase it stopped.
    const err = phaseOf(signal?.aborted ? signal.reason : e, phase);
    report.result = "failed";
    report.error = err.message;
    report.failedPhase = err.phase;
    report.totalMs = performance.now() - t0;
    report.totalBytes = sink?.bytesWritten ?? 0;
    throw new MigrationFailure(err, report);
  };
  let phase = "setup";
  try {
    signal?.throwIfAborted();
    // Setup: start every source and learn its scope from a first harvest.
    for (const s of sources) {
      s.start();
      started.push(s);
    }
    let fixed: DirtyBitmap[] | undefined;
    const probe = bitmapsFor(ram);
    for (const s of sources) {
      const h = s.harvestInto(probe);
      scope[s.name] = h.scope;
      if (h.scope === "all-mapped") {
        const mapped = (h.coveredPages * PAGE) / 2 ** 20;
        if (imprecise === "refuse") {
          throw new MigrationError(
            "setup",
            `Cannot migrate: ${s.name} reports every mapped page dirty on every query (all-mapped scope: ` +
              `a group in the container has not pinned pages, as with every vfio-pci device), so pre-copy of its ` +
              `${
                mapped.toFixed(0)
              } MiB would never converge; allow it with --allow-imprecise-device-dirty ` +
              `(those pages are resent in full at stop-and-copy)`,
          );
        }
        fixed ??= bitmapsFor(ram);
        s.coverInto(fixed);
      }
    }
    if (fixed !== undefined) {
      report.policy.applied = `imprecise device dirty allowed: ${
        (count(fixed) * PAGE / 2 ** 20).toFixed(1)
      } MiB sent in the bulk pass and again in full at stop-and-copy`;
    }
    const fixedBytes = fixed ? count(fixed) * PAGE : 0;
    // Tracking is on: only now is the destination kept waiting.
    if (sink === undefined) sink = await (options.sink as () => Promise<MigrationSink>)();
    await sink.writeHeader(layout, PAGE);

    // Pre-copy: iteration 0 sends everything.
    phase = "precopy";
    let dirty = bitmapsFor(ram);
    for (const b of dirty) b.fillAll();
    for (let iteration = 0;; iteration++) {
      signal?.throwIfAborted();
      const before = sink.bytesWritten;
      const start = performance.now();
      const { sentPages, zeroPages } = await sendDirty(sink, ramAccess, dirty);
      await sink.writeIteration(iteration);
      const durationMs = performance.now() - start;
      const bytes = sink.bytesWritten - before;
      // Harvest every source into its own bitmaps, then merge. A source whose
      // harvest can race a writer (soft-dirty) gets the workload paused around it.
      const merged = bitmapsFor(ram);
      const bySource: Record<string, number> = {};
      const hold = options.workload !== undefined &&
        sources.some((s) => s.concurrentSafe === false);
      if (hold) await options.workload!.pause();
      try {
        for (const s of sources) {
          const own = bitmapsFor(ram);
          const h = s.harvestInto(own);
          scope[s.name] = h.scope;
          bySource[s.name] = count(own);
          merged.forEach((b, i) => b.orMerge(own[i]));
        }
      } finally {
        if (hold) await options.workload!.resume();
      }
      andNot(merged, fixed);
      const dirtyPages = count(merged);
      const decision = policy.decide({
        sentBytes: bytes,
        durationMs,
        dirtyBytes: dirtyPages * PAGE,
        fixedBytes,
        elapsedMs: performance.now() - t0,
      });
      const row: IterationRow = {
        iteration,
        dirtyPagesBySource: bySource,
        dirtyPages,
        sentPages,
        zeroPages,
        bytes,
        durationMs,
        bandwidthMBps: bytes / 1e6 / Math.max(durationMs / 1000, 1e-6),
        expectedDowntimeMs: decision.expectedDowntimeMs,
        throttle: decision.action === "fail" ? policy.throttle : decision.throttle,
      };
      report.iterations.push(row);
      options.onProgress?.({ phase: "precopy", row, bytes: sink.bytesWritten });
      if (decision.action === "fail") {
        throw new MigrationError("precopy", `Cannot migrate: ${decision.reason}`);
      }
      if (
        decision.action === "iterate" &&
        decision.throttle !== (report.iterations.at(-2)?.throttle ?? 0)
      ) {
        options.workload?.setThrottle(decision.throttle);
      }
      dirty = merged;
      if (decision.action === "stop-and-copy") {
        report.expectedDowntimeMs = decision.expectedDowntimeMs;
        break;
      }
    }

    // Stop-and-copy.
    signal?.throwIfAborted();
    phase = "stop-and-copy";
    options.onProgress?.({ phase, bytes: sink.bytesWritten });
    const pausedAt = performance.now();
    await options.workload?.pause();
    paused = true;
    for (const s of sources) s.harvestInto(dirty);
    if (fixed) dirty.forEach((b, i) => b.orMerge(fixed[i]));
    const states: [DeviceMigrator, Uint8Array][] = [];
    phase = "device";
    for (const d of options.devices ?? []) {
      if (!d.supported) continue;
      deviceStopped = true;
      states.push([d, await d.saveState()]);
    }
    phase = "stop-and-copy";
    const stopCopyPages = (await sendDirty(sink, ramAccess, dirty)).sentPages;
    for (const [d, bytes] of states) {
      await sink.writeDeviceState(d.id, bytes);
      const entry = report.devices.find((e) => e.id === d.id)!;
      entry.migrated = true;
      entry.stateBytes = bytes.byteLength;
    }
    await sink.writeComplete();
    phase = "destination";
    await options.destinationImage?.();
    const imageAt = performance.now();
    report.downtimeMs = imageAt - pausedAt;
    report.imageMs = imageAt - t0;
    report.stopCopyPages = stopCopyPages;
    // Verification: the source digests its paused RAM while the destination
    // digests its own; the destination answers END with the verdict.
    phase = "stop-and-copy";
    const digest = options.digest();
    report.verifyMs = performance.now() - imageAt;
    report.sourceDigest = digest.hex;
    await sink.writeEnd(digest.bytes);
    phase = "destination";
    report.destinationDigest = options.destinationReady ? await options.destinationReady() : null;
    if (report.destinationDigest !== null && report.destinationDigest !== digest.hex) {
      throw new MigrationError(
        "destination",
        `The destination verified a different image: its digest ${
          report.destinationDigest === ""
            ? "is empty"
            : `${peerText(report.destinationDigest, { max: 128 })} differs`
        } from the source's ${digest.hex}`,
      );
    }
    // The destination owns a verified image now: a source that fails to stop
    // tracking is worth a warning, not a failed migration.
    for (const s of started) {
      try {
        s.stop();
      } catch (e) {
        (report.warnings ??= []).push(
          `Cannot stop ${s.name}: ${e instanceof Error ? e.message : e}`,
        );
      }
    }
    started = [];
    report.result = "completed";
    report.totalMs = performance.now() - t0;
    report.totalBytes = sink.bytesWritten;
    options.onProgress?.({ phase: "done", bytes: sink.bytesWritten });
    return report;
  } catch (e) {
    for (const s of started) {
      try {
        s.stop();
      } catch {
        // Keep the first failure; the source is stopping anyway.
      }
    }
    if (deviceStopped) {
      for (const d of options.devices ?? []) if (d.supported) d.resumeRunning();
    }
    // The source runs on: resumed before the failure is reported.
    if (paused) {
      await Promise.resolve(options.workload?.resume()).catch((r) =>
        (report.warnings ??= []).push(`Cannot resume the workload: ${r}`)
      );
    }
    if (policy.throttle > 0) options.workload?.setThrottle(0);
    return fail(e, phase);
  }
}
