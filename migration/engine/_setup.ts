// Setup: start every dirty source (each stops again in cleanup), learn its
// scope from a first harvest, let the finest device source serve each
// region (the others stop), apply the policy for the all-mapped scope,
// then open the stream and write its header.

import { MigrationError } from "./errors.ts";
import { count } from "./_send.ts";
import { type MigrationRun, PAGE } from "./_run.ts";
import type { MigrationSink } from "./types.ts";
import { startDevicePrecopy } from "./_device_precopy.ts";
import { selectDeviceSources, type SourceCandidate } from "./source_selection.ts";

export async function setup(run: MigrationRun): Promise<void> {
  const { options, report } = run;
  run.enter("setup");
  run.status("setup");
  run.checkSignal();
  for (const s of options.sources) {
    s.start();
    run.cleanup.defer(() => {
      try {
        s.stop();
      } catch (e) {
        // Stopping is best effort; after a verified image it is worth a warning.
        if (report.result === "completed") {
          (report.warnings ??= []).push(
            `Cannot stop ${s.name}: ${e instanceof Error ? e.message : e}`,
          );
        }
      }
    });
  }
  const probe = run.bitmaps();
  const candidates: SourceCandidate[] = [];
  for (const s of options.sources) {
    const h = s.harvestInto(probe);
    report.dirtyScope[s.name] = h.scope;
    if (s.devices === undefined) continue;
    const covered = run.bitmaps();
    s.coverInto(covered);
    candidates.push({ source: s, scope: h.scope, coveredPages: covered.map((b) => b.count()) });
  }
  if (candidates.length > 0 || (options.unavailableSources ?? []).length > 0) {
    const { selection, serves } = selectDeviceSources(candidates, {
      gpas: run.layout.map((r) => BigInt(r.gpa)),
      unavailable: options.unavailableSources,
    });
    report.sourceSelection = selection;
    run.serves = serves;
    // A source that serves no region is not harvested: its tracking stops now.
    for (const [s, regions] of serves) if (!regions.includes(true)) s.stop();
  }
  for (const c of candidates) {
    const served = run.serves?.get(c.source);
    if (c.scope !== "all-mapped" || served === undefined || !served.includes(true)) continue;
    const s = c.source;
    const covered = run.bitmaps();
    s.coverInto(covered);
    const pages = covered.reduce((n, b, i) => n + (served[i] ? b.count() : 0), 0);
    const mapped = (pages * PAGE) / 2 ** 20;
    if ((options.imprecise ?? "refuse") === "refuse") {
      throw new MigrationError(
        "setup",
        `Cannot migrate: ${s.name} reports every mapped page dirty on every query (all-mapped scope: ` +
          `a group in the container has not pinned pages, as with every vfio-pci device), and no finer ` +
          `device source sees its devices, so pre-copy of its ${
            mapped.toFixed(0)
          } MiB would never converge; allow it with --allow-imprecise-device-dirty ` +
          `(those pages are resent in full at stop-and-copy)`,
      );
    }
    run.fixed ??= run.bitmaps();
    run.fixed.forEach((b, i) => {
      if (served[i]) b.orMerge(covered[i]);
    });
  }
  run.counters.dirtySyncCount++;
  if (run.fixed !== undefined) {
    run.fixedBytes = count(run.fixed) * PAGE;
    report.policy.applied = `imprecise device dirty allowed: ${
      (run.fixedBytes / 2 ** 20).toFixed(1)
    } MiB sent in the bulk pass and again in full at stop-and-copy`;
  }
  // Tracking is on: only now is the destination kept waiting.
  run.sink = typeof options.sink === "function"
    ? await (options.sink as () => Promise<MigrationSink>)()
    : options.sink;
  await run.sink.writeHeader(run.layout, PAGE);
  await startDevicePrecopy(run);
  run.counters.setupMs = performance.now() - run.t0;
  report.setupMs = run.counters.setupMs;
}
