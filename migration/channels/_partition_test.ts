import assert from "node:assert/strict";
import { splitRuns } from "./_partition.ts";

Deno.test("splitRuns() gives each channel a contiguous, disjoint share", () => {
  assert.deepEqual(splitRuns([0, 256], 2), [[0, 128], [128, 128]]);
  assert.deepEqual(splitRuns([0, 3, 10, 3], 2), [[0, 3], [10, 3]]);
  assert.deepEqual(splitRuns([0, 2, 10, 4], 2), [[0, 2, 10, 1], [11, 3]]);
  assert.deepEqual(splitRuns([7, 1], 4), [[7, 1], [], [], []]);
  assert.deepEqual(splitRuns([], 2), [[], []]);
});

Deno.test("splitRuns() covers every page exactly once", () => {
  const runs = [0, 5, 9, 1, 20, 17, 40, 3];
  for (const n of [2, 3, 4, 7]) {
    const seen: number[] = [];
    for (const p of splitRuns(runs, n)) {
      for (let k = 0; k < p.length; k += 2) {
        for (let i = 0; i < p[k + 1]; i++) seen.push(p[k] + i);
      }
    }
    const want: number[] = [];
    for (let k = 0; k < runs.length; k += 2) {
      for (let i = 0; i < runs[k + 1]; i++) want.push(runs[k] + i);
    }
    assert.deepEqual(seen, want);
  }
});
