// kernel-profiles: custom-6.12
// A pre-copy migration whose device dirty source is iommufd on the 6.12 test
// kernel's selftest mock domain: after each iteration's harvest the mock
// device writes a seeded random set of pages (IOMMU_TEST_OP_DIRTY, plus the
// bytes in RAM), and the next harvest must report exactly those pages.
import assert from "node:assert/strict";
import { Iommufd } from "../../../vfio/mod.ts";
import { anonMemory } from "../../anon_memory.ts";
import { seeded, testSeed } from "../../_random.ts";
import { runMigrationScenario } from "../../scenario.ts";
import { bootProfile } from "../env.ts";
import { MOCK_APERTURE_START, mockDevice, mockDmaWrite } from "./_selftest.ts";

const MiB = 1 << 20;
const RAM = 16 * MiB;
const PAGES = RAM / 4096;
const BASE = MOCK_APERTURE_START; // IOVA = BASE + GPA: inside the mock aperture
const ROUNDS = 3;
const PER_ROUND = 24;

Deno.test("migrateGuest() with an iommufd mock-domain HWPT re-sends exactly the pages the device wrote, and converges", async () => {
  bootProfile("custom-6.12");
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  using iommufd = Iommufd.open();
  using ioas = iommufd.allocIoas();
  using writes = anonMemory(BigInt(PAGES * 2 / 8)); // one bit per 2 KiB mock page
  const dev = mockDevice(iommufd, ioas.id);
  const hwpt = iommufd.allocHwpt({ devId: dev.devId, ioas, dirtyTracking: true });
  dev.replace(hwpt.id);
  // The device goes before its page table.
  using _devices = { [Symbol.dispose]: () => (dev[Symbol.dispose](), hwpt.close()) };

  let ram: Uint8Array | undefined;
  /** The distinct 4 KiB pages written after iteration n's harvest. */
  const written = new Map<number, Set<number>>();
  const r = await runMigrationScenario({
    ram: RAM,
    transport: "unix",
    iommufd: { hwpt, ioas, iovaBase: BASE },
    limits: { downtimeLimitMs: 5_000, maxIterations: 10 },
    beforeMigrate: (view) => ram = view,
    onEvent: (event) => {
      if (event.type !== "iteration" || written.size >= ROUNDS) return;
      const pages = new Set<number>();
      while (pages.size < PER_ROUND) pages.add(Math.floor(rand() * PAGES));
      writes.bytes.fill(0);
      for (const p of pages) {
        ram!.fill((event.row.iteration * 37 + p) & 0xff, p * 4096, (p + 1) * 4096);
        const mock = 2 * p + (p & 1); // either 2 KiB half dirties the 4 KiB page
        writes.bytes[mock >> 3] |= 1 << (mock & 7);
      }
      const n = mockDmaWrite(iommufd, hwpt.id, {
        iova: BASE,
        length: BigInt(RAM),
        bitmap: writes.vaddr,
      });
      assert.equal(n, PER_ROUND, `seed ${seed}: every written page was mapped`);
      written.set(event.row.iteration, pages);
    },
  });
  const rows = JSON.stringify(r.report.iterations);
  assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error} ${rows}`);
  assert.ok(written.size > 0, `seed ${seed}: the device wrote during pre-copy`);
  assert.equal(r.destination.ok, true, r.destination.error);
  assert.notEqual(r.sourceDigestAfter, r.sourceDigestBefore, "the device writes changed RAM");
  assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}: destination = source`);
  assert.deepEqual(r.report.sourceSelection!.regions[0].served.map((s) => [s.source, s.scope]), [
    ["iommufd-hwpt", "precise"],
  ]);
  assert.equal(r.report.policy.applied, "precise sources only");
  for (const [n, pages] of written) {
    const next = r.report.iterations.find((row) => row.iteration === n + 1);
    if (next) {
      // The next harvest reported exactly the device's pages: not all mapped ones.
      assert.equal(next.dirtyPagesBySource["iommufd-hwpt"], pages.size, `seed ${seed}: ${rows}`);
      assert.ok(next.dirtyPages >= pages.size, `seed ${seed}: ${rows}`);
    } else {
      assert.ok(r.report.stopCopyPages >= pages.size, `seed ${seed}: stop-and-copy resent them`);
    }
  }
  assert.ok(r.report.stopCopyPages < PAGES, "nothing resent in full");
  assert.equal(hwpt.tracking, false, "tracking stopped at the end");
  assert.deepEqual(ioas.mappings.filter((m) => m.mapped), [], "the scenario unmapped the RAM");
});
