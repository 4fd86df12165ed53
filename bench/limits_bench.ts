/**
 * Micro figures of bench/limits.ts under `deno bench`, each group with its C
 * baseline (`baseline: true`) measured in the same run:
 *
 * - bitmap scan: DirtyBitmap `count`, `forEachRun`, `pageIndexesInto` over a
 *   16 GiB-sized bitmap (4,194,304 pages) at 0.1 %, 1 %, 10 % and 100 %,
 *   against bench/c/bitmap_scan.c through FFI on the same words;
 * - page copy: GuestMemory `view()`/`readView()` + `Uint8Array.set` of
 *   128 MiB in 4 KiB / 64 KiB / 2 MiB runs and random-order pages, against
 *   the copy loops of bench/c/memcpy_bw.c through FFI on the same mappings,
 *   with a plain `subarray` copy as a reference for the per-call view cost.
 *
 * ```sh
 * deno bench -A bench/limits_bench.ts
 * ```
 *
 * @module
 */

import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress as g } from "../sys/address.ts";
import { fillDensity, openBitmapScan, openMemcpy, pageOrder } from "./_limits_common.ts";

const BITMAP_PAGES = 4_194_304;
const COPY = 128 << 20;
let sink = 0;

// --- bitmap scan --------------------------------------------------------------
const cScan = openBitmapScan();
const runsOut = new Uint32Array(BITMAP_PAGES + 2);
const idxOut = new Uint32Array(BITMAP_PAGES);
const idxOurs = new Uint32Array(BITMAP_PAGES);
const pairs = new Uint32Array(BITMAP_PAGES + 2);
let n = 0;
const collect = (first: number, count: number) => {
  pairs[n++] = first;
  pairs[n++] = count;
};
for (const density of [0.001, 0.01, 0.1, 1]) {
  const bm = new DirtyBitmap(BITMAP_PAGES);
  fillDensity(bm, density);
  const label = `${density * 100} %`;
  const ops = [
    {
      op: "count()",
      c: () => void (sink += cScan.count(bm)),
      ours: () => void (sink += bm.count()),
    },
    {
      op: "forEachRun()",
      c: () => void (sink += cScan.runs(bm, runsOut)),
      ours: () => {
        n = 0;
        bm.forEachRun(collect);
        sink += n;
      },
    },
    {
      // Both write into a preallocated array.
      op: "pageIndexesInto()",
      c: () => void (sink += cScan.indexes(bm, idxOut)),
      ours: () => void (sink += bm.pageIndexesInto(idxOurs)),
    },
  ];
  for (const { op, c, ours } of ops) {
    const group = `bitmap ${op}, 16 GiB, ${label} dirty`;
    Deno.bench({ name: `C via FFI (${label})`, group, baseline: true, fn: c });
    Deno.bench({ name: `DirtyBitmap.${op} (${label})`, group, fn: ours });
  }
}

// --- page copy -----------------------------------------------------------------
const cCopy = openMemcpy();
const src = GuestMemory.create([{ gpa: g(0n), size: BigInt(COPY) }], { prefault: true });
const dst = GuestMemory.create([{ gpa: g(0n), size: BigInt(COPY) }], { prefault: true });
src.fill(g(0n), { length: COPY, value: 1 });
const srcHost = src.translate(g(0n), COPY) as bigint;
const dstHost = dst.translate(g(0n), COPY) as bigint;
const srcAll = src.readView(g(0n), COPY);
const dstAll = dst.view(g(0n), COPY);
const sizeB = BigInt(COPY);

for (const run of [4096, 65536, 2 << 20]) {
  const group = `copy 128 MiB in ${run >= 1 << 20 ? `${run >> 20} MiB` : `${run >> 10} KiB`} runs`;
  const runB = BigInt(run);
  Deno.bench({
    name: `C memcpy loop via FFI (${run} B)`,
    group,
    baseline: true,
    fn: () => cCopy.chunks(dstHost, srcHost, sizeB, runB),
  });
  Deno.bench({
    name: `GuestMemory view()/readView() + set (${run} B)`,
    group,
    fn() {
      for (let gpa = 0n; gpa < sizeB; gpa += runB) {
        dst.view(g(gpa), run).set(src.readView(g(gpa), run));
      }
    },
  });
  Deno.bench({
    name: `subarray + set, no per-run view() (${run} B)`,
    group,
    fn() {
      for (let off = 0; off < COPY; off += run) {
        dstAll.set(srcAll.subarray(off, off + run), off);
      }
    },
  });
}

const order = pageOrder(COPY / 4096);
Deno.bench({
  name: "C memcpy of pages via FFI (random order)",
  group: "copy 128 MiB as 4 KiB pages in random order",
  baseline: true,
  fn: () => cCopy.pages(dstHost, srcHost, order),
});
Deno.bench({
  name: "GuestMemory view()/readView() + set (random order)",
  group: "copy 128 MiB as 4 KiB pages in random order",
  fn() {
    for (let i = 0; i < order.length; i++) {
      const gpa = g(BigInt(order[i] * 4096));
      dst.view(gpa, 4096).set(src.readView(gpa, 4096));
    }
  },
});
Deno.bench({
  name: "subarray + set, no per-page view() (random order)",
  group: "copy 128 MiB as 4 KiB pages in random order",
  fn() {
    for (let i = 0; i < order.length; i++) {
      const off = order[i] * 4096;
      dstAll.set(srcAll.subarray(off, off + 4096), off);
    }
  },
});

globalThis.addEventListener("unload", () => {
  if (sink === -1) console.log(sink);
  src.close();
  dst.close();
  cScan.close();
  cCopy.close();
});
