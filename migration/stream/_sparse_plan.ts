// How a scanned range becomes sections: which runs join one sparse section,
// and packing a sparse section's data pages. The hot loops live in plain
// functions: V8 optimizes a plain function's loop while it runs, but not one
// inside an async function or a generator.

import { SPARSE_HEAD_BYTES } from "./format.ts";
import type { PageRun } from "./zero_pages.ts";

// Pairs [i, j) of runs: more than `minRuns` runs that fit in one window become
// one sparse section; otherwise a pair holds one run.
export function groupRuns(runs: readonly PageRun[], window: number, minRuns: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs.length;) {
    const start = runs[i].offset;
    let j = i;
    while (j < runs.length && runs[j].offset + runs[j].length - start <= window) j++;
    const end = j - i > minRuns ? j : i + 1;
    out.push(i, end);
    i = end;
  }
  return out;
}

// Copies the data runs of runs[i..j) (offsets from runs[i]) into `out` and
// sets their bits after the sparse head; returns the bytes copied.
export function packSparse(
  part: Uint8Array,
  runs: readonly PageRun[],
  i: number,
  j: number,
  pageSize: number,
  head: Uint8Array,
  out: Uint8Array,
): number {
  let used = 0;
  const base = runs[i].offset;
  for (let k = i; k < j; k++) {
    const run = runs[k];
    if (run.zero) continue;
    const from = run.offset - base;
    out.set(part.subarray(from, from + run.length), used);
    used += run.length;
    for (let p = from / pageSize; p < (from + run.length) / pageSize; p++) {
      head[SPARSE_HEAD_BYTES + (p >> 3)] |= 1 << (p & 7);
    }
  }
  return used;
}
