// Live migrations with `compress: "zstd"`: a running workload writing
// text-like RAM, and the transport cut inside the compressed stream.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { fillRam } from "../cli/fill.ts";
import { seeded, testSeed } from "./_random.ts";

const MiB = 1 << 20;
const SEED = testSeed();
console.log(`migration_compress_test: seed ${SEED} (replay with DENO_VMM_SEED=${SEED})`);

Deno.test("runMigrationScenario() compress zstd migrates text-like RAM under a workload over tcp", async () => {
  const r = await runMigrationScenario({
    ram: 128 * MiB,
    fill: (v) => fillRam(v, { pattern: "text", seed: SEED }),
    workload: { pattern: "random", pagesPerSecond: 5_000, seed: SEED },
    compress: "zstd",
    limits: { downtimeLimitMs: 5_000 },
  });
  assert.equal(r.report.result, "completed", `seed ${SEED}: ${r.report.error}`);
  assert.equal(r.destination.ok, true, r.destination.error);
  assert.equal(
    r.destination.digest,
    r.report.sourceDigest,
    "destination = source at the stop point",
  );
  assert.ok((r.workloadPages ?? 0) > 0, "the workload wrote during pre-copy");
  const c = r.report.compression!;
  assert.ok(c.compressedRuns > 0 && c.wireBytes < c.rawBytes, JSON.stringify(c));
  // 64 MiB of text pages and the workload's random pages: far less than the text raw.
  assert.ok(r.report.totalBytes < 48 * MiB, `seed ${SEED}: ${r.report.totalBytes} bytes`);
});

Deno.test("runMigrationScenario() compress zstd fails on both sides when the transport is cut", async () => {
  // The compressed bulk pass of 64 MiB of text is about 12 MiB: cut inside it.
  const cut = 64 * 1024 + Math.floor(seeded(SEED)() * 8 * MiB);
  const r = await runMigrationScenario({
    ram: 128 * MiB,
    fill: (v) => fillRam(v, { pattern: "text", seed: SEED }),
    compress: "zstd",
    faults: { cutAfterBytes: cut },
  });
  assert.equal(r.report.result, "failed", `cut at ${cut} (seed ${SEED})`);
  assert.equal(r.destination.ok, false, `cut at ${cut}: the destination reported success`);
  assert.equal(r.sourceDigestAfter, r.sourceDigestBefore, "source RAM untouched");
});
