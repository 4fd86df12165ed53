// Device pre-copy, as QEMU's hw/vfio/migration.c does it: after setup every
// device that offers PRE_COPY enters it (and runs again on failure) and is
// announced in the stream; each iteration sends what its data fd holds, up
// to a budget, beside the RAM (vfio_save_iterate), and the initial-data-sent
// marker once its initial bytes are read (VFIO_MIG_FLAG_DEV_INIT_DATA_SENT);
// stop-and-copy waits for the destination's switchover ack.

import type { DeviceMigrator } from "./device_migrator.ts";
import { MigrationError } from "./errors.ts";
import type { MigrationRun } from "./_run.ts";
import { DEFAULT_DEVICE_PRECOPY_BYTES } from "./types.ts";

// The most one read of a data fd asks for (QEMU reads data_buffer_size, 1 MiB).
const READ_BYTES = 1 << 20;

/** What one iteration's device pre-copy sent. */
export interface DeviceSent {
  /** Stream bytes of the device sections. */
  streamBytes: number;
  /** Pre-copy data bytes per device. */
  byDevice: Record<string, number>;
}

function offersPrecopy(d: DeviceMigrator): boolean {
  return d.supported && d.precopy === true && d.startPrecopy !== undefined &&
    d.precopyInfo !== undefined && d.readPrecopy !== undefined;
}

/**
 * Puts every device that offers PRE_COPY into it and announces it in the
 * stream; each returns to RUNNING on failure. A sink without the pre-copy
 * sections leaves every device to stop-and-copy alone.
 */
export async function startDevicePrecopy(run: MigrationRun): Promise<void> {
  const sink = run.sink!;
  if (sink.writeDevicePrecopy === undefined || sink.writeDeviceInitialSent === undefined) {
    const ids = (run.options.devices ?? []).filter(offersPrecopy).map((d) => d.id);
    if (ids.length > 0) {
      (run.report.warnings ??= []).push(
        `Device pre-copy is off for ${ids.join(", ")}: the stream sink has no pre-copy ` +
          "sections, so their whole state moves at stop-and-copy",
      );
    }
    return;
  }
  for (const d of run.options.devices ?? []) {
    if (!offersPrecopy(d)) continue;
    await d.startPrecopy!();
    run.undo.defer(() => d.resumeRunning());
    run.precopy.set(d.id, { device: d, initialSent: false, bytes: 0 });
    await sink.writeDevicePrecopy(d.id, new Uint8Array(0));
  }
}

/**
 * Sends what each device in PRE_COPY holds now, up to the per-iteration
 * budget shared among them, and the initial-data-sent marker of each whose
 * initial bytes are all read.
 */
export async function sendDevicePrecopy(run: MigrationRun): Promise<DeviceSent> {
  const sent: DeviceSent = { streamBytes: 0, byDevice: {} };
  if (run.precopy.size === 0) return sent;
  const sink = run.sink!;
  const before = run.bytes;
  const budget = Math.max(
    1,
    Math.floor((run.options.devicePrecopyBytes ?? DEFAULT_DEVICE_PRECOPY_BYTES) / run.precopy.size),
  );
  for (const [id, p] of run.precopy) {
    run.checkSignal();
    let left = budget;
    let n = 0;
    while (left > 0) {
      const chunk = await p.device.readPrecopy!(Math.min(READ_BYTES, left));
      if (chunk.byteLength === 0) break;
      await sink.writeDevicePrecopy!(id, chunk);
      left -= chunk.byteLength;
      n += chunk.byteLength;
    }
    p.bytes += n;
    sent.byDevice[id] = n;
    if (!p.initialSent && (await p.device.precopyInfo!()).initialBytes === 0) {
      await sink.writeDeviceInitialSent!(id);
      p.initialSent = true;
    }
  }
  sent.streamBytes = run.bytes - before;
  return sent;
}

/** Device state still to send: initial and dirty bytes in PRE_COPY, else `pendingBytes`. */
export async function remainingDeviceBytes(
  run: MigrationRun,
): Promise<{ precopy: number; stopCopy: number }> {
  let precopy = 0, stopCopy = 0;
  for (const d of run.options.devices ?? []) {
    if (!d.supported) continue;
    if (run.precopy.has(d.id)) {
      const info = await d.precopyInfo!();
      precopy += info.initialBytes + info.dirtyBytes;
    } else if (d.pendingBytes) stopCopy += await d.pendingBytes();
  }
  return { precopy, stopCopy };
}

/** Whether every device in PRE_COPY has sent its initial data. */
export function initialDataSent(run: MigrationRun): boolean {
  for (const p of run.precopy.values()) if (!p.initialSent) return false;
  return true;
}

/**
 * Waits for the destination's switchover ack, when devices pre-copy and the
 * transport has a return path; records the wait in the report. Returns
 * whether it waited.
 *
 * @throws {MigrationError} Naming the devices, when the destination does not
 *   acknowledge (within the caller's bound) or answers otherwise.
 */
export async function awaitSwitchoverAck(run: MigrationRun): Promise<boolean> {
  const ack = run.options.switchoverAck;
  if (run.precopy.size === 0 || ack === undefined) return false;
  const ids = [...run.precopy.keys()];
  await run.sink!.flush?.();
  const readyAt = performance.now();
  try {
    await ack(ids);
  } catch (e) {
    const names = ids.map((id) => JSON.stringify(id)).join(", ");
    throw new MigrationError(
      "iterate",
      `Cannot switch over: the destination did not acknowledge the initial pre-copy data of device${
        ids.length > 1 ? "s" : ""
      } ${names}: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  run.report.switchoverWaitMs = performance.now() - readyAt;
  run.emit({ type: "switchover", counters: { ...run.counters } });
  return true;
}
