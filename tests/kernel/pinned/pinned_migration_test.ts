// kernel-profiles: custom-6.12-viommu
// A pre-copy migration with a real type1 container holding only the pintest
// mdev's group: the container serves RAM as a precise (pinned) device source,
// and each iteration's device dirty pages are the still-pinned set.
import assert from "node:assert/strict";
import { VfioContainer } from "../../../vfio/container.ts";
import { seeded, testSeed } from "../../_random.ts";
import { runMigrationScenario } from "../../scenario.ts";
import { groupAndDevice } from "../_group.ts";
import { bootProfile } from "../env.ts";
import { createPintest, Pintest } from "./_pintest.ts";

const MiB = 1 << 20;
const RAM = 16 * MiB;
const PAGES = RAM / 4096;
const PINNED = 8;

Deno.test("migrateGuest() with a pinned-only type1 container converges on the still-pinned pages", async () => {
  bootProfile("custom-6.12-viommu");
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  using mdev = createPintest();
  using container = VfioContainer.open();
  using group = container.attachGroup(mdev.group);
  using device = group.openDevice(mdev.uuid);
  const pintest = new Pintest(device);
  const pinned = new Set<number>();
  while (pinned.size < PINNED) pinned.add(Math.floor(rand() * PAGES));
  const r = await runMigrationScenario({
    ram: RAM,
    transport: "unix",
    vfio: { container },
    limits: { downtimeLimitMs: 5_000, maxIterations: 10 },
    // IOVA = GPA: the scenario has mapped the RAM into the container.
    beforeMigrate: () => {
      for (const p of pinned) pintest.pin(BigInt(p) * 4096n);
    },
  });
  const rows = JSON.stringify(r.report.iterations);
  assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error} ${rows}`);
  assert.equal(r.destination.ok, true, r.destination.error);
  assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}: destination = source`);
  assert.deepEqual(r.report.sourceSelection!.regions[0].served, [
    { source: "vfio-container", scope: "precise", devices: [`group ${mdev.group}`] },
  ]);
  assert.equal(r.report.dirtyScope["vfio-container"], "precise");
  assert.ok(r.report.iterations.length > 0);
  for (const row of r.report.iterations) {
    assert.equal(row.dirtyPagesBySource["vfio-container"], PINNED, `seed ${seed}: ${rows}`);
  }
  assert.ok(r.report.stopCopyPages < PAGES, "nothing resent in full");
  // The scenario's unmap made the device drop its pins (the dma_unmap callback).
  assert.equal(pintest.pinned, 0);
  assert.equal(pintest.unmapped, PINNED);
});

Deno.test("migrateGuest() with edu's group added to the pinning container refuses the all-mapped scope, or names it when allowed", async () => {
  bootProfile("custom-6.12-viommu");
  using mdev = createPintest();
  using container = VfioContainer.open();
  using _pin = container.attachGroup(mdev.group);
  const edu = groupAndDevice();
  using _edu = container.attachGroup(edu.group);
  const ram = 4 * MiB;
  const refused = await runMigrationScenario({ ram, transport: "unix", vfio: { container } });
  assert.equal(refused.report.result, "failed");
  assert.equal(refused.report.failedPhase, "setup");
  assert.match(refused.report.error!, /all-mapped scope|reports every mapped page/);
  assert.equal(refused.destination.ok, false);
  const allowed = await runMigrationScenario({
    ram,
    transport: "unix",
    vfio: { container },
    imprecise: "allow",
    limits: { downtimeLimitMs: 10_000, maxIterations: 10 },
  });
  assert.equal(allowed.report.result, "completed", allowed.report.error);
  assert.equal(allowed.report.dirtyScope["vfio-container"], "all-mapped");
  assert.match(allowed.report.policy.applied, /imprecise device dirty allowed/);
  assert.ok(allowed.report.stopCopyPages >= ram / 4096, "all mapped RAM resent");
  assert.equal(allowed.destination.digest, allowed.report.sourceDigest);
});
