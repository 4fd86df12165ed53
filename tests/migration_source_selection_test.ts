// The engine takes the finest device dirty source: a FakeKernel container
// whose group is all-mapped (vfio-pci) and a fake /dev/iommu HWPT with dirty
// tracking that sees the same group. Device writes go to RAM and to the
// HWPT's dirty record; the destination's digest must match.
import assert from "node:assert/strict";
import { Iommufd } from "../vfio/iommufd/iommufd.ts";
import { VfioContainer } from "../vfio/container.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { FakeIommufd } from "./_fake_iommufd.ts";
import { seeded, testSeed } from "./_random.ts";
import { runMigrationScenario } from "./scenario.ts";

const MiB = 1 << 20;
const RAM = 16 * MiB;
const PAGES = RAM / 4096;

/** An IOAS and a HWPT on a fake /dev/iommu; the device's id is 1. */
function iommu(options: { dirtyCapable?: boolean } = {}) {
  const sys = new FakeIommufd(options);
  const iommufd = Iommufd.open({ syscalls: sys });
  const ioas = iommufd.allocIoas();
  let hwpt;
  try {
    hwpt = iommufd.allocHwpt({ devId: 1, ioas, dirtyTracking: options.dirtyCapable ?? true });
  } catch {
    hwpt = iommufd.allocHwpt({ devId: 1, ioas });
  }
  return {
    sys,
    ioas,
    hwpt,
    [Symbol.dispose]() {
      hwpt.close();
      ioas.close();
      iommufd.close();
    },
  };
}

/** The device writes `perHarvest` random pages before each dirty read, `rounds` times. */
function dmaWriter(
  sys: FakeIommufd,
  options: { seed: number; perHarvest: number; rounds: number },
): (ram: Uint8Array) => void {
  const rand = seeded(options.seed);
  return (ram) => {
    let round = 0;
    sys.onReadDirty = () => {
      if (round++ >= options.rounds) return;
      for (let i = 0; i < options.perHarvest; i++) {
        const page = Math.floor(rand() * PAGES);
        ram.fill((round * 31 + i) & 0xff, page * 4096, (page + 1) * 4096);
        sys.deviceWrite(BigInt(page) * 4096n);
      }
    };
  };
}

Deno.test("migrateGuest() serves RAM from an iommufd HWPT over an all-mapped container seeing the same group, and converges", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const kernel = new FakeKernel();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    // Without a finer source the all-mapped container refuses, as before.
    const alone = await runMigrationScenario({ ram: RAM, vfio: { container } });
    assert.equal(alone.report.result, "failed");
    assert.equal(alone.report.failedPhase, "setup");
    assert.match(alone.report.error!, /vfio-container reports every mapped page.*never converge/);
    assert.equal(alone.report.sourceSelection?.regions[0].served[0].source, "vfio-container");

    using io = iommu();
    const r = await runMigrationScenario({
      ram: RAM,
      vfio: { container },
      iommufd: { hwpt: io.hwpt, ioas: io.ioas, devices: ["group 26"] },
      beforeMigrate: dmaWriter(io.sys, { seed, perHarvest: 16, rounds: 3 }),
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error}`);
    assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}: device pages sent`);
    const [region] = r.report.sourceSelection!.regions;
    assert.deepEqual(region.served, [
      { source: "iommufd-hwpt", scope: "precise", devices: ["group 26"] },
    ]);
    assert.equal(region.notUsed[0].source, "vfio-container");
    assert.match(region.notUsed[0].reason, /^all-mapped scope .*iommufd-hwpt.*group 26/);
    assert.equal(r.report.policy.applied, "precise sources only");
    assert.equal(r.report.stopCopyPages < PAGES, true, "nothing resent in full");
    // The replaced container is not harvested; the HWPT's pages are counted.
    for (const row of r.report.iterations) {
      assert.equal(row.dirtyPagesBySource["vfio-container"], undefined);
    }
    assert.ok(
      r.report.iterations.some((row) => (row.dirtyPagesBySource["iommufd-hwpt"] ?? 0) > 0),
      `seed ${seed}: the device's pages came from the HWPT`,
    );
    assert.equal(io.hwpt.tracking, false, "tracking stopped at the end");
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("migrateGuest() keeps an all-mapped container whose group the HWPT does not see", async () => {
  const kernel = new FakeKernel();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    using io = iommu();
    // The HWPT names devices of its own (the default): group 26 has no finer source.
    const r = await runMigrationScenario({
      ram: RAM,
      vfio: { container },
      iommufd: { hwpt: io.hwpt, ioas: io.ioas },
    });
    assert.equal(r.report.result, "failed");
    assert.match(r.report.error!, /vfio-container reports every mapped page/);
    assert.deepEqual(r.report.sourceSelection!.regions[0].served.map((s) => s.source), [
      "vfio-container",
      "iommufd-hwpt",
    ]);
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("migrateGuest() serves a pinned-only container as precise, and lists a HWPT without dirty tracking as unavailable", async () => {
  const kernel = new FakeKernel();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    using io = iommu({ dirtyCapable: false });
    const r = await runMigrationScenario({
      ram: RAM,
      vfio: { container },
      iommufd: { hwpt: io.hwpt, ioas: io.ioas, devices: ["group 26"] },
      beforeMigrate: () => kernel.pin(26, 0x10000n, 0x4000n),
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.destination.digest, r.report.sourceDigest);
    const sel = r.report.sourceSelection!;
    assert.deepEqual(sel.regions[0].served, [
      { source: "vfio-container", scope: "precise", devices: ["group 26"] },
    ]);
    assert.deepEqual(sel.unavailable, [
      { source: "iommufd-hwpt", reason: `HWPT ${io.hwpt.id} was allocated without dirty tracking` },
    ]);
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
