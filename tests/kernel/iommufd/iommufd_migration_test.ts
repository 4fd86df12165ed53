// kernel-profiles: custom-6.12
// A pre-copy migration whose device dirty source is iommufd on the 6.12 test
// kernel's selftest mock domain: while each of the first iterations sends, the
// mock device writes a seeded random set of pages (IOMMU_TEST_OP_DIRTY, plus
// the bytes in RAM), and that iteration's harvest must report exactly them.
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
  /** The distinct 4 KiB pages written during iteration n. */
  const written = new Map<number, Set<number>>();
  const mapped: number[] = [];
  const r = await runMigrationScenario({
    ram: RAM,
    transport: "unix",
    iommufd: { hwpt, ioas, iovaBase: BASE },
    // Only a clean harvest converges: every round of writes gets an iteration of its own.
    limits: { downtimeLimitMs: 0.001, maxIterations: 10 },
    beforeMigrate: (view) => ram = view,
    onEvent: (event) => {
      // The first pages sent in iteration k: the device writes while it sends.
      if (event.type !== "progress" || written.size >= ROUNDS) return;
      const k = event.counters.iterations;
      if (written.has(k)) return;
      const pages = new Set<number>();
      while (pages.size < PER_ROUND) pages.add(Math.floor(rand() * PAGES));
      writes.bytes.fill(0);
      for (const p of pages) {
        ram!.fill((k * 37 + p) & 0xff, p * 4096, (p + 1) * 4096);
        const mock = 2 * p + (p & 1); // either 2 KiB half dirties the 4 KiB page
        writes.bytes[mock >> 3] |= 1 << (mock & 7);
      }
      const n = mockDmaWrite(iommufd, hwpt.id, {
        iova: BASE,
        length: BigInt(RAM),
        bitmap: writes.vaddr,
      });
      mapped.push(n); // asserted below: the engine does not let onEvent throw into it
      written.set(k, pages);
    },
  });
  const rows = JSON.stringify(r.report.iterations);
  assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error} ${rows}`);
  assert.equal(written.size, ROUNDS, `seed ${seed}: the device wrote after ${ROUNDS} harvests`);
  assert.deepEqual(mapped, [...written.values()].map(() => PER_ROUND), "every page was mapped");
  assert.equal(r.destination.ok, true, r.destination.error);
  assert.notEqual(r.sourceDigestAfter, r.sourceDigestBefore, "the device writes changed RAM");
  assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}: destination = source`);
  assert.deepEqual(r.report.sourceSelection!.regions[0].served.map((s) => [s.source, s.scope]), [
    ["iommufd-hwpt", "precise"],
  ]);
  assert.equal(r.report.policy.applied, "precise sources only");
  for (const [n, pages] of written) {
    // Iteration n's harvest reported exactly the device's pages: not all mapped ones.
    const next = r.report.iterations.find((row) => row.iteration === n);
    assert.ok(next, `seed ${seed}: iteration ${n} harvested the pages written during it`);
    {
      assert.equal(next.dirtyPagesBySource["iommufd-hwpt"], pages.size, `seed ${seed}: ${rows}`);
      assert.ok(next.dirtyPages >= pages.size, `seed ${seed}: ${rows}`);
    }
  }
  assert.ok(r.report.stopCopyPages < PAGES, "nothing resent in full");
  assert.equal(hwpt.tracking, false, "tracking stopped at the end");
  assert.deepEqual(ioas.mappings.filter((m) => m.mapped), [], "the scenario unmapped the RAM");
});
