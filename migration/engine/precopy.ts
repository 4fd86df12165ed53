/**
 * The pre-copy engine, in the phases QEMU and Cloud Hypervisor name:
 *
 * - **setup**: start every dirty source, learn its scope, open the stream,
 *   and put every device that offers `PRE_COPY` into it;
 * - **iterate**: send all RAM, then what the merged sources report, with
 *   each pre-copy device's data beside it (QEMU's `vfio_save_iterate`),
 *   until the convergence policy says the rest fits the downtime limit and
 *   every device's initial data is sent; then wait for the destination's
 *   switchover ack (live transports) and decide once more;
 * - **stop-and-copy**: pause the workload, take a final harvest, save
 *   device state, send the rest, mark the image complete (the downtime ends
 *   when the destination answers);
 * - **complete**: digest the paused RAM while the destination digests its
 *   own, and require its verdict to carry the same digest;
 * - **cleanup**: stop the sources, whatever happened.
 *
 * Each phase that changes the guest pushes its undo (resume the workload,
 * run the devices again, lift the throttle) on a stack that runs only on
 * failure, so the source's guest runs on and its RAM is untouched; a
 * failure is blamed on the phase that was running.
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

import { complete } from "./_complete.ts";
import { iterate } from "./_iterate.ts";
import { MigrationRun } from "./_run.ts";
import { setup } from "./_setup.ts";
import { stopAndCopy } from "./_stop_and_copy.ts";
import type { MigrationReport } from "./report.ts";
import { type MigrateOptions, MigrationFailure } from "./types.ts";

/**
 * Runs a pre-copy live migration of guest RAM into a stream.
 *
 * On failure the workload is resumed, devices run again, sources are
 * stopped, and a {@linkcode MigrationFailure} carrying the report is thrown:
 * the source's RAM is untouched and keeps running.
 *
 * @param options The RAM, sink, sources, workload, limits, policy and subscriber.
 * @returns The report of a completed migration. The workload stays paused:
 *   the destination now owns the guest.
 * @throws {MigrationFailure} When the policy refuses, migration cannot
 *   converge within its limits, or anything fails; `phase` names the phase
 *   that was running.
 *
 * @example
 * ```ts ignore
 * const report = await migrate({ ram, sink: writer, sources: [cpu, vfio], digest, transport });
 * console.log(report.downtimeMs);
 * ```
 */
export async function migrate(options: MigrateOptions): Promise<MigrationReport> {
  const run = new MigrationRun(options);
  const { report } = run;
  try {
    await setup(run);
    const dirty = await iterate(run);
    await stopAndCopy(run, dirty);
    await complete(run);
    // The destination owns a verified image now: the guest stays paused.
    run.undo.move();
    report.result = "completed";
  } catch (e) {
    const err = run.failure(e);
    report.result = "failed";
    report.error = err.message;
    report.failedPhase = err.phase;
    // The source runs on: its undo runs before the failure is reported.
    await run.undo.disposeAsync();
    await finish(run);
    run.status("failed");
    throw new MigrationFailure(err, report);
  }
  await finish(run);
  run.status("completed");
  return report;
}

async function finish(run: MigrationRun): Promise<void> {
  const failedIn = run.phase;
  run.enter("cleanup");
  await run.cleanup.disposeAsync();
  run.refresh();
  run.report.totalMs = run.counters.totalMs;
  run.report.totalBytes = run.bytes;
  const compression = run.sink?.compression;
  if (compression !== undefined) run.report.compression = compression;
  // The phase a failure was blamed on stays in the counters.
  if (run.report.result === "failed") run.counters.phase = failedIn;
}

export * from "./types.ts";
