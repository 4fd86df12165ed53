// Iterate: send all RAM (iteration 0, the bulk pass), then what the merged
// dirty sources report, with each device's pre-copy data beside it, until
// the convergence policy says the rest fits the downtime limit and every
// device in PRE_COPY has sent its initial data; then wait for the
// destination's switchover ack. Auto-converge throttles the workload on the way.

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { DirtyScope, DirtySource } from "./dirty_source.ts";
import { MigrationError } from "./errors.ts";
import type { IterationRow } from "./report.ts";
import { andNot, count, sendDirty } from "./_send.ts";
import { type MigrationRun, PAGE } from "./_run.ts";
import {
  awaitSwitchoverAck,
  initialDataSent,
  remainingDeviceBytes,
  sendDevicePrecopy,
} from "./_device_precopy.ts";

/** Runs pre-copy; returns the pages still dirty when it converged. */
export async function iterate(run: MigrationRun): Promise<DirtyBitmap[]> {
  const { options, report, policy, counters: c } = run;
  run.enter("iterate");
  run.status("active");
  let dirty = run.bitmaps();
  for (const b of dirty) b.fillAll();
  let throttled = false;
  let acked = false;
  for (let iteration = 0;; iteration++) {
    run.checkSignal();
    const before = run.bytes;
    const start = performance.now();
    const sent = await sendDirty(run, dirty);
    const device = await sendDevicePrecopy(run);
    await run.sink!.writeIteration(iteration);
    const durationMs = performance.now() - start;
    const bytes = run.bytes - before;
    const { merged, bySource } = await harvest(run);
    andNot(merged, run.fixed);
    const dirtyPages = count(merged);
    const remaining = await remainingDeviceBytes(run);
    const deviceBytes = remaining.precopy + remaining.stopCopy;
    const decision = policy.decide({
      ramBytes: sent.pages * PAGE,
      wireBytes: bytes,
      durationMs,
      dirtyBytes: dirtyPages * PAGE,
      fixedBytes: run.fixedBytes,
      deviceBytes: remaining.stopCopy,
      precopyDeviceBytes: remaining.precopy,
      elapsedMs: performance.now() - run.t0,
    });
    const seconds = Math.max(durationMs / 1000, 1e-6);
    const row: IterationRow = {
      iteration,
      dirtyPagesBySource: bySource,
      dirtyPages,
      sentPages: sent.pages,
      zeroPages: sent.zeroPages,
      skippedPages: sent.skippedPages,
      bytes,
      durationMs,
      bandwidthMBps: bytes / 1e6 / seconds,
      expectedDowntimeMs: decision.expectedDowntimeMs,
      throttle: decision.action === "fail" ? policy.throttle : decision.throttle,
      pendingDeviceBytes: deviceBytes,
    };
    if (run.precopy.size > 0) {
      row.deviceBytes = device.streamBytes;
      row.ramBytes = bytes - device.streamBytes;
      row.precopyBytesByDevice = device.byDevice;
    }
    report.iterations.push(row);
    c.iterations = iteration + 1;
    c.dirtyPagesRate = dirtyPages / seconds;
    c.throughputMbps = (bytes * 8) / 1e6 / seconds;
    c.expectedDowntimeMs = decision.expectedDowntimeMs;
    c.throttlePercent = row.throttle;
    c.pendingDeviceBytes = deviceBytes;
    // After the bulk pass, more left dirty than was sent means the guest
    // dirties faster than pages go out.
    c.outpaced = iteration > 0 && dirtyPages >= sent.pages && dirtyPages > 0;
    run.refresh((dirtyPages * PAGE) + run.fixedBytes);
    run.emit({ type: "iteration", row: { ...row }, counters: { ...c } });
    if (decision.action === "fail") {
      throw new MigrationError("iterate", `Cannot migrate: ${decision.reason}`);
    }
    if (
      decision.action === "iterate" &&
      decision.throttle !== (report.iterations.at(-2)?.throttle ?? 0)
    ) {
      // The first throttle step arms its undo: a failure runs the guest at full speed again.
      if (decision.throttle > 0 && (report.iterations.at(-2)?.throttle ?? 0) === 0) {
        if (!throttled) run.undo.defer(() => options.workload?.setThrottle(0));
        throttled = true;
      }
      options.workload?.setThrottle(decision.throttle);
    }
    dirty = merged;
    // A device's initial data goes before stop-and-copy (QEMU's
    // vfio_state_pending reports it as must-precopy): iterate on until then.
    // Then the destination's switchover ack; what the guest dirtied while
    // it was awaited goes in one more iteration, whose decision stands.
    if (decision.action === "stop-and-copy" && initialDataSent(run)) {
      if (!acked) {
        acked = true;
        if (await awaitSwitchoverAck(run)) continue;
      }
      report.expectedDowntimeMs = decision.expectedDowntimeMs;
      return dirty;
    }
  }
}

// Harvests every source into its own bitmaps, then merges them. A source
// whose harvest can race a writer (soft-dirty) gets the workload paused
// around it.
export async function harvest(
  run: MigrationRun,
): Promise<{ merged: DirtyBitmap[]; bySource: Record<string, number> }> {
  const { options, report } = run;
  const merged = run.bitmaps();
  const bySource: Record<string, number> = {};
  const hold = options.workload !== undefined &&
    options.sources.some((s) => s.concurrentSafe === false);
  if (hold) await options.workload!.pause();
  try {
    for (const s of options.sources) {
      const own = harvestServed(run, s);
      if (own === undefined) continue;
      report.dirtyScope[s.name] = own.scope;
      bySource[s.name] = count(own.bitmaps);
      merged.forEach((b, i) => b.orMerge(own.bitmaps[i]));
    }
  } finally {
    if (hold) await options.workload!.resume();
  }
  run.counters.dirtySyncCount++;
  return { merged, bySource };
}

// One source's harvest, kept to the regions it serves (a device source that
// a finer one replaces in a region contributes nothing there); undefined for
// a source that serves no region (it is not harvested at all).
export function harvestServed(
  run: MigrationRun,
  s: DirtySource,
): { bitmaps: DirtyBitmap[]; scope: DirtyScope } | undefined {
  const served = run.serves?.get(s);
  if (served !== undefined && !served.includes(true)) return undefined;
  const own = run.bitmaps();
  const h = s.harvestInto(own);
  if (served !== undefined) {
    own.forEach((b, i) => {
      if (!served[i]) b.words.fill(0);
    });
  }
  return { bitmaps: own, scope: h.scope };
}
