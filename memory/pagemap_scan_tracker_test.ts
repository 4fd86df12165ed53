import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { GuestMemory } from "./guest_memory.ts";
import { PagemapScanTracker } from "./pagemap_scan_tracker.ts";
import { checkRandomWrites, checkWorkerWrites } from "./_tracker_checks.ts";
import { openFdCount } from "../tests/_memory_support.ts";

// This host runs Linux 6.18: PAGEMAP_SCAN must work here (a failure is a bug,
// not a reason to skip).

Deno.test("PagemapScanTracker.harvest() reports exactly random single-byte and page writes", () => {
  checkRandomWrites("pagemap-scan", { exact: true, seed: 1, kinds: ["byte", "page"] });
});

Deno.test("PagemapScanTracker.harvest() reports exactly 2 MiB spans and region edges", () => {
  checkRandomWrites("pagemap-scan", { exact: true, seed: 2, kinds: ["span2m", "edge"] });
});

Deno.test("PagemapScanTracker.harvest() reports exactly a mix of all write kinds", () => {
  checkRandomWrites("pagemap-scan", {
    exact: true,
    seed: 3,
    kinds: ["byte", "page", "span2m", "edge"],
  });
});

for (const pattern of ["random", "sequential", "hotspot"] as const) {
  Deno.test(`PagemapScanTracker.harvest() contains every page a Worker wrote (${pattern})`, async () => {
    await checkWorkerWrites("pagemap-scan", { pattern, seed: 11 });
  });
}

Deno.test("PagemapScanTracker.harvest() contains whole-page Worker writes to anonymous memory", async () => {
  await checkWorkerWrites("pagemap-scan", { pattern: "random", seed: 12, span: "page", region: 0 });
});

Deno.test("PagemapScanTracker.harvest() reports every page of a fully written region", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 64n << 20n }]);
  using t = new PagemapScanTracker(mem);
  t.start();
  mem.fill(g(0n), { length: 64 << 20, value: 3 });
  const [bm] = t.harvest();
  assert.equal(bm.count(), bm.pages);
  assert.deepEqual([...bm.runs()], [[0, bm.pages]]);
  assert.equal(t.harvest()[0].count(), 0);
});

Deno.test("PagemapScanTracker.harvest() ORs into given bitmaps", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  using t = new PagemapScanTracker(mem);
  t.start();
  const into = t.harvest();
  into[0].set(7);
  mem.writeU8(g(0x3000n), 1);
  assert.equal(t.harvest({ into }), into);
  assert.deepEqual(into[0].pageIndexes(), [3, 7]);
});

Deno.test("PagemapScanTracker.stop() closes its fds and GuestMemory.close() stops it", () => {
  const fds = openFdCount();
  const mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  const t = new PagemapScanTracker(mem);
  t.start();
  assert.equal(openFdCount(), fds + 2); // userfaultfd + pagemap
  t.stop();
  t.stop();
  assert.equal(openFdCount(), fds);
  t.start();
  mem.close();
  assert.equal(t.active, false);
  assert.equal(openFdCount(), fds);
  assert.throws(() => t.harvest(), /not started/);
  assert.throws(() => t.start(), /closed memory/);
});
