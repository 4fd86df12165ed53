// Which pages of a destination's RAM a stream has written since they were
// last known to be zero. A destination whose RAM starts zeroed uses it to
// leave never-written pages of zero runs alone: reading them would cost as
// much as the stream's data, and would populate fresh memory.

import { setBitRange } from "../../sys/bits.ts";
import type { RamRegionLayout } from "./ram.ts";
import { findRegion } from "./format.ts";

// One bit per page, per region.
export class WrittenPages {
  #layout: readonly RamRegionLayout[];
  #bits: Uint32Array[];
  #pageSize: bigint;

  constructor(layout: readonly RamRegionLayout[], pageSize: number) {
    this.#layout = layout;
    this.#pageSize = BigInt(pageSize);
    this.#bits = layout.map((r) =>
      new Uint32Array(Math.ceil(Number(r.size / this.#pageSize) / 32))
    );
  }

  // The bitmap and page index of `gpa`, which the caller has checked lies in a region.
  locate(gpa: bigint): { bits: Uint32Array; page: number } {
    const i = findRegion(this.#layout, gpa, 1n);
    if (i < 0) throw new RangeError(`GPA 0x${gpa.toString(16)} is in no region`);
    return { bits: this.#bits[i], page: Number((gpa - this.#layout[i].gpa) / this.#pageSize) };
  }

  // Marks `pages` pages from `gpa` written.
  mark(gpa: bigint, pages: number): void {
    const { bits, page } = this.locate(gpa);
    setBitRange(bits, page, page + pages);
  }

  // Calls `each(first, n)` (page offsets from `gpa`) for every run of written
  // pages among the `pages` pages from `gpa`, and forgets them: the caller
  // makes them zero.
  takeRuns(gpa: bigint, pages: number, each: (first: number, n: number) => void): void {
    const { bits, page } = this.locate(gpa);
    const end = page + pages;
    let runStart = -1;
    for (let p = page; p < end;) {
      const w = p >>> 5;
      if ((p & 31) === 0 && bits[w] === 0 && runStart < 0) {
        p += 32;
        continue;
      }
      const set = (bits[w] >>> (p & 31)) & 1;
      if (set) {
        bits[w] &= ~(1 << (p & 31));
        if (runStart < 0) runStart = p;
      } else if (runStart >= 0) {
        each(runStart - page, p - runStart);
        runStart = -1;
      }
      p++;
    }
    if (runStart >= 0) each(runStart - page, end - runStart);
  }
}
