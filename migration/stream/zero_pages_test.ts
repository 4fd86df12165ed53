import assert from "node:assert/strict";
import { clearPages, isZero, pageRunList, pageRuns } from "./zero_pages.ts";
import { seeded, testSeed } from "../../tests/_random.ts";

const PAGE = 4096;

function naiveRuns(bytes: Uint8Array, page: number, maxRun: number) {
  const out: [boolean, number, number][] = [];
  for (let off = 0; off < bytes.length; off += page) {
    const zero = bytes.subarray(off, off + page).every((b) => b === 0);
    const last = out.at(-1);
    if (last && last[0] === zero && (zero || last[2] < maxRun)) last[2] += page;
    else out.push([zero, off, page]);
  }
  return out;
}

Deno.test("pageRuns() matches a byte-by-byte scan on random patterns", () => {
  const seed = testSeed();
  const random = seeded(seed);
  for (let trial = 0; trial < 20; trial++) {
    const pages = 1 + Math.floor(random() * 64);
    const bytes = new Uint8Array(pages * PAGE);
    for (let p = 0; p < pages; p++) {
      if (random() < 0.5) bytes[p * PAGE + Math.floor(random() * PAGE)] = 1;
    }
    const got = [...pageRuns(bytes, PAGE, { maxRunBytes: 3 * PAGE })].map((
      r,
    ) => [r.zero, r.offset, r.length]);
    assert.deepEqual(got, naiveRuns(bytes, PAGE, 3 * PAGE), `trial ${trial}, seed ${seed}`);
  }
});

Deno.test("pageRuns() sees a non-zero byte anywhere in a page, including the last", () => {
  for (const at of [0, 1, 15, 16, 2048, PAGE - 1]) {
    const bytes = new Uint8Array(2 * PAGE);
    bytes[PAGE + at] = 0x80;
    assert.deepEqual([...pageRuns(bytes, PAGE)].map((r) => r.zero), [true, false], `byte ${at}`);
  }
});

Deno.test("pageRuns() caps data runs but not zero runs", () => {
  const data = new Uint8Array(10 * PAGE).fill(1);
  assert.deepEqual([...pageRuns(data, PAGE, { maxRunBytes: 4 * PAGE })].map((r) => r.length), [
    4 * PAGE,
    4 * PAGE,
    2 * PAGE,
  ]);
  const zero = new Uint8Array(10 * PAGE);
  assert.deepEqual([...pageRuns(zero, PAGE, { maxRunBytes: 4 * PAGE })].map((r) => r.length), [
    10 * PAGE,
  ]);
});

Deno.test("pageRuns() works on unaligned views and rejects partial pages", () => {
  const backing = new Uint8Array(3 * PAGE + 1);
  const view = backing.subarray(1);
  view[PAGE + 5] = 9;
  assert.deepEqual([...pageRuns(view, PAGE)].map((r) => r.zero), [true, false, true]);
  assert.throws(() => [...pageRuns(new Uint8Array(100), PAGE)], RangeError);
});

Deno.test("isZero() checks every byte of any length", () => {
  assert.equal(isZero(new Uint8Array(0)), true);
  assert.equal(isZero(new Uint8Array(200_000)), true);
  const b = new Uint8Array(200_000);
  b[199_999] = 1;
  assert.equal(isZero(b), false);
});

Deno.test("clearPages() writes only the pages that are not zero", () => {
  const b = new Uint8Array(4 * PAGE);
  b[PAGE * 3 + 100] = 1;
  b[PAGE] = 2;
  assert.equal(clearPages(b, PAGE), 2);
  assert.equal(isZero(b), true);
  assert.equal(clearPages(b, PAGE), 0);
});

Deno.test("pageRunList() counts knownZero ranges as zero without reading them", () => {
  const P = 4096;
  const bytes = new Uint8Array(16 * P).fill(1); // every page has data...
  // ...but pages 2-5 and 9 are declared never written: they must not be read.
  const runs = pageRunList(bytes, P, { knownZero: [[2 * P, 4 * P], [9 * P, P]] });
  assert.deepEqual(runs.map((r) => [r.zero, r.offset / P, r.length / P]), [
    [false, 0, 2],
    [true, 2, 4],
    [false, 6, 3],
    [true, 9, 1],
    [false, 10, 6],
  ]);
  // Known-zero ranges merge with scanned zero pages around them.
  bytes.fill(0, 6 * P, 7 * P);
  assert.deepEqual(
    pageRunList(bytes, P, { knownZero: [[2 * P, 4 * P]] }).map((r) => [r.zero, r.offset / P]),
    [[false, 0], [true, 2], [false, 7]],
  );
});
