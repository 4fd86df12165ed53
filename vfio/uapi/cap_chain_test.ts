import assert from "node:assert/strict";
import { CapChainError, walkCapChain, writeCapHeader } from "./cap_chain.ts";
import {
  decodeIommuInfo,
  encodeIommuInfoCaps,
  IOMMU_INFO_SIZE,
  type IommuInfoCap,
} from "./iommu_info.ts";
import { VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES } from "../constants.ts";

const MIGRATION: IommuInfoCap = {
  kind: "migration",
  cap: { flags: 0, pgsizeBitmap: 0x1000n, maxDirtyBitmapSize: 0x10000000n },
};
const DMA_AVAIL: IommuInfoCap = { kind: "dmaAvail", avail: 65534 };
const RANGES: IommuInfoCap = {
  kind: "iovaRanges",
  ranges: [{ start: 0n, end: 0xfedfffffn }, { start: 0xfef00000n, end: 0x7fffffffffn }],
};

function reply(caps: IommuInfoCap[]): Uint8Array {
  const chain = encodeIommuInfoCaps(caps);
  const buf = new Uint8Array(IOMMU_INFO_SIZE + chain.byteLength);
  const v = new DataView(buf.buffer);
  v.setUint32(0, buf.byteLength, true);
  v.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
  v.setBigUint64(8, 0x40201000n, true);
  v.setUint32(16, IOMMU_INFO_SIZE, true);
  buf.set(chain, IOMMU_INFO_SIZE);
  return buf;
}

Deno.test("decodeIommuInfo() reads type1's chain", () => {
  const info = decodeIommuInfo(reply([MIGRATION, DMA_AVAIL, RANGES]));
  assert.equal(info.iovaPgsizes, 0x40201000n);
  assert.deepEqual(info.migration, MIGRATION.kind === "migration" ? MIGRATION.cap : undefined);
  assert.equal(info.dmaAvail, 65534);
  assert.equal(info.iovaRanges.length, 2);
  assert.equal(info.iovaRanges[1].end, 0x7fffffffffn);
  assert.deepEqual(info.unknownCaps, []);
});

Deno.test("decodeIommuInfo() reads the caps in any order", () => {
  const orders = [
    [RANGES, DMA_AVAIL, MIGRATION],
    [DMA_AVAIL, RANGES, MIGRATION],
    [MIGRATION, RANGES, DMA_AVAIL],
  ];
  const want = decodeIommuInfo(reply([MIGRATION, DMA_AVAIL, RANGES]));
  for (const order of orders) {
    const got = decodeIommuInfo(reply(order));
    assert.deepEqual(got.migration, want.migration);
    assert.deepEqual(got.iovaRanges, want.iovaRanges);
    assert.equal(got.dmaAvail, want.dmaAvail);
  }
});

Deno.test("decodeIommuInfo() keeps unknown caps with id, version and bytes", () => {
  const body = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const info = decodeIommuInfo(
    reply([
      DMA_AVAIL,
      { kind: "raw", id: 0x77, version: 3, body },
      { kind: "raw", id: 2, version: 2, body: new Uint8Array(24) }, // migration v2: unknown layout
    ]),
  );
  assert.equal(info.dmaAvail, 65534);
  assert.equal(info.migration, undefined);
  assert.equal(info.unknownCaps.length, 2);
  assert.equal(info.unknownCaps[0].id, 0x77);
  assert.equal(info.unknownCaps[0].version, 3);
  assert.deepEqual([...info.unknownCaps[0].bytes.subarray(8)], [...body]);
  assert.equal(info.unknownCaps[1].version, 2);
});

Deno.test("decodeIommuInfo() without the CAPS flag ignores cap_offset", () => {
  const buf = reply([MIGRATION]);
  new DataView(buf.buffer).setUint32(4, VFIO_IOMMU_INFO_PGSIZES, true);
  assert.equal(decodeIommuInfo(buf).migration, undefined);
});

function chain(headers: { at: number; id: number; next: number }[], size: number): Uint8Array {
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  for (const h of headers) writeCapHeader(v, h.at, { id: h.id, version: 1, next: h.next });
  return buf;
}

Deno.test("walkCapChain() rejects a next pointing backwards", () => {
  const buf = chain([{ at: 24, id: 9, next: 40 }, { at: 40, id: 9, next: 32 }], 64);
  assert.throws(() => walkCapChain(buf, 24, 24), (e: unknown) => {
    assert.ok(e instanceof CapChainError);
    assert.match(e.message, /backwards/);
    assert.equal(e.offset, 32);
    return true;
  });
});

Deno.test("walkCapChain() rejects a cycle", () => {
  const self = chain([{ at: 24, id: 9, next: 24 }], 64);
  assert.throws(() => walkCapChain(self, 24, 24), /cycle/);
  const loop = chain([{ at: 24, id: 9, next: 40 }, { at: 40, id: 9, next: 24 }], 64);
  assert.throws(() => walkCapChain(loop, 24, 24), CapChainError);
});

Deno.test("walkCapChain() rejects a next past the buffer", () => {
  const buf = chain([{ at: 24, id: 9, next: 4096 }], 64);
  assert.throws(() => walkCapChain(buf, 24, 24), /past the buffer end/);
  const header = chain([{ at: 24, id: 9, next: 60 }], 64); // a header needs 8 bytes, 4 left
  assert.throws(() => walkCapChain(header, 24, 24), /header runs past the buffer end/);
  assert.throws(() => walkCapChain(new Uint8Array(30), 24, 24), /past the buffer end/);
});

Deno.test("walkCapChain() rejects a cap_offset inside the fixed struct", () => {
  assert.throws(() => walkCapChain(chain([], 64), 8, 24), /fixed struct/);
});

Deno.test("decodeIommuInfo() rejects a truncated known cap", () => {
  const buf = reply([DMA_AVAIL, MIGRATION]);
  assert.throws(
    () => decodeIommuInfo(buf.subarray(0, buf.byteLength - 8)),
    /MIGRATION cap needs 32/,
  );
  const ranges = reply([RANGES]);
  new DataView(ranges.buffer).setUint32(IOMMU_INFO_SIZE + 8, 1000, true); // nr_iovas too large
  assert.throws(() => decodeIommuInfo(ranges), /IOVA_RANGE cap needs/);
});

Deno.test("walkCapChain() ends on arbitrary bytes without hanging", () => {
  // Every next must move forward inside a finite buffer, so any input ends.
  let seed = 1;
  for (let round = 0; round < 2000; round++) {
    const buf = new Uint8Array(24 + (round % 97));
    for (let i = 0; i < buf.length; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      buf[i] = seed >>> 24;
    }
    try {
      walkCapChain(buf, 24 + (round % 5), 24);
    } catch (e) {
      assert.ok(e instanceof CapChainError);
    }
  }
});
