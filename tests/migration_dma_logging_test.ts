// The engine takes a device's own DMA log over an all-mapped container: a
// FakeKernel container whose group (vfio-pci) is all-mapped, and the group's
// device logs its DMA (FakeDmaLoggingDevice). Device writes go to RAM and to
// the device's log; the destination's digest must match.
import assert from "node:assert/strict";
import { VfioContainer } from "../vfio/container.ts";
import {
  FakeDmaLoggingDevice,
  type FakeDmaLoggingDeviceOptions,
  FakeKernel,
} from "./fake_kernel.ts";
import { seeded, testSeed } from "./_random.ts";
import { runMigrationScenario } from "./scenario.ts";

const MiB = 1 << 20;
const RAM = 16 * MiB;
const PAGES = RAM / 4096;
const DEV = "0000:00:03.0";

function kernelWith(options: FakeDmaLoggingDeviceOptions = {}) {
  const log = new FakeDmaLoggingDevice(options);
  return {
    log,
    kernel: new FakeKernel({ groups: [{ id: 26, devices: [{ name: DEV, features: log }] }] }),
  };
}

/** The device writes `perHarvest` random pages at each REPORT, `rounds` times. */
function dmaWriter(
  log: FakeDmaLoggingDevice,
  options: { seed: number; perHarvest: number; rounds: number },
): (ram: Uint8Array) => void {
  const rand = seeded(options.seed);
  return (ram) => {
    let round = 0;
    log.onReport = () => {
      if (round++ >= options.rounds) return;
      for (let i = 0; i < options.perHarvest; i++) {
        const page = Math.floor(rand() * PAGES);
        ram.fill((round * 31 + i) & 0xff, page * 4096, (page + 1) * 4096);
        log.deviceWrite(BigInt(page) * 4096n, 4096n);
      }
    };
  };
}

Deno.test("migrateGuest() serves RAM from the device's DMA log over an all-mapped container seeing the same group, and converges", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const { log, kernel } = kernelWith();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using group = container.attachGroup(26);
    using device = group.openDevice(DEV);
    const r = await runMigrationScenario({
      ram: RAM,
      vfio: { container },
      dmaLogging: { device, devices: ["group 26"] },
      beforeMigrate: dmaWriter(log, { seed, perHarvest: 16, rounds: 4 }),
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error}`);
    assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}: device pages sent`);
    const [region] = r.report.sourceSelection!.regions;
    assert.deepEqual(region.served, [
      { source: "vfio-dma-logging", scope: "precise", devices: ["group 26"] },
    ]);
    assert.equal(region.notUsed[0].source, "vfio-container");
    assert.match(region.notUsed[0].reason, /^all-mapped scope .*vfio-dma-logging.*group 26/);
    assert.equal(r.report.stopCopyPages < PAGES, true, "nothing resent in full");
    for (const row of r.report.iterations) {
      assert.equal(row.dirtyPagesBySource["vfio-container"], undefined);
    }
    assert.ok(
      r.report.iterations.some((row) => (row.dirtyPagesBySource["vfio-dma-logging"] ?? 0) > 0),
      `seed ${seed}: the device's pages came from its log`,
    );
    assert.equal(log.logging, false, "logging stopped at the end");
    assert.equal(log.stops, 1);
    assert.equal(r.report.warnings, undefined);
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("migrateGuest() lists a DMA log whose REPORT answers EOPNOTSUPP as unavailable and keeps the container", async () => {
  const { log, kernel } = kernelWith({ bitmapHelpers: false });
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using group = container.attachGroup(26);
    using device = group.openDevice(DEV);
    const r = await runMigrationScenario({
      ram: RAM,
      vfio: { container },
      dmaLogging: { device, devices: ["group 26"] },
    });
    assert.equal(r.report.result, "failed");
    assert.match(r.report.error!, /vfio-container reports every mapped page/);
    const sel = r.report.sourceSelection!;
    assert.deepEqual(sel.regions[0].served.map((s) => s.source), ["vfio-container"]);
    assert.equal(sel.unavailable![0].source, "vfio-dma-logging");
    assert.match(sel.unavailable![0].reason, /cannot report it \(DMA_LOGGING_REPORT: EOPNOTSUPP/);
    assert.equal(log.logging, false);
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
