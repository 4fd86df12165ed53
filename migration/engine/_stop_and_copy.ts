// Stop-and-copy: pause the workload (it runs again on failure), take a final
// harvest from every source, stop the devices and save their state (they run
// again on failure), send the rest, mark the image complete; the downtime
// ends when the destination says it holds the whole image.

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import { sendDirty } from "./_send.ts";
import { harvestServed } from "./_iterate.ts";
import type { MigrationRun } from "./_run.ts";

export async function stopAndCopy(run: MigrationRun, dirty: DirtyBitmap[]): Promise<void> {
  const { options, report, counters: c } = run;
  run.checkSignal();
  run.enter("stop-and-copy");
  const pausedAt = performance.now();
  if (options.workload !== undefined) {
    await options.workload.pause();
    run.undo.defer(async () => {
      try {
        await options.workload!.resume();
      } catch (e) {
        (report.warnings ??= []).push(`Cannot resume the workload: ${e}`);
      }
    });
  }
  run.status("device");
  for (const s of options.sources) {
    const own = harvestServed(run, s);
    if (own !== undefined) dirty.forEach((b, i) => b.orMerge(own.bitmaps[i]));
  }
  c.dirtySyncCount++;
  if (run.fixed) dirty.forEach((b, i) => b.orMerge(run.fixed![i]));
  const states: [DeviceMigrator, Uint8Array][] = [];
  for (const d of options.devices ?? []) {
    if (!d.supported) continue;
    // A device in PRE_COPY has its undo already.
    if (!run.precopy.has(d.id)) run.undo.defer(() => d.resumeRunning());
    states.push([d, await d.saveState()]);
  }
  report.stopCopyPages = (await sendDirty(run, dirty)).pages;
  for (const [d, bytes] of states) {
    await run.sink!.writeDeviceState(d.id, bytes);
    const entry = report.devices.find((e) => e.id === d.id)!;
    const precopy = run.precopy.get(d.id)?.bytes;
    entry.migrated = true;
    entry.stateBytes = (precopy ?? 0) + bytes.byteLength;
    if (precopy !== undefined) entry.precopyBytes = precopy;
    entry.stopCopyBytes = bytes.byteLength;
  }
  c.pendingDeviceBytes = 0;
  await run.sink!.writeComplete();
  await options.destinationImage?.();
  const imageAt = performance.now();
  report.downtimeMs = imageAt - pausedAt;
  report.imageMs = imageAt - run.t0;
  c.downtimeMs = report.downtimeMs;
  run.refresh(0);
}
