// Live migrations over parallel channels (QEMU's multifd): the image arrives
// whole over 2 and 4 channels with a workload dirtying pages, over TCP, unix
// sockets and TLS, with compression; the iteration barrier keeps a page's
// later copy from being overwritten by an earlier one delayed on another
// channel.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { testSeed } from "./_random.ts";
import { startChannelProxy } from "./_channel_proxy.ts";
import { makeTlsFixture } from "./_tls_fixture.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { loadTlsCredentials } from "../migration/transport/tls_credentials.ts";
import { CHANNEL_HELLO_BYTES } from "../migration/stream/channel_hello.ts";
import {
  decodeSectionHeader,
  SECTION_HEADER_BYTES,
  SectionType,
} from "../migration/stream/format.ts";
import { migratePair, scriptedSource } from "./_channel_pair.ts";

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

Deno.test("migrateGuest() over 2 channels with zstd sums every channel's compression", async () => {
  const r = await runMigrationScenario({
    ram: 16 * MiB,
    channels: 2,
    compress: "zstd",
    // Compressible: each 4 KiB page repeats one seeded byte.
    fill: (v) => {
      for (let p = 0; p < v.length / 4096; p++) v.fill((p * 37) & 0xff, p * 4096, p * 4096 + 4096);
    },
  });
  assert.equal(r.report.result, "completed", r.report.error);
  assert.equal(r.destination.digest, r.report.sourceDigest);
  const c = r.report.compression!;
  assert.ok(c.compressedRuns > 0 && c.wireBytes < c.rawBytes, JSON.stringify(c));
});

Deno.test("migrateGuest() over 2 channels with compress auto gives each channel's writer the policy", async () => {
  const r = await runMigrationScenario({
    ram: 16 * MiB,
    channels: 2,
    compress: "auto",
    fill: (v) => {
      for (let p = 0; p < v.length / 4096; p++) v.fill((p * 37) & 0xff, p * 4096, p * 4096 + 4096);
    },
  });
  assert.equal(r.report.result, "completed", r.report.error);
  assert.equal(r.destination.digest, r.report.sourceDigest);
  const c = r.report.compression!;
  assert.equal(c.policy, "auto");
  // Each channel compresses its first run (the compressor's estimate starts
  // empty); what follows depends on how fast the socket takes bytes.
  assert.ok(c.compressedRuns >= 2, JSON.stringify(c));
  assert.ok(c.runs + c.wireRawRuns >= 16, JSON.stringify(c));
});

Deno.test("migrateGuest() over 2 unix-socket channels ends with equal digests", async () => {
  const seed = testSeed();
  const r = await runMigrationScenario({
    ram: 16 * MiB,
    channels: 2,
    transport: "unix",
    workload: { pattern: "hotspot", pagesPerSecond: 5_000, seed },
    limits: { downtimeLimitMs: 5_000 },
  });
  assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error}`);
  assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}`);
});

Deno.test("migrateGuest() over 2 channels keeps a page's later copy when its earlier one is delayed on another channel", async () => {
  const seed = testSeed();
  const ram = 1 << 20; // 256 pages: the bulk pass sends 0-127 on channel 0, 128-255 on channel 1
  const P = 200;
  let source: GuestMemory | undefined;
  // The page goes with A in iteration 0 (on channel 1); the harvest after
  // it writes B and reports it dirty, so B goes next, alone, on channel 0.
  const dirty = scriptedSource((h) => {
    if (h !== 1) return [];
    source!.view(guestAddress(BigInt(P * 4096)), 4096).fill(0xbb);
    return [P];
  });
  // Channel 1 (holding A) is held after its hello until channel 0 has sent
  // its COMPLETE (B and all): without the barrier the destination would
  // apply B first and then the stale A.
  let channel0Done!: () => void;
  const released = new Promise<void>((resolve) => channel0Done = resolve);
  let tail = new Uint8Array(0);
  const r = await migratePair({
    ram,
    channels: 2,
    seed,
    prepare: (m) => {
      source = m;
      m.view(guestAddress(BigInt(P * 4096)), 4096).fill(0xaa);
    },
    source: { guestSources: [dirty] },
    proxy: (target) =>
      startChannelProxy(target, {
        hold: (s) => s === 1 ? { from: CHANNEL_HELLO_BYTES, until: released } : undefined,
        onForward: (s, chunk) => {
          if (s !== 0) return;
          const t = new Uint8Array(tail.length + chunk.length);
          t.set(tail);
          t.set(chunk, tail.length);
          tail = t.slice(-32);
          if (endsWithComplete(tail)) channel0Done();
        },
      }),
  });
  assert.equal(r.source.ok, true, `seed ${seed}: ${!r.source.ok && r.source.error.message}`);
  assert.equal(
    r.destination.ok,
    true,
    `seed ${seed}: ${!r.destination.ok && r.destination.error.message}`,
  );
  const page = r.destinationMemory.view(guestAddress(BigInt(P * 4096)), 4096);
  assert.ok(page.every((b) => b === 0xbb), `seed ${seed}: the destination holds B, not A`);
  r.destinationMemory.close();
});

// Whether `tail` (the last 32 bytes of a channel) is a COMPLETE section.
function endsWithComplete(tail: Uint8Array): boolean {
  if (tail.length < SECTION_HEADER_BYTES + 4) return false;
  const h = decodeSectionHeader(tail.subarray(0, SECTION_HEADER_BYTES));
  return h !== undefined && h.type === SectionType.COMPLETE;
}

Deno.test("migrateGuest() over 2 TLS channels ends with equal digests", async () => {
  const seed = testSeed();
  const fixture = await makeTlsFixture();
  try {
    const r = await migratePair({
      ram: 16 * MiB,
      channels: 2,
      seed,
      tls: {
        listen: { credentials: loadTlsCredentials(fixture.good, "server") },
        connect: {
          credentials: loadTlsCredentials(fixture.good, "client"),
          serverName: "localhost",
        },
      },
    });
    assert.equal(r.source.ok, true, `seed ${seed}: ${!r.source.ok && r.source.error.message}`);
    assert.equal(r.destination.ok, true, `${!r.destination.ok && r.destination.error.message}`);
    assert.equal(r.source.ok && r.source.digest, r.destination.ok && r.destination.digest);
    r.destinationMemory.close();
  } finally {
    await fixture.remove();
  }
});
