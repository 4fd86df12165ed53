import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  concat,
  MemorySink,
  MemorySource,
  sameRam,
  section,
  sha256Ram,
} from "../../tests/_stream_samples.ts";
import { fillSeeded, seeded, testSeed } from "../../tests/_random.ts";
import { arrayRam, type RamAccess } from "./ram.ts";
import { StreamError } from "./error.ts";
import {
  COMPRESSED_HEAD_BYTES,
  CompressionCodec,
  encodeStreamHeader,
  SECTION_HEADER_BYTES,
  SectionType,
  streamHeaderBytes,
} from "./format.ts";
import { receiveStream } from "./reader.ts";
import { StreamWriter, type StreamWriterOptions } from "./writer.ts";
import { guestAddress as g } from "../../sys/address.ts";
import { ZstdCompressor } from "../../sys/zstd.ts";

const PAGE = 4096;
const MiB = 1 << 20;
const LAYOUT = [{ gpa: g(0n), size: 8n * BigInt(MiB) }, {
  gpa: g(0x4000_0000n),
  size: 2n * BigInt(MiB),
}];
const SEED = testSeed();
console.log(`compressed_run_test: seed ${SEED} (replay with DENO_VMM_SEED=${SEED})`);

const WORDS = ("the kernel maps a page of guest memory while the device writes its state " +
  "and the migration stream carries every dirty run to the destination host").split(" ");

// Text-like pages (seeded words), a zero page every fourth page, then random bytes.
function mixedRam(seed: number): RamAccess {
  const ram = arrayRam(LAYOUT);
  const next = seeded(seed);
  const text = ram.view(g(0n), 4 * MiB);
  const enc = new TextEncoder();
  for (let o = 0; o < text.length;) {
    const w = enc.encode(WORDS[Math.floor(next() * WORDS.length)] + " ");
    text.set(w.subarray(0, Math.min(w.length, text.length - o)), o);
    o += w.length;
  }
  for (let p = 0; p < text.length / PAGE; p += 4) text.fill(0, p * PAGE, (p + 1) * PAGE);
  fillSeeded(ram.view(g(4n * BigInt(MiB)), 4 * MiB), seed + 1);
  fillSeeded(ram.view(g(0x4000_0000n), 2 * MiB), seed + 2);
  return ram;
}

async function stream(
  src: RamAccess,
  options: StreamWriterOptions,
): Promise<{ bytes: Uint8Array; writer: StreamWriter }> {
  const sink = new MemorySink();
  const writer = new StreamWriter(sink, options);
  await writer.writeHeader(src.layout, PAGE);
  for (const r of src.layout) await writer.writePages(src, r.gpa, Number(r.size) / PAGE);
  await writer.writeEnd(sha256Ram(src));
  return { bytes: sink.bytes(), writer };
}

// Every section: its type, offset and payload length.
function sections(bytes: Uint8Array): { type: number; at: number; payload: number }[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const out = [];
  for (let at = streamHeaderBytes(LAYOUT.length); at < bytes.length;) {
    const type = v.getUint32(at, true);
    const length = Number(v.getBigUint64(at + 16, true));
    const payload = type === SectionType.ZERO ? 0 : length;
    out.push({ type, at, payload });
    at += SECTION_HEADER_BYTES + payload + 4;
  }
  return out;
}

// Recomputes a section's header and trailer CRCs after an edit.
function reseal(bytes: Uint8Array, s: { at: number; payload: number }): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  v.setUint32(s.at + 24, crc32(bytes.subarray(s.at, s.at + 24)), true);
  const head = crc32(bytes.subarray(s.at, s.at + SECTION_HEADER_BYTES));
  const end = s.at + SECTION_HEADER_BYTES + s.payload;
  v.setUint32(end, crc32(bytes.subarray(s.at + SECTION_HEADER_BYTES, end), head), true);
}

async function reject(bytes: Uint8Array): Promise<StreamError> {
  const err = await receiveStream(new MemorySource(bytes), arrayRam(LAYOUT), { digest: sha256Ram })
    .then(() => undefined, (e) => e);
  assert.ok(err instanceof StreamError, `seed ${SEED}: ${err}`);
  return err;
}

function zstdFrame(src: Uint8Array): Uint8Array {
  using z = new ZstdCompressor();
  const out = new Uint8Array(ZstdCompressor.bound(src.length));
  return out.slice(0, z.compress(src, out));
}

// A stream header and one compressed section, built by hand.
function handMade(gpa: bigint, run: bigint, frame: Uint8Array, codec: number = 1): Uint8Array {
  const head = new Uint8Array(COMPRESSED_HEAD_BYTES);
  const v = new DataView(head.buffer);
  v.setUint32(0, codec, true);
  v.setBigUint64(8, run, true);
  const payload = concat(head, frame);
  return concat(
    encodeStreamHeader(LAYOUT, PAGE),
    section(SectionType.COMPRESSED, gpa, BigInt(payload.length), payload),
  );
}

Deno.test("StreamWriter compress zstd round-trips compressible and random RAM in fewer bytes", async () => {
  const src = mixedRam(SEED);
  // The same run size both ways (compression cuts runs at 1 MiB), so the
  // streams differ only in the sections compression replaced.
  const plain = await stream(src, { maxRunBytes: MiB });
  const packed = await stream(src, { compress: "zstd" });
  const stats = packed.writer.compression!;
  assert.equal(plain.writer.compression, undefined);
  // The text half compresses, the random half and region go raw.
  assert.ok(stats.compressedRuns > 0, `seed ${SEED}: ${JSON.stringify(stats)}`);
  assert.ok(stats.compressedRuns < stats.runs, `seed ${SEED}: ${JSON.stringify(stats)}`);
  assert.ok(stats.wireBytes < stats.rawBytes, `seed ${SEED}: ${JSON.stringify(stats)}`);
  const types = sections(packed.bytes).map((s) => s.type);
  assert.ok(types.includes(SectionType.COMPRESSED) && types.includes(SectionType.RAM));
  assert.equal(sections(packed.bytes).length, sections(plain.bytes).length);
  assert.equal(plain.bytes.length - packed.bytes.length, stats.rawBytes - stats.wireBytes);
  assert.ok(
    packed.bytes.length < plain.bytes.length - 2 * MiB,
    `seed ${SEED}: ${packed.bytes.length} compressed against ${plain.bytes.length} raw`,
  );
  for (const zeroed of [false, true]) {
    const dst = arrayRam(LAYOUT);
    if (!zeroed) dst.view(g(0n), 8 * MiB).fill(0xa5);
    const summary = await receiveStream(new MemorySource(packed.bytes, 100_000), dst, {
      digest: sha256Ram,
      zeroed,
    });
    assert.ok(sameRam(src, dst), `seed ${SEED}, zeroed ${zeroed}: RAM differs`);
    assert.equal(summary.sections.compressed, stats.compressedRuns);
  }
});

Deno.test("StreamWriter compress zstd sends random RAM raw, no larger than without it", async () => {
  const src = arrayRam(LAYOUT);
  for (const r of LAYOUT) fillSeeded(src.view(r.gpa, Number(r.size)), SEED + 7);
  const plain = await stream(src, { maxRunBytes: MiB });
  const packed = await stream(src, { compress: "zstd", snapshotRuns: true });
  assert.equal(packed.writer.compression!.compressedRuns, 0);
  const stats = packed.writer.compression!;
  assert.equal(stats.wireBytes, stats.rawBytes);
  assert.equal(packed.bytes.length, plain.bytes.length);
  assert.ok(!sections(packed.bytes).some((s) => s.type === SectionType.COMPRESSED));
  const dst = arrayRam(LAYOUT);
  await receiveStream(new MemorySource(packed.bytes), dst, { digest: sha256Ram });
  assert.ok(sameRam(src, dst), `seed ${SEED}`);
});

Deno.test("StreamWriter compress zstd compresses sparse windows of text pages", async () => {
  // Every other page zero, the others text: sparse runs without compression.
  const src = mixedRam(SEED);
  const v = src.view(g(0n), 4 * MiB);
  for (let p = 1; p < 1024; p += 2) v.fill(0, p * PAGE, (p + 1) * PAGE);
  const plain = await stream(src, {});
  const packed = await stream(src, { compress: "zstd" });
  assert.ok(sections(plain.bytes).some((s) => s.type === SectionType.SPARSE));
  const sparseBefore = sections(plain.bytes).filter((s) => s.type === SectionType.SPARSE).length;
  const sparseAfter = sections(packed.bytes).filter((s) => s.type === SectionType.SPARSE).length;
  assert.ok(sparseAfter < sparseBefore, `seed ${SEED}: ${sparseAfter} of ${sparseBefore}`);
  assert.ok(
    packed.bytes.length < plain.bytes.length - MiB / 2, // of 1 MiB of text pages
    `seed ${SEED}: ${packed.bytes.length} compressed against ${plain.bytes.length} raw`,
  );
  const dst = arrayRam(LAYOUT);
  const summary = await receiveStream(new MemorySource(packed.bytes), dst, { digest: sha256Ram });
  assert.ok(sameRam(src, dst), `seed ${SEED}`);
  assert.equal(summary.pages + summary.zeroPages, 10 * MiB / PAGE);
});

Deno.test("receiveStream() refuses a corrupted compressed run at its offset", async () => {
  const { bytes } = await stream(mixedRam(SEED), { compress: "zstd" });
  const s = sections(bytes).find((x) => x.type === SectionType.COMPRESSED)!;
  // In transit: the trailer CRC no longer holds.
  const cut = bytes.slice();
  cut[s.at + SECTION_HEADER_BYTES + COMPRESSED_HEAD_BYTES + 10] ^= 0x40;
  let err = await reject(cut);
  assert.equal(err.offset, s.at);
  assert.match(err.reason, /^Compressed run section checksum mismatch$/);
  // From a peer that resealed it: the frame itself is refused.
  const forged = bytes.slice();
  forged.fill(
    0x5a,
    s.at + SECTION_HEADER_BYTES + COMPRESSED_HEAD_BYTES,
    s.at + SECTION_HEADER_BYTES + COMPRESSED_HEAD_BYTES + 8,
  );
  reseal(forged, s);
  err = await reject(forged);
  assert.equal(err.offset, s.at);
  assert.match(err.reason, /^Compressed run at GPA 0x[0-9a-f]+ does not decompress: zstd: /);
});

Deno.test("receiveStream() refuses a compressed run whose size differs from its declared run", async () => {
  const { bytes } = await stream(mixedRam(SEED), { compress: "zstd" });
  const s = sections(bytes).find((x) => x.type === SectionType.COMPRESSED)!;
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const run = Number(v.getBigUint64(s.at + SECTION_HEADER_BYTES + 8, true));
  for (
    const [declared, reason] of [
      [run + PAGE, new RegExp(`decompresses to ${run} bytes, declared ${run + PAGE}$`)],
      [run - PAGE, new RegExp(`decompresses to more than its ${run - PAGE} bytes$`)],
    ] as const
  ) {
    const edited = bytes.slice();
    new DataView(edited.buffer).setBigUint64(
      s.at + SECTION_HEADER_BYTES + 8,
      BigInt(declared),
      true,
    );
    reseal(edited, s);
    const err = await reject(edited);
    assert.equal(err.offset, s.at);
    assert.match(err.reason, reason);
  }
});

Deno.test("receiveStream() refuses a decompression bomb without allocating its output", async () => {
  // 16 frames of 64 MiB of zeros each: 1 GiB of output from about 32 KiB.
  const frame = zstdFrame(new Uint8Array(64 * MiB));
  const bomb = concat(...Array.from({ length: 16 }, () => frame));
  const bytes = handMade(0n, BigInt(MiB), bomb);
  const before = Deno.memoryUsage().rss;
  const err = await reject(bytes);
  const grown = Deno.memoryUsage().rss - before;
  assert.equal(err.offset, streamHeaderBytes(LAYOUT.length));
  assert.match(
    err.reason,
    /^Compressed run at GPA 0x0 decompresses to more than its 1048576 bytes$/,
  );
  assert.ok(grown < 256 * MiB, `RSS grew by ${grown} bytes`);
});

Deno.test("receiveStream() checks a compressed run's head against the layout before reading it", async () => {
  const frame = zstdFrame(new Uint8Array(2 * PAGE).fill(3));
  const noise = new Uint8Array(2 * PAGE);
  fillSeeded(noise, SEED);
  const random = zstdFrame(noise);
  const at = streamHeaderBytes(LAYOUT.length);
  const cases: [Uint8Array, RegExp][] = [
    [handMade(0n, 2n * BigInt(PAGE), frame, 9), /^Compressed run has unknown codec 9$/],
    [
      handMade(0x4000_0000n + 2n * BigInt(MiB) - BigInt(PAGE), 2n * BigInt(PAGE), frame),
      /crosses the end of its region$/,
    ],
    [handMade(0x2000_0000n, 2n * BigInt(PAGE), frame), /outside the destination's layout$/],
    [
      handMade(0n, 128n * BigInt(MiB), frame),
      /^Compressed run length 134217728 is not in 1 to 67108864$/,
    ],
    [handMade(0n, 1000n, frame), /is not page-aligned$/],
    [handMade(0n, 2n * BigInt(PAGE), random), /is not smaller than its 8192-byte run$/],
  ];
  for (const [bytes, reason] of cases) {
    const err = await reject(bytes);
    assert.equal(err.offset, at, err.message);
    assert.match(err.reason, reason);
  }
  assert.equal(CompressionCodec.ZSTD, 1);
});

Deno.test("receiveStream() refuses a stream cut inside a compressed run", async () => {
  const { bytes } = await stream(mixedRam(SEED), { compress: "zstd" });
  const s = sections(bytes).find((x) => x.type === SectionType.COMPRESSED && x.payload > 200)!;
  for (
    const cut of [s.at + SECTION_HEADER_BYTES + 5, s.at + SECTION_HEADER_BYTES + s.payload - 100]
  ) {
    const err = await reject(bytes.subarray(0, cut));
    assert.equal(err.offset, cut);
    assert.match(err.reason, /^Stream truncated in a compressed run: \d+ more bytes expected$/);
  }
});

Deno.test("StreamWriter() refuses an unknown compression", () => {
  assert.throws(
    () => new StreamWriter(new MemorySink(), { compress: "lz4" as "zstd" }),
    RangeError,
  );
});

Deno.test("StreamWriter compress zstd sends a run raw when its first 64 KiB do not compress", async () => {
  // 1 MiB runs: random first 64 KiB then text, against text first then random.
  const src = mixedRam(SEED);
  const text = src.view(g(0n), 2 * MiB).slice();
  const noise = src.view(g(4n * BigInt(MiB)), 64 << 10).slice();
  const v = src.view(g(0n), 8 * MiB);
  v.fill(0);
  v.set(noise, 0);
  v.set(text.subarray(0, MiB - noise.length), noise.length);
  v.set(text.subarray(0, MiB - noise.length), MiB);
  v.set(noise, 2 * MiB - noise.length);
  const { bytes, writer } = await stream(src, { compress: "zstd" });
  const c = sections(bytes).filter((s) => s.type === SectionType.COMPRESSED);
  assert.deepEqual(c.map((s) => Number(new DataView(bytes.buffer).getBigUint64(s.at + 8, true))), [
    MiB,
  ]);
  assert.equal(writer.compression!.compressedRuns, 1);
  const dst = arrayRam(LAYOUT);
  await receiveStream(new MemorySource(bytes), dst, { digest: sha256Ram });
  assert.ok(sameRam(src, dst), `seed ${SEED}`);
});
