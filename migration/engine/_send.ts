// Sending a set of dirty pages: region by region, in runs, with the counters
// and progress events kept as pages go out.

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { GuestAddress } from "../../sys/address.ts";
import type { WritePagesResult } from "../stream/writer.ts";
import { type MigrationRun, PAGE } from "./_run.ts";

/** What one send did. */
export interface Sent {
  /** Pages processed: sent with bytes, as zero, or skipped unread. */
  pages: number;
  /** Of them, zero pages (skipped ones included). */
  zeroPages: number;
  /** Of the zero pages, never-written ones, not read. */
  skippedPages: number;
}

// Large runs go in pieces of this many pages, so progress is heard during a
// bulk pass (and the writer asks for never-written ranges once per piece).
const PIECE_PAGES = 65536; // 256 MiB

export function count(bitmaps: readonly DirtyBitmap[]): number {
  return bitmaps.reduce((n, b) => n + b.count(), 0);
}

/** Clears in `bitmaps` the pages set in `mask`. */
export function andNot(bitmaps: DirtyBitmap[], mask: readonly DirtyBitmap[] | undefined): void {
  if (mask === undefined) return;
  bitmaps.forEach((b, i) => {
    const w = b.words, m = mask[i].words;
    for (let j = 0; j < w.length; j++) if (w[j] !== 0) w[j] &= ~m[j];
  });
}

/**
 * Sends every dirty page, region by region; `remainingAfter` pages stay to
 * send once these are out (for the progress percentage).
 */
export async function sendDirty(
  run: MigrationRun,
  dirty: readonly DirtyBitmap[],
  remainingAfter = 0,
): Promise<Sent> {
  const sink = run.sink!;
  const c = run.counters;
  const sent: Sent = { pages: 0, zeroPages: 0, skippedPages: 0 };
  let left = count(dirty);
  const add = (r: WritePagesResult) => {
    sent.pages += r.pages + r.zeroPages;
    sent.zeroPages += r.zeroPages;
    sent.skippedPages += r.skippedPages;
    c.normalPages += r.pages;
    c.duplicatePages += r.zeroPages;
    c.skippedPages += r.skippedPages;
    left -= r.pages + r.zeroPages;
    run.refresh((left + remainingAfter) * PAGE);
    run.emit({ type: "progress", counters: { ...c } });
  };
  for (let i = 0; i < dirty.length; i++) {
    run.checkSignal();
    const base = run.layout[i].gpa;
    const runs: number[] = [];
    dirty[i].forEachRun((first, n) => {
      for (let at = 0; at < n; at += PIECE_PAGES) {
        runs.push(first + at, Math.min(PIECE_PAGES, n - at));
      }
    });
    // Runs go in batches of about a piece's worth of pages: one call for
    // many scattered pages, and progress heard between batches.
    for (let k = 0; k < runs.length;) {
      let j = k;
      let pages = 0;
      while (j < runs.length && (j === k || pages + runs[j + 1] <= PIECE_PAGES)) {
        pages += runs[j + 1];
        j += 2;
      }
      if (sink.writePageRuns !== undefined) {
        add(await sink.writePageRuns(run.ram, base, runs.slice(k, j)));
      } else {
        for (let r = k; r < j; r += 2) {
          const gpa = (base + BigInt(runs[r] * PAGE)) as GuestAddress; // inside region i
          add(await sink.writePages(run.ram, gpa, runs[r + 1]));
        }
      }
      k = j;
    }
  }
  return sent;
}
