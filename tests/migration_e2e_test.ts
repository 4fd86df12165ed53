// End-to-end live migrations of guest RAM with a concurrent Worker workload,
// over every transport, with every pattern, and with faults.
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { runMigrationScenario } from "./scenario.ts";
import {
  SECTION_HEADER_BYTES,
  SectionType,
  streamHeaderBytes,
} from "../migration/stream/format.ts";
import type { DeviceMigrator } from "../migration/engine/device_migrator.ts";
import { seeded, testSeed } from "./_random.ts";

const MiB = 1 << 20;

/**
 * Runs `body` with a directory of its own for the scenarios' temp files, and
 * checks it is empty afterwards (other processes' files in /tmp do not count).
 */
async function leavesNothing<T>(body: (tempDir: string) => Promise<T>): Promise<T> {
  const tempDir = await Deno.makeTempDir({ prefix: "deno-vmm-e2e-" });
  try {
    const out = await body(tempDir);
    assert.deepEqual([...Deno.readDirSync(tempDir)].map((e) => e.name), [], "no temp files remain");
    return out;
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
}

for (const transport of ["tcp", "unix", "file"] as const) {
  for (const pattern of ["sequential", "random", "hotspot"] as const) {
    Deno.test(`runMigrationScenario() migrates 256 MiB with a ${pattern} workload over ${transport}`, async () => {
      const r = await runMigrationScenario({
        ram: 256 * MiB,
        transport,
        workload: { pattern, pagesPerSecond: 10_000, seed: 3 },
        // Roomy: the test is about the image, not about this machine's speed under load.
        limits: { downtimeLimitMs: 5_000 },
      });
      assert.equal(r.report.result, "completed", r.report.error);
      assert.equal(r.destination.ok, true, r.destination.error);
      assert.equal(
        r.destination.digest,
        r.report.sourceDigest,
        "destination = source at the stop point",
      );
      assert.ok((r.workloadPages ?? 0) > 0, "the workload wrote during pre-copy");
      assert.equal(r.workloadState, "paused", "the source stays paused after hand-over");
      assert.ok(r.report.downtimeMs !== null && r.report.downtimeMs >= 0);
    });
  }
}

for (const pagesPerSecond of [1_000, 40_000]) {
  Deno.test(`runMigrationScenario() converges at ${pagesPerSecond} dirty pages/s`, async () => {
    const r = await runMigrationScenario({
      ram: 256 * MiB,
      workload: { pattern: "random", pagesPerSecond },
      // The rate is what is under test; a loaded machine sends slower, so the
      // limit leaves room for it.
      limits: { downtimeLimitMs: 2_000 },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.destination.digest, r.report.sourceDigest);
    const last = r.report.iterations.at(-1)!;
    assert.ok(last.expectedDowntimeMs <= r.report.policy.downtimeLimitMs);
  });
}

Deno.test("runMigrationScenario() migrates 1 GiB under a hotspot workload", async () => {
  const r = await runMigrationScenario({
    ram: 1024 * MiB,
    limits: { downtimeLimitMs: 5_000 },
    fill: (v) => {
      // Half zero pages: every other page random.
      const w = new Uint32Array(v.buffer, v.byteOffset, Math.floor(v.byteLength / 4));
      for (let p = 0; p < w.length / 1024; p += 2) {
        for (let i = p * 1024; i < p * 1024 + 1024; i++) w[i] = Math.imul(i, 2654435761);
      }
    },
    workload: { pattern: "hotspot", pagesPerSecond: 20_000 },
  });
  assert.equal(r.report.result, "completed", r.report.error);
  assert.equal(r.destination.digest, r.report.sourceDigest);
  assert.ok(r.report.iterations[0].zeroPages > 100_000, "zero pages go without bytes");
});

Deno.test("runMigrationScenario() fails cleanly when dirtying outpaces sending, converges with auto-converge", async () => {
  // The link is capped at 32 MB/s and the workload dirties 12,000 random pages
  // a second (49 MB/s): without throttling, pre-copy cannot catch up.
  const scenario = {
    ram: 32 * MiB,
    maxBandwidth: 32e6,
    workload: { pattern: "random" as const, pagesPerSecond: 12_000 },
  };
  const plain = await runMigrationScenario({
    ...scenario,
    limits: { downtimeLimitMs: 100, maxIterations: 6 },
  });
  assert.equal(plain.report.result, "failed");
  assert.match(plain.report.error!, /did not converge after 6 iterations.*try auto-converge/);
  assert.equal(plain.destination.ok, false, "the destination never reports a partial image");
  assert.equal(plain.workloadState, "running", "the source keeps running");
  const auto = await runMigrationScenario({
    ...scenario,
    limits: { downtimeLimitMs: 100, maxIterations: 60, autoConverge: true },
  });
  assert.equal(auto.report.result, "completed", auto.report.error);
  assert.equal(auto.destination.digest, auto.report.sourceDigest);
  assert.ok(auto.report.iterations.some((i) => i.throttle >= 20), "the workload was throttled");
});

Deno.test("runMigrationScenario() survives the transport cut at a random point", async () => {
  const seed = testSeed();
  const cut = MiB + Math.floor(seeded(seed)() * 200 * MiB);
  await leavesNothing(async (tempDir) => {
    const r = await runMigrationScenario({
      ram: 256 * MiB,
      tempDir,
      faults: { cutAfterBytes: cut },
    });
    assert.equal(r.report.result, "failed", `cut at ${cut} (seed ${seed})`);
    assert.equal(r.destination.ok, false);
    assert.equal(r.sourceDigestAfter, r.sourceDigestBefore, "source RAM untouched");
    const running = await runMigrationScenario({
      ram: 64 * MiB,
      tempDir,
      workload: { pattern: "random", pagesPerSecond: 5_000 },
      faults: { cutAfterBytes: 8 * MiB },
    });
    assert.equal(running.report.result, "failed");
    assert.equal(running.workloadState, "running", "the source keeps running");
  });
});

// A device whose state travels in the stream, so every section type appears.
const device: DeviceMigrator = {
  id: "test-device",
  supported: true,
  saveState: () => Promise.resolve(new TextEncoder().encode("device state v1 ".repeat(64))),
  resumeRunning: () => {},
};

interface Section {
  type: number;
  at: number;
  payload: number;
}

function sections(bytes: Uint8Array): Section[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const regions = v.getUint32(16, true);
  let at = streamHeaderBytes(regions);
  const out: Section[] = [];
  while (at < bytes.length) {
    const type = v.getUint32(at, true);
    const length = Number(v.getBigUint64(at + 16, true));
    const payload = type === SectionType.ZERO ? 0 : length;
    out.push({ type, at, payload });
    at += SECTION_HEADER_BYTES + payload + 4;
  }
  return out;
}

function reseal(bytes: Uint8Array, s: Section): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  v.setUint32(s.at + 24, crc32(bytes.subarray(s.at, s.at + 24)), true);
  const head = crc32(bytes.subarray(s.at, s.at + SECTION_HEADER_BYTES));
  const end = s.at + SECTION_HEADER_BYTES + s.payload;
  v.setUint32(end, crc32(bytes.subarray(s.at + SECTION_HEADER_BYTES, end), head), true);
}

async function corrupted(change: (bytes: Uint8Array) => Uint8Array) {
  return await leavesNothing((tempDir) => corruptedIn(tempDir, change));
}

async function corruptedIn(tempDir: string, change: (bytes: Uint8Array) => Uint8Array) {
  const r = await runMigrationScenario({
    tempDir,
    ram: 32 * MiB,
    fill: (v) => {
      // Pages 0-1023 alternate (sparse runs), 1024-1087 are data (a RAM run), the rest zero.
      for (let i = 0; i < 1024 * 4096; i += 8192) v[i] = 1 + (i % 251);
      v.fill(5, 1024 * 4096, 1088 * 4096);
    },
    transport: "file",
    devices: [device],
    destinationDevices: [{ id: device.id, loadState: () => Promise.resolve() }],
    faults: { corruptFile: change },
  });
  assert.equal(r.report.result, "completed", "the source wrote the whole file");
  assert.equal(r.destination.ok, false, "the destination rejects the image");
  return r.destination.error!;
}

Deno.test("receiveGuest() rejects a truncated file", async () => {
  const seed = testSeed();
  const at = seeded(seed)();
  const error = await corrupted((b) => b.subarray(0, Math.floor(b.length * at)));
  assert.match(error, /truncated|ended without an END|Stream/, `seed ${seed}`);
});

const NAMES: [number, string][] = [
  [SectionType.RAM, "RAM run"],
  [SectionType.ZERO, "zero run"],
  [SectionType.DEVICE_STATE, "device state"],
  [SectionType.ITERATION, "iteration"],
  [SectionType.END, "END"],
  [SectionType.SPARSE, "sparse run"],
];

Deno.test("receiveGuest() rejects a flipped byte in the header and in each section type", async () => {
  const header = await corrupted((b) => {
    b[10] ^= 0x40;
    return b;
  });
  assert.match(header, /offset \d+/);
  for (const [type, name] of NAMES) {
    const error = await corrupted((b) => {
      const s = sections(b).find((x) => x.type === type)!;
      assert.ok(s, `the stream has a ${name} section`);
      // Flip a payload byte where there is one (a device state's last byte,
      // past its id), else the GPA/arg field.
      const at = type === SectionType.DEVICE_STATE
        ? s.at + SECTION_HEADER_BYTES + s.payload - 1
        : s.payload > 0
        ? s.at + SECTION_HEADER_BYTES + (s.payload >> 1)
        : s.at + 9;
      b[at] ^= 0x01;
      return b;
    });
    assert.match(error, /offset \d+/, name);
    assert.match(error, /checksum|mismatch/i, name);
  }
});

Deno.test("receiveGuest() rejects an oversized length before allocating", async () => {
  const error = await corrupted((b) => {
    const s = sections(b).find((x) => x.type === SectionType.DEVICE_STATE)!;
    new DataView(b.buffer, b.byteOffset).setBigUint64(s.at + 16, 1n << 40n, true);
    new DataView(b.buffer, b.byteOffset).setUint32(
      s.at + 24,
      crc32(b.subarray(s.at, s.at + 24)),
      true,
    );
    return b;
  });
  assert.match(error, /offset \d+/);
  assert.match(error, /length|large|exceeds|cap/i);
});

Deno.test("receiveGuest() rejects a GPA outside its RAM", async () => {
  const error = await corrupted((b) => {
    const s = sections(b).find((x) => x.type === SectionType.RAM)!;
    new DataView(b.buffer, b.byteOffset).setBigUint64(s.at + 8, 1n << 40n, true);
    reseal(b, s);
    return b;
  });
  assert.match(error, /offset \d+/);
  assert.match(error, /outside|region|layout/i);
});

Deno.test("runMigrationScenario() rejects a destination whose RAM layout differs", async () => {
  const r = await runMigrationScenario({ ram: 64 * MiB, destinationRam: 32 * MiB });
  assert.equal(r.destination.ok, false);
  assert.match(r.destination.error!, /layout|region/i);
  assert.equal(r.report.result, "failed", "the source hears the destination refuse");
  // Not a bare broken pipe: the destination said why before closing.
  assert.match(
    r.report.error!,
    /^Destination refused the stream: Refused: Cannot receive migration stream at offset 24: Layout mismatch: region 0 is 0x4000000 bytes at GPA 0x0 in the stream, 0x2000000 at 0x0 here$/,
  );
});
