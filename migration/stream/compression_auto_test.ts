// `compress: "auto"`: the governor's rule on its own, and a writer over a fake
// sink and a fake clock (the sink's writes advance it by bytes / rate, and
// each compress call by a fixed time), so every choice is deterministic.
import assert from "node:assert/strict";
import { MemorySink, sha256Ram } from "../../tests/_stream_samples.ts";
import { fillSeeded, seeded, testSeed } from "../../tests/_random.ts";
import { guestAddress as g } from "../../sys/address.ts";
import { arrayRam, type RamAccess } from "./ram.ts";
import { SECTION_HEADER_BYTES, SectionType, streamHeaderBytes } from "./format.ts";
import { CompressionGovernor, GOVERNOR_SAMPLE_EVERY } from "./compression.ts";
import { StreamWriter } from "./writer.ts";
import { receiveStream } from "./reader.ts";
import { MemorySource } from "../../tests/_stream_samples.ts";

const PAGE = 4096;
const MiB = 1 << 20;
const RUNS = 64;
const SEED = testSeed();
console.log(`compression_auto_test: seed ${SEED} (replay with DENO_VMM_SEED=${SEED})`);

// Bytes per ms.
const SLOW_WIRE = 100_000; // 100 MB/s
const FAST_WIRE = 10_000_000; // 10 GB/s
const ZSTD_MS_PER_MIB = 1.5; // about 700 MB/s of input

// A clock that only a write (bytes / rate) and a compress call move. Every
// read adds the compress time unless a sink write happened since the last
// read: the writer reads it twice around each compress call (no write in
// between: measured as `compressMs`) and twice around each sink write (the
// write in between: measured as bytes / rate); the time between pairs is
// measured by nothing.
class FakeLink extends MemorySink {
  now = 0;
  rate: number;
  compressMs: number;
  #writesAtRead = 0;
  constructor(rate: number, compressMs = ZSTD_MS_PER_MIB) {
    super();
    this.rate = rate;
    this.compressMs = compressMs;
  }
  clock = (): number => {
    if (this.writes === this.#writesAtRead) this.now += this.compressMs;
    this.#writesAtRead = this.writes;
    return this.now;
  };
  override write(bytes: Uint8Array): Promise<void> {
    this.now += bytes.length / this.rate;
    return super.write(bytes);
  }
}

function layout(bytes: number) {
  return [{ gpa: g(0n), size: BigInt(bytes) }];
}

// Text-like RAM: each MiB the same seeded words (about 1/4 after zstd).
function textRam(bytes: number): RamAccess {
  const ram = arrayRam(layout(bytes));
  const words = ("the kernel maps a page of guest memory while the device writes its state " +
    "and the migration stream carries every dirty run to the destination host").split(" ");
  const next = seeded(SEED);
  const mib = new Uint8Array(MiB);
  const enc = new TextEncoder();
  for (let o = 0; o < MiB;) {
    const w = enc.encode(words[Math.floor(next() * words.length)] + " ");
    mib.set(w.subarray(0, Math.min(w.length, MiB - o)), o);
    o += w.length;
  }
  for (let o = 0; o < bytes; o += MiB) ram.view(g(BigInt(o)), MiB).set(mib);
  return ram;
}

function randomRam(bytes: number): RamAccess {
  const ram = arrayRam(layout(bytes));
  fillSeeded(ram.view(g(0n), bytes), SEED);
  return ram;
}

// The RAM sections' types in stream order (COMPRESSED or RAM).
function runTypes(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const out = [];
  for (let at = streamHeaderBytes(1); at < bytes.length;) {
    const type = v.getUint32(at, true);
    const length = Number(v.getBigUint64(at + 16, true));
    if (type === SectionType.RAM || type === SectionType.COMPRESSED) out.push(type);
    at += SECTION_HEADER_BYTES + (type === SectionType.ZERO ? 0 : length) + 4;
  }
  return out;
}

// Streams `ram` over `link`, calling `between(i)` before each MiB.
async function send(ram: RamAccess, link: FakeLink, between: (mib: number) => void = () => {}) {
  const w = new StreamWriter(link, { compress: "auto", clock: link.clock });
  await w.writeHeader(ram.layout, PAGE);
  const size = Number(ram.layout[0].size);
  for (let o = 0; o < size; o += MiB) {
    between(o / MiB);
    await w.writePages(ram, g(BigInt(o)), MiB / PAGE);
  }
  await w.writeEnd(sha256Ram(ram));
  const bytes = link.bytes();
  // Whatever was chosen, the destination gets the same RAM.
  const dst = arrayRam(ram.layout);
  await receiveStream(new MemorySource(bytes, 100_000), dst, { digest: sha256Ram });
  assert.deepEqual(sha256Ram(dst), sha256Ram(ram));
  return { stats: w.compression!, types: runTypes(bytes) };
}

Deno.test("CompressionGovernor compresses on a slow wire and goes raw on a fast one", () => {
  const slow = new CompressionGovernor();
  slow.compressed(MiB, MiB, MiB / 4, ZSTD_MS_PER_MIB);
  slow.wrote(MiB, MiB / SLOW_WIRE);
  assert.equal(slow.choose(MiB, MiB), "compress");
  const fast = new CompressionGovernor();
  fast.compressed(MiB, MiB, MiB / 4, ZSTD_MS_PER_MIB);
  fast.wrote(MiB, MiB / FAST_WIRE);
  const choices = Array.from({ length: 2 * GOVERNOR_SAMPLE_EVERY }, () => fast.choose(MiB, MiB));
  assert.equal(choices.filter((c) => c === "sample").length, 2);
  assert.equal(choices.filter((c) => c === "raw").length, 2 * GOVERNOR_SAMPLE_EVERY - 2);
  // No samples yet: it compresses, to get some.
  assert.equal(new CompressionGovernor().choose(MiB, MiB), "compress");
  // A rejected run says nothing about compressed runs: it is left out.
  const random = new CompressionGovernor();
  random.compressed(MiB, MiB, MiB, 0.1);
  random.wrote(MiB, MiB / FAST_WIRE);
  assert.equal(random.choose(MiB, MiB), "compress");
  assert.equal(random.estimates.compressRate, Infinity);
  assert.throws(() => new CompressionGovernor({ sampleEvery: 0 }), RangeError);
  const e = slow.estimates;
  assert.equal(e.ratio, 0.25);
  assert.ok(Math.abs(e.wireRate - SLOW_WIRE) < 1e-6 && Math.abs(e.compressRate - MiB / 1.5) < 1e-6);
});

Deno.test("StreamWriter compress auto compresses text-like runs on a slow wire", async () => {
  const { stats, types } = await send(textRam(RUNS * MiB), new FakeLink(SLOW_WIRE));
  assert.equal(stats.policy, "auto");
  // Only the second run goes raw, to measure the wire.
  assert.equal(stats.compressedRuns, RUNS - 1, JSON.stringify(stats));
  assert.equal(stats.wireRawRuns, 1);
  assert.equal(stats.sampledRuns, 0);
  assert.equal(types[1], SectionType.RAM);
  assert.ok([types[0], ...types.slice(2)].every((t) => t === SectionType.COMPRESSED));
  assert.ok(stats.wireBytes < stats.rawBytes / 4, JSON.stringify(stats));
});

Deno.test("StreamWriter compress auto sends raw on a fast wire but a slow compressor, sampling 1 run in 16", async () => {
  const { stats, types } = await send(textRam(RUNS * MiB), new FakeLink(FAST_WIRE));
  // The first run warms the compressor's estimate, the next the wire's.
  const warm = types.indexOf(SectionType.RAM);
  assert.equal(warm, 1, `${types}`);
  const later = types.slice(warm);
  const sampled = later.filter((t) => t === SectionType.COMPRESSED).length;
  assert.equal(sampled, stats.sampledRuns);
  assert.equal(sampled, Math.floor(later.length / GOVERNOR_SAMPLE_EVERY), JSON.stringify(stats));
  assert.equal(stats.wireRawRuns, later.length - sampled);
  assert.equal(stats.runs, RUNS - stats.wireRawRuns);
  assert.ok(stats.wireRawRuns >= RUNS - 1 - RUNS / GOVERNOR_SAMPLE_EVERY);
  assert.equal(stats.compressedRuns, warm + sampled);
});

Deno.test("StreamWriter compress auto follows a wire whose rate changes mid-stream", async () => {
  const half = RUNS / 2;
  // Fast, then slow: raw, then compressed within a few runs.
  const up = new FakeLink(FAST_WIRE);
  const a = await send(textRam(RUNS * MiB), up, (i) => {
    if (i === half) up.rate = SLOW_WIRE;
  });
  assert.equal(a.types[half - 1], SectionType.RAM);
  const toCompressed = a.types.indexOf(SectionType.COMPRESSED, half) - half;
  assert.ok(toCompressed >= 0 && toCompressed <= 2, `${toCompressed}: ${a.types}`);
  assert.ok(a.types.slice(half + toCompressed).every((t) => t === SectionType.COMPRESSED));
  // Slow, then fast: compressed, then raw within a bounded number of runs.
  // (Writes faster than the estimate count over 16 MiB of writes, at about
  // 1/4 of a run each: it flips after some 30 to 60 runs.)
  const down = new FakeLink(SLOW_WIRE);
  const b = await send(textRam(3 * RUNS * MiB), down, (i) => {
    if (i === half) down.rate = FAST_WIRE;
  });
  assert.ok(b.types.slice(2, half).every((t) => t === SectionType.COMPRESSED));
  const toRaw = b.types.indexOf(SectionType.RAM, half) - half;
  assert.ok(toRaw >= 0 && toRaw <= 96, `${toRaw}: ${b.types}`);
  const after = b.types.slice(half + toRaw);
  assert.ok(
    after.filter((t) => t === SectionType.COMPRESSED).length <=
      Math.ceil(after.length / GOVERNOR_SAMPLE_EVERY),
    `${b.types}`,
  );
});

Deno.test("StreamWriter compress auto sends incompressible runs raw, on a slow or a fast wire", async () => {
  for (const rate of [SLOW_WIRE, FAST_WIRE]) {
    const { stats, types } = await send(randomRam(RUNS * MiB), new FakeLink(rate, 0.1));
    assert.equal(stats.compressedRuns, 0, JSON.stringify(stats));
    assert.ok(types.every((t) => t === SectionType.RAM));
    assert.equal(stats.wireBytes, stats.rawBytes);
    // The compressor's probe rejects each run.
    assert.equal(stats.runs, RUNS);
  }
});

Deno.test("StreamWriter compress auto compresses text after random RAM on a slow wire", async () => {
  const ram = textRam(RUNS * MiB);
  fillSeeded(ram.view(g(8n * BigInt(MiB)), 16 * MiB), SEED + 1);
  const { stats, types } = await send(ram, new FakeLink(SLOW_WIRE));
  assert.ok(types.slice(24).every((t) => t === SectionType.COMPRESSED), `${types}`);
  assert.equal(stats.compressedRuns, RUNS - 1 - 16, JSON.stringify(stats));
});
