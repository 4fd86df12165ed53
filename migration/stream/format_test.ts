import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  COMPRESSED_HEAD_BYTES,
  CompressionCodec,
  decodeSectionHeader,
  encodeSectionHeader,
  encodeStreamHeader,
  findRegion,
  isValidPageSize,
  layoutProblem,
  MAX_RUN_BYTES,
  SECTION_HEADER_BYTES,
  SECTION_TRAILER_BYTES,
  SectionType,
  STREAM_HEADER_FIXED_BYTES,
  STREAM_MAGIC,
  STREAM_VERSION,
  streamHeaderBytes,
} from "./format.ts";
import { guestAddress as g } from "../../sys/address.ts";

Deno.test("stream format pins its sizes, codes and magic", () => {
  assert.deepEqual([...STREAM_MAGIC], [...new TextEncoder().encode("DVMM-MIG")]);
  assert.equal(STREAM_VERSION, 5);
  assert.equal(STREAM_HEADER_FIXED_BYTES, 24);
  assert.equal(SECTION_HEADER_BYTES, 28);
  assert.equal(SECTION_TRAILER_BYTES, 4);
  assert.equal(MAX_RUN_BYTES, 64 << 20);
  assert.deepEqual(SectionType, {
    RAM: 1,
    ZERO: 2,
    DEVICE_STATE: 3,
    ITERATION: 4,
    END: 5,
    SPARSE: 6,
    COMPLETE: 7,
    COMPRESSED: 8,
    DEVICE_PRECOPY: 9,
    DEVICE_INIT_DATA_SENT: 10,
  });
  assert.equal(COMPRESSED_HEAD_BYTES, 16);
  assert.deepEqual(CompressionCodec, { ZSTD: 1 });
  assert.equal(streamHeaderBytes(2), 60);
});

Deno.test("encodeStreamHeader() lays out fields little-endian with a trailing CRC", () => {
  const h = encodeStreamHeader([{ gpa: g(0x1000n), size: 0x2000n }], 4096);
  const v = new DataView(h.buffer);
  assert.equal(h.length, 44);
  assert.equal(new TextDecoder().decode(h.subarray(0, 8)), "DVMM-MIG");
  assert.equal(v.getUint32(8, true), 5);
  assert.equal(v.getUint32(12, true), 4096);
  assert.equal(v.getUint32(16, true), 1);
  assert.equal(v.getUint32(20, true), 0);
  assert.equal(v.getBigUint64(24, true), 0x1000n);
  assert.equal(v.getBigUint64(32, true), 0x2000n);
  assert.equal(v.getUint32(40, true), crc32(h.subarray(0, 40)));
});

Deno.test("encodeStreamHeader() rejects bad page sizes and layouts", () => {
  assert.throws(() => encodeStreamHeader([{ gpa: g(0n), size: 4096n }], 3000), RangeError);
  assert.throws(() => encodeStreamHeader([], 4096), RangeError);
  assert.throws(() => encodeStreamHeader([{ gpa: g(0x800n), size: 4096n }], 4096), RangeError);
});

Deno.test("encodeSectionHeader() round-trips and decodeSectionHeader() catches a flipped bit", () => {
  const b = new Uint8Array(SECTION_HEADER_BYTES);
  const seed = encodeSectionHeader(b, 0, { type: 2, flags: 0, arg: 0x5000n, length: 0x3000n });
  assert.equal(seed, crc32(b));
  const v = new DataView(b.buffer);
  assert.equal(v.getUint32(0, true), 2);
  assert.equal(v.getBigUint64(8, true), 0x5000n);
  assert.equal(v.getBigUint64(16, true), 0x3000n);
  assert.equal(v.getUint32(24, true), crc32(b.subarray(0, 24)));
  assert.deepEqual(decodeSectionHeader(b), { type: 2, flags: 0, arg: 0x5000n, length: 0x3000n });
  b[17] ^= 1;
  assert.equal(decodeSectionHeader(b), undefined);
});

Deno.test("layoutProblem() and isValidPageSize() name what is wrong", () => {
  assert.equal(layoutProblem([{ gpa: g(0n), size: 4096n }], 4096), undefined);
  assert.match(layoutProblem([{ gpa: g(0n), size: 0n }], 4096)!, /empty/);
  assert.match(
    layoutProblem([{ gpa: g(0x2000n), size: 4096n }, { gpa: g(0x1000n), size: 4096n }], 4096)!,
    /overlaps or precedes/,
  );
  assert.equal(isValidPageSize(65536), true);
  assert.equal(isValidPageSize(256), false);
});

Deno.test("findRegion() tells a miss from a run crossing a region end", () => {
  const layout = [{ gpa: g(0x1000n), size: 0x2000n }, { gpa: g(0x4000n), size: 0x1000n }];
  assert.equal(findRegion(layout, 0x1000n, 0x2000n), 0);
  assert.equal(findRegion(layout, 0x4000n, 0x1000n), 1);
  assert.equal(findRegion(layout, 0x3000n, 0x1000n), -1);
  assert.equal(findRegion(layout, 0x2000n, 0x2000n), -2);
});
