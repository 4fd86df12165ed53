import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { MemorySink, MemorySource, sameRam, sha256Ram } from "../../tests/_stream_samples.ts";
import { arrayRam } from "./ram.ts";
import { StreamError } from "./error.ts";
import { SECTION_HEADER_BYTES, SectionType, streamHeaderBytes } from "./format.ts";
import { receiveStream } from "./reader.ts";
import { StreamWriter } from "./writer.ts";
import { guestAddress as g } from "../../sys/address.ts";

const PAGE = 4096;
const LAYOUT = [{ gpa: g(0n), size: 4096n * 1024n }]; // 4 MiB

async function alternating(): Promise<{ bytes: Uint8Array; src: ReturnType<typeof arrayRam> }> {
  const src = arrayRam(LAYOUT);
  const v = src.view(g(0n), 4 << 20);
  for (let p = 0; p < 1024; p += 2) v.fill(p & 0xff || 1, p * PAGE, (p + 1) * PAGE);
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { maxRunBytes: 1 << 20 });
  await w.writeHeader(LAYOUT, PAGE);
  assert.deepEqual(await w.writePages(src, g(0n), 1024), {
    pages: 512,
    zeroPages: 512,
    skippedPages: 0,
  });
  await w.writeEnd(sha256Ram(src));
  return { bytes: sink.bytes(), src };
}

function firstSparse(bytes: Uint8Array): { at: number; payload: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  let at = streamHeaderBytes(1);
  for (;;) {
    const type = v.getUint32(at, true);
    const length = Number(v.getBigUint64(at + 16, true));
    if (type === SectionType.SPARSE) return { at, payload: length };
    at += SECTION_HEADER_BYTES + (type === SectionType.ZERO ? 0 : length) + 4;
  }
}

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
  assert.ok(err instanceof StreamError, String(err));
  return err;
}

Deno.test("StreamWriter.writePages() sends finely interleaved zero pages as sparse runs", async () => {
  const { bytes, src } = await alternating();
  // Four 1 MiB windows, each one section: half the pages' bytes plus small bitmaps.
  assert.ok(bytes.length < (2 << 20) + 8192, `${bytes.length} bytes`);
  const dst = arrayRam(LAYOUT);
  dst.view(g(1n * 4096n), PAGE).fill(9); // a stale page in a zero slot must be cleared
  const s = await receiveStream(new MemorySource(bytes), dst, { digest: sha256Ram });
  assert.equal(s.sections.sparse, 4);
  assert.equal(s.sections.ram + s.sections.zero, 0);
  assert.equal(s.pages, 512);
  assert.equal(s.zeroPages, 512);
  assert.ok(sameRam(src, dst));
});

Deno.test("receiveStream() rejects a flipped byte in a sparse run", async () => {
  const { bytes } = await alternating();
  const s = firstSparse(bytes);
  bytes[s.at + SECTION_HEADER_BYTES + 100] ^= 1; // in the bitmap
  const e = await reject(bytes);
  assert.equal(e.offset, s.at);
  assert.match(e.reason, /Sparse run/);
});

Deno.test("receiveStream() rejects a sparse run whose length and bitmap disagree", async () => {
  const { bytes } = await alternating();
  const s = firstSparse(bytes);
  // Clear one bit: one page fewer than the length says, resealed so only the check catches it.
  bytes[s.at + SECTION_HEADER_BYTES + 8] &= ~1;
  reseal(bytes, s);
  const e = await reject(bytes);
  assert.equal(e.offset, s.at);
  assert.match(e.reason, /does not match its bitmap \(127 pages sent\)/);
});

Deno.test("receiveStream() rejects a sparse run outside the layout or too long", async () => {
  const outside = (await alternating()).bytes;
  const s = firstSparse(outside);
  new DataView(outside.buffer, outside.byteOffset).setBigUint64(s.at + 8, 1n << 40n, true);
  reseal(outside, s);
  assert.match((await reject(outside)).reason, /outside the destination's layout/);
  const huge = (await alternating()).bytes;
  const h = firstSparse(huge);
  new DataView(huge.buffer, huge.byteOffset).setUint32(h.at + SECTION_HEADER_BYTES, 1 << 20, true);
  reseal(huge, h);
  assert.match((await reject(huge)).reason, /Sparse run of 1048576 pages is not in 1 to 16384/);
});
