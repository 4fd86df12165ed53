// Device state travels with the RAM: the VFIO migration v2 state machine of a
// FakeMigrationDevice on the source, saved at stop-and-copy through data_fd,
// and loaded into the destination's device before it reports ready.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { EIO } from "../sys/errno.ts";
import {
  VFIO_DEVICE_STATE_RUNNING,
  VFIO_DEVICE_STATE_STOP,
  VFIO_DEVICE_STATE_STOP_COPY,
} from "../vfio/constants.ts";
import { VfioContainer } from "../vfio/container.ts";
import { VfioDeviceMigration } from "../vfio/device_migration.ts";
import { FakeKernel, FakeMigrationDevice } from "./fake_kernel.ts";

const MiB = 1 << 20;
const NAME = "0000:00:03.0";

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
    device,
    migration: VfioDeviceMigration.probe(device),
    [Symbol.dispose]() {
      device.close();
      group.close();
      container.close();
    },
  };
}

Deno.test("migrateGuest() moves a v2 device's state to the destination device", async () => {
  const state = new TextEncoder().encode("edu-like device registers ".repeat(100));
  const srcDriver = new FakeMigrationDevice({ state });
  const dstDriver = new FakeMigrationDevice();
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    assert.equal(src.migration.supported, true);
    const r = await runMigrationScenario({
      ram: 32 * MiB,
      vfio: { container: src.container },
      beforeMigrate: () => src.kernel.pin(26, 0n, 0x1000n),
      workload: { pattern: "random", pagesPerSecond: 2_000 },
      devices: [src.migration],
      destinationDevices: [dst.migration],
      limits: { downtimeLimitMs: 5_000 }, // room for a loaded machine
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.report.devices.length, 1);
    assert.equal(r.report.devices[0].id, NAME);
    assert.equal(r.report.devices[0].migrated, true);
    assert.ok(
      r.report.devices[0].stateBytes! >= state.byteLength,
      "the data_fd stream carried the state",
    );
    assert.deepEqual(dstDriver.state, state, "the destination device holds the source's state");
    assert.equal(dstDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "and runs");
    assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_STOP, "the source device stays stopped");
    assert.equal(r.destination.digest, r.report.sourceDigest);
    // Every data fd was closed on both sides.
    assert.deepEqual(src.kernel.openFdDescriptions().filter((d) => d.startsWith("data")), []);
    assert.deepEqual(dst.kernel.openFdDescriptions().filter((d) => d.startsWith("data")), []);
  }
});

Deno.test("migrateGuest() resumes the device and the source when STOP_COPY fails", async () => {
  const srcDriver = new FakeMigrationDevice({ state: new Uint8Array([1, 2, 3]) })
    .failArc(VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY, { errno: EIO });
  const dstDriver = new FakeMigrationDevice();
  {
    using src = host(srcDriver);
    using dst = host(dstDriver);
    const r = await runMigrationScenario({
      ram: 16 * MiB,
      vfio: { container: src.container },
      beforeMigrate: () => src.kernel.pin(26, 0n, 0x1000n),
      workload: { pattern: "random", pagesPerSecond: 2_000 },
      devices: [src.migration],
      destinationDevices: [dst.migration],
    });
    assert.equal(r.report.result, "failed");
    assert.equal(r.report.failedPhase, "stop-and-copy", "device state is saved in stop-and-copy");
    assert.match(r.report.error!, /STOP_COPY.*EIO/);
    assert.equal(srcDriver.deviceState, VFIO_DEVICE_STATE_RUNNING, "the source device runs again");
    assert.equal(r.workloadState, "running", "the source keeps running");
    assert.equal(r.destination.ok, false);
    assert.equal(src.kernel.openFdDescriptions().filter((d) => d.startsWith("data")).length, 0);
  }
});

Deno.test("migrateGuest() records why a vfio-pci device's state does not migrate", async () => {
  const kernel = new FakeKernel();
  using container = VfioContainer.open({ syscalls: kernel });
  using group = container.attachGroup(26);
  using device = group.openDevice(NAME);
  const migration = VfioDeviceMigration.probe(device);
  assert.equal(migration.supported, false);
  const r = await runMigrationScenario({
    ram: 16 * MiB,
    vfio: { container },
    beforeMigrate: () => kernel.pin(26, 0n, 0x1000n),
    devices: [migration],
  });
  assert.equal(r.report.result, "completed", r.report.error);
  assert.deepEqual(r.report.devices, [{
    id: NAME,
    migrated: false,
    reason: "the device's driver has no migration support (VFIO_DEVICE_FEATURE_MIGRATION: ENOTTY)",
  }]);
});
