// Device pre-copy with switchover ack: a FakeMigrationDevice offering
// PRE_COPY sends its state during the iterations, the destination writes the
// chunks into its device in RESUMING as they arrive, and stop-and-copy waits
// for the destination's switchover ack.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { fillSeeded, testSeed } from "./_random.ts";
import {
  VFIO_DEVICE_STATE_PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P,
  VFIO_DEVICE_STATE_RESUMING,
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "../vfio/constants.ts";
import { VfioContainer } from "../vfio/container.ts";
import { VfioDeviceMigration } from "../vfio/device_migration.ts";
import { FakeKernel, FakeMigrationDevice } from "./fake_kernel.ts";
import { ConvergencePolicy } from "../migration/engine/convergence.ts";
import type { DeviceRestorer } from "../migration/engine/device_migrator.ts";
import type { MigrationEvent } from "../migration/engine/status.ts";
import { IoctlError } from "../sys/errors.ts";
import { renderReportSvg } from "../migration/engine/report_svg.ts";
import { summarize } from "../cli/migrate.ts";
import { EINVAL, EIO } from "../sys/errno.ts";

const MiB = 1 << 20;
const NAME = "0000:00:03.0";
const RECORD_HEADER = 4; // the fake driver's stream: a u32 length before each snapshot
const PRECOPY_FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;

function host(driver: FakeMigrationDevice) {
  const kernel = new FakeKernel({
    groups: [{ id: 26, devices: [{ name: NAME, features: driver }] }],
  });
  const container = VfioContainer.open({ syscalls: kernel });
  const group = container.attachGroup(26);
  const device = group.openDevice(NAME);
  return {
    kernel,
    container,
    migration: VfioDeviceMigration.probe(device),
    dataFds: () => kernel.openFdDescriptions().filter((d) => d.startsWith("data")),
    [Symbol.dispose]() {
      device.close();
      group.close();
      container.close();
    },
  };
}

function seededState(bytes: number, seed: number): Uint8Array {
  const s = new Uint8Array(bytes);
  fillSeeded(s, seed);
  return s;
}

function hasArc(d: FakeMigrationDevice, from: number, to: number): boolean {
  return d.arcs.some(([a, b]) => a === from && b === to);
}

Deno.test("migrateGuest() sends a PRE_COPY device's state during iterations and waits for the switchover ack", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const state = seededState(6 * MiB, seed);
  const srcDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state });
  const dstDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  const order: string[] = [];
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    assert.equal(src.migration.precopy, true);
    const onEvent = (e: MigrationEvent) => {
      if (e.type === "switchover") {
        order.push("switchover ack");
        // The ack is in before anything stops: the device still pre-copies.
        assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_PRE_COPY);
        assert.equal(dstDriver.deviceState, VFIO_DEVICE_STATE_RESUMING);
      }
      if (e.type === "status") order.push(`status ${e.counters.status}`);
    };
    const r = await runMigrationScenario({
      ram: 16 * MiB,
      devices: [src.migration],
      destinationDevices: [dst.migration],
      devicePrecopyBytes: 2 * MiB,
      limits: { downtimeLimitMs: 5_000 }, // about the protocol, not this machine's speed
      onEvent,
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.destination.ok, true, r.destination.error);
    assert.deepEqual(
      dstDriver.state,
      state,
      `the destination device holds the state (seed ${seed})`,
    );
    assert.equal(dstDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "and runs");
    assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_STOP, "the source device stays stopped");
    // The source went PRE_COPY -> STOP_COPY directly; the destination loaded in RESUMING.
    assert.ok(hasArc(srcDriver, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_PRE_COPY));
    assert.ok(hasArc(srcDriver, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_STOP_COPY));
    assert.ok(hasArc(dstDriver, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP));
    // The ack came before stop-and-copy began.
    const ack = order.indexOf("switchover ack");
    assert.ok(ack >= 0, `no switchover ack in ${order}`);
    assert.ok(ack < order.indexOf("status device"), `${order}`);
    assert.equal(typeof r.report.switchoverWaitMs, "number");
    // 2 MiB an iteration: the 6 MiB go over four iterations, then the marker.
    const rows = r.report.iterations;
    const perIteration = rows.map((row) => row.precopyBytesByDevice?.[NAME] ?? 0);
    assert.deepEqual(perIteration.slice(0, 4), [2 * MiB, 2 * MiB, 2 * MiB, RECORD_HEADER]);
    for (const row of rows) {
      assert.ok(row.deviceBytes! >= (row.precopyBytesByDevice?.[NAME] ?? 0));
      assert.equal(row.ramBytes, row.bytes - row.deviceBytes!);
    }
    // The expected downtime counts the device bytes not yet sent.
    assert.equal(rows[0].pendingDeviceBytes, state.byteLength + RECORD_HEADER - 2 * MiB);
    assert.ok(rows[0].expectedDowntimeMs > 0);
    assert.equal(rows.at(-1)!.pendingDeviceBytes, 0);
    const device = r.report.devices[0];
    assert.equal(device.precopyBytes, state.byteLength + RECORD_HEADER);
    assert.equal(device.stopCopyBytes, 0, "nothing changed since: STOP_COPY has no more");
    assert.equal(device.stateBytes, device.precopyBytes);
    // The report says it, and its chart draws device bytes on the RAM bytes of each iteration.
    const text = summarize(r.report);
    assert.match(text, /switchover ack \d+ ms after ready/);
    assert.match(
      text,
      new RegExp(
        `state migrated \\(${device.stateBytes} bytes: ${device.precopyBytes} in pre-copy, 0 at stop-and-copy\\)`,
      ),
    );
    const svg = renderReportSvg(r.report);
    const drawn = [...svg.matchAll(/<rect class="device"[^>]*height="([\d.]+)"/g)];
    assert.equal(drawn.length, rows.filter((row) => row.deviceBytes! > 0).length);
    assert.ok(drawn.every(([, h]) => Number(h) >= 0));
    assert.match(svg, /device pre-copy \(on RAM\)/);
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("migrateGuest() sends a PRE_COPY device's dirty state after its initial data", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const srcDriver = new FakeMigrationDevice({
    flags: PRECOPY_FLAGS,
    state: seededState(3 * MiB, seed),
  });
  const dstDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  const later = seededState(2 * MiB + 5, seed + 1);
  const last = seededState(100, seed + 2);
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    const r = await runMigrationScenario({
      ram: 8 * MiB,
      devices: [src.migration],
      destinationDevices: [dst.migration],
      devicePrecopyBytes: 1 * MiB,
      limits: { downtimeLimitMs: 5_000 },
      onEvent: (e) => {
        // The running device changes its state during pre-copy, and again while stopping.
        if (e.type === "iteration" && e.row.iteration === 1) srcDriver.writeState(later);
        if (e.type === "switchover") srcDriver.writeState(last);
      },
      transport: "unix",
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.deepEqual(dstDriver.state, last, `the last state wins (seed ${seed})`);
    // Three records in all: the initial state, the dirty one, and the last at STOP_COPY.
    const d = r.report.devices[0];
    assert.equal(d.stateBytes, 3 * RECORD_HEADER + 3 * MiB + later.byteLength + last.byteLength);
    assert.equal(d.precopyBytes! + d.stopCopyBytes!, d.stateBytes);
    assert.ok(d.precopyBytes! > 3 * MiB, "dirty state went in pre-copy too");
    assert.ok(d.stopCopyBytes! >= RECORD_HEADER + last.byteLength);
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("migrateGuest() fails naming the device when the destination never acks, and the device runs again", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const state = seededState(4 * MiB, seed);
  const srcDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state });
  const dstDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    // The destination device holds its last chunk until the source has
    // failed: the destination never gets to its switchover ack.
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    let loaded = 0;
    const m = dst.migration;
    const held: DeviceRestorer = {
      id: m.id,
      loadState: (b) => m.loadState(b),
      beginResume: () => m.beginResume(),
      async loadChunk(bytes) {
        loaded += bytes.byteLength;
        if (loaded === state.byteLength + RECORD_HEADER) await released;
        m.loadChunk(bytes);
      },
      finishResume: () => m.finishResume(),
      abortResume: () => m.abortResume(),
    };
    const r = await runMigrationScenario({
      ram: 8 * MiB,
      devices: [src.migration],
      destinationDevices: [held],
      peerTimeoutMs: 300,
      onEvent: (e) => {
        if (e.type === "status" && e.counters.status === "failed") release();
      },
    });
    assert.equal(r.report.result, "failed");
    assert.equal(r.report.failedPhase, "iterate", "stop-and-copy never began");
    assert.match(
      r.report.error!,
      /^Cannot switch over: the destination did not acknowledge the initial pre-copy data of device "0000:00:03\.0": .*within 0\.3 s/,
    );
    assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "the source device runs again");
    assert.equal(hasArc(srcDriver, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_STOP_COPY), false);
    assert.equal(r.destination.ok, false, "the destination does not report success");
    // The destination device was reset out of RESUMING: it never runs a partial state.
    assert.equal(dstDriver.deviceState, VFIO_DEVICE_STATE_RUNNING);
    assert.equal(hasArc(dstDriver, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP), false);
    assert.equal(dstDriver.state.byteLength, 0);
    assert.equal(r.sourceDigestAfter, r.sourceDigestBefore, "the source RAM is untouched");
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("migrateGuest() over a file pre-copies the device state without waiting for an ack", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const state = seededState(2 * MiB + 3, seed);
  const srcDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state });
  const dstDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    const r = await runMigrationScenario({
      ram: 4 * MiB,
      transport: "file",
      devices: [src.migration],
      destinationDevices: [dst.migration],
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.destination.ok, true, r.destination.error);
    assert.equal(r.report.switchoverWaitMs, undefined, "a file has no return path");
    assert.deepEqual(dstDriver.state, state, `seed ${seed}`);
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("migrateGuest() pre-copies into a destination device that only has loadState()", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const state = seededState(2 * MiB + 1, seed);
  const srcDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state });
  const dstDriver = new FakeMigrationDevice();
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    const m = dst.migration;
    // The chunks are kept and loaded whole once RAM is verified.
    const whole: DeviceRestorer = { id: m.id, loadState: (bytes) => m.loadState(bytes) };
    const r = await runMigrationScenario({
      ram: 4 * MiB,
      devices: [src.migration],
      destinationDevices: [whole],
      devicePrecopyBytes: 1 * MiB,
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.deepEqual(dstDriver.state, state, `seed ${seed}`);
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("migrateGuest() runs a PRE_COPY device again when PRE_COPY -> STOP_COPY fails", async () => {
  const srcDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state: new Uint8Array(5000) })
    .failArc(VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_STOP_COPY, { errno: EIO });
  const dstDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    const r = await runMigrationScenario({
      ram: 4 * MiB,
      devices: [src.migration],
      destinationDevices: [dst.migration],
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "failed");
    assert.equal(r.report.failedPhase, "stop-and-copy");
    assert.match(r.report.error!, /STOP_COPY.*EIO/);
    assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "the source device runs again");
    assert.equal(r.destination.ok, false);
    assert.equal(dstDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "reset out of RESUMING");
    assert.equal(hasArc(dstDriver, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP), false);
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("migrateGuest() fails with the destination's reason when it does not have the pre-copy device", async () => {
  const srcDriver = new FakeMigrationDevice({
    flags: PRECOPY_FLAGS,
    state: new Uint8Array(2 * MiB),
  });
  {
    using src = host(srcDriver);
    const r = await runMigrationScenario({
      ram: 16 * MiB,
      devices: [src.migration],
      destinationDevices: [],
    });
    assert.equal(r.report.result, "failed");
    assert.match(
      r.report.error!,
      /Device pre-copy section for device "0000:00:03\.0", which this destination does not have/,
    );
    assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "the source device runs again");
    assert.equal(r.destination.ok, false);
    assert.deepEqual(src.dataFds(), []);
  }
});

Deno.test("VfioDeviceMigration.readPrecopy() reads the initial data, then ENOMSG as empty; precopyInfo() follows", () => {
  const state = seededState(3000, 7);
  const driver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state });
  using h = host(driver);
  const m = h.migration;
  m.startPrecopy();
  assert.deepEqual(m.precopyInfo(), { initialBytes: 3004, dirtyBytes: 0 });
  assert.equal(m.readPrecopy(1000).byteLength, 1000);
  assert.deepEqual(m.precopyInfo(), { initialBytes: 2004, dirtyBytes: 0 });
  assert.equal(m.readPrecopy(5000).byteLength, 2004);
  assert.deepEqual(m.precopyInfo(), { initialBytes: 0, dirtyBytes: 0 });
  assert.equal(m.readPrecopy(5000).byteLength, 0, "ENOMSG: drained for now");
  driver.writeState(new Uint8Array(10));
  assert.deepEqual(m.precopyInfo(), { initialBytes: 0, dirtyBytes: 14 });
  assert.equal(m.readPrecopy(5000).byteLength, 14);
  m.resumeRunning(); // PRE_COPY -> RUNNING closes the data fd
  assert.equal(driver.deviceState, VFIO_DEVICE_STATE_RUNNING);
  assert.deepEqual(h.dataFds(), []);
  // Outside PRE_COPY the kernel has no pre-copy info.
  assert.throws(() => m.precopyInfo(), /not in pre-copy/);
});

Deno.test("migrateGuest() pre-copies an mtty-like device: P2P states, and a drained read returns 0", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const state = seededState(1 * MiB + 9, seed);
  const flags = PRECOPY_FLAGS | VFIO_MIGRATION_P2P; // as mtty offers
  const srcDriver = new FakeMigrationDevice({ flags, state, drained: "zero" });
  const dstDriver = new FakeMigrationDevice({ flags });
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    src.migration.startPrecopy();
    assert.equal(src.migration.readPrecopy(2 * MiB).byteLength, state.byteLength + RECORD_HEADER);
    assert.equal(src.migration.readPrecopy(2 * MiB).byteLength, 0, "drained: read() gave 0");
    src.migration.resumeRunning();
    const r = await runMigrationScenario({
      ram: 4 * MiB,
      devices: [src.migration],
      destinationDevices: [dst.migration],
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.deepEqual(dstDriver.state, state, `seed ${seed}`);
    // The kernel's path to STOP_COPY goes through PRE_COPY_P2P, on the same data fd.
    assert.ok(hasArc(srcDriver, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P));
    assert.ok(hasArc(srcDriver, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_STOP_COPY));
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});

Deno.test("VfioDeviceMigration.finishResume() resets a device whose state the driver rejects", () => {
  const driver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  using h = host(driver);
  const m = h.migration;
  m.beginResume();
  assert.equal(driver.deviceState, VFIO_DEVICE_STATE_RESUMING);
  m.loadChunk(new Uint8Array([100, 0, 0, 0, 1, 2])); // a record cut short
  assert.throws(
    () => m.finishResume(),
    (e) => e instanceof Error && e.cause instanceof IoctlError && e.cause.errno === EINVAL,
  );
  assert.equal(driver.deviceState, VFIO_DEVICE_STATE_RUNNING, "reset, not running a partial state");
  assert.equal(driver.state.byteLength, 0);
  assert.deepEqual(h.dataFds(), []);
});

Deno.test("ConvergencePolicy.decide() counts pre-copy device bytes in the expected downtime, never as a floor", () => {
  const sample = {
    ramBytes: 100 * MiB,
    wireBytes: 100 * MiB,
    durationMs: 100, // 1 MiB per ms
    dirtyBytes: 0,
    fixedBytes: 0,
    elapsedMs: 100,
  };
  const without = new ConvergencePolicy({ downtimeLimitMs: 300 }).decide(sample);
  const withDevice = new ConvergencePolicy({ downtimeLimitMs: 300 }).decide({
    ...sample,
    precopyDeviceBytes: 500 * MiB,
  });
  assert.equal(without.action, "stop-and-copy");
  assert.equal(withDevice.expectedDowntimeMs, without.expectedDowntimeMs + 500);
  assert.equal(withDevice.action, "iterate", "pre-copy goes on sending it: not a failure");
});

Deno.test("migrateGuest() over 2 parallel channels: device pre-copy and its ack stay on the main connection", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const state = seededState(3 * MiB, seed);
  const srcDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS, state });
  const dstDriver = new FakeMigrationDevice({ flags: PRECOPY_FLAGS });
  let acked = false;
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    const r = await runMigrationScenario({
      ram: 16 * MiB,
      channels: 2,
      devices: [src.migration],
      destinationDevices: [dst.migration],
      devicePrecopyBytes: 1 * MiB,
      limits: { downtimeLimitMs: 5_000 }, // about the protocol, not this machine's speed
      onEvent: (e) => {
        if (e.type === "switchover") {
          acked = true;
          assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_PRE_COPY);
        }
      },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.destination.ok, true, r.destination.error);
    assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}`);
    assert.ok(acked, "the switchover ack arrived while the device pre-copied");
    assert.deepEqual(
      dstDriver.state,
      state,
      `the destination device holds the state (seed ${seed})`,
    );
    assert.equal(dstDriver.deviceState, VFIO_DEVICE_STATE_RUNNING);
    assert.equal(r.report.devices[0].precopyBytes, state.byteLength + RECORD_HEADER);
    assert.deepEqual(src.dataFds(), []);
    assert.deepEqual(dst.dataFds(), []);
  }
});
