/**
 * Adds up the guest's per-file `deno test` runs (see `jobScript`): each
 * file's own summary when it printed one, and for a file that was killed at
 * its bound (or crashed) the tests that had passed, with the rest of what it
 * declares counted as failed.
 *
 * @module
 */

import { FILE_MARKERS } from "./job.ts";
import type { TestSummary } from "./output.ts";

const SUMMARY = /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/;
// A top-level test's result line (steps are indented).
const PASSED = /^\S.* \.\.\. ok \(\d/;

/** A file whose run ended without its own summary. */
export interface UnfinishedFile {
  /** The file. */
  file: string;
  /** `deno test`'s exit code (124 or 137: killed at the bound). */
  code: number;
  /** Tests it had passed before it ended. */
  passed: number;
  /** Tests counted as failed: what it declares, less what passed (at least 1). */
  failed: number;
}

/** Watches the guest's output lines for the per-file markers and summaries. */
export class FileTally {
  #nonce: string;
  #files: readonly string[];
  #declared: readonly number[];
  #current: number | undefined;
  #currentSince = 0;
  #passedLines = 0;
  #summary: TestSummary | undefined;
  #finished = new Set<number>();

  /** Sums over the files that ended. */
  readonly totals: TestSummary = { passed: 0, failed: 0 };
  /** Files that ended without a summary, in order. */
  readonly unfinished: UnfinishedFile[] = [];

  /**
   * @param options The markers' nonce, the files in job order, and how many
   * tests each declares.
   */
  constructor(options: { nonce: string; files: readonly string[]; declared: readonly number[] }) {
    this.#nonce = options.nonce;
    this.#files = options.files;
    this.#declared = options.declared;
  }

  /** Whether any file's run has begun. */
  get started(): boolean {
    return this.#current !== undefined || this.#finished.size > 0;
  }

  /**
   * Tests of files that never ended (the boot's deadline came first), or
   * never began: what those files declare, less what passed in the one that
   * was running.
   *
   * @returns Passed and failed counts to add to {@linkcode totals}.
   */
  notEnded(): TestSummary {
    let failed = 0;
    let passed = 0;
    this.#files.forEach((_, i) => {
      if (this.#finished.has(i)) return;
      const ran = i === this.#current ? this.#passedLines : 0;
      passed += ran;
      failed += Math.max(1, this.#declared[i] - ran);
    });
    return { passed, failed };
  }

  /**
   * The file running now: its index, name, and when its begin marker came
   * (`performance.now()`); undefined between files.
   */
  get running(): { index: number; file: string; sinceMs: number } | undefined {
    const i = this.#current;
    if (i === undefined) return undefined;
    return { index: i, file: this.#files[i] ?? `#${i}`, sinceMs: this.#currentSince };
  }

  /**
   * Ends the running file as if it had been killed at its bound (its passed
   * tests count, the rest of what it declares fails), for a guest that
   * stopped answering inside it.
   *
   * @param code The exit code to record (137: killed).
   */
  endRunning(code = 137): void {
    if (this.#current !== undefined) this.#end(this.#current, code);
  }

  /**
   * The files that have not begun, by index in job order: what a new boot
   * still has to run.
   *
   * @returns Indices into the job's files.
   */
  notBegun(): number[] {
    const out: number[] = [];
    this.#files.forEach((_, i) => {
      if (!this.#finished.has(i) && i !== this.#current) out.push(i);
    });
    return out;
  }

  /**
   * Takes one output line (colors already stripped).
   *
   * @param line The line.
   */
  line(line: string): void {
    const words = line.trim().split(" ");
    if (words[1] === this.#nonce && words[0] === FILE_MARKERS.begin) {
      this.#current = Number(words[2]);
      this.#currentSince = performance.now();
      this.#passedLines = 0;
      this.#summary = undefined;
      return;
    }
    if (words[1] === this.#nonce && words[0] === FILE_MARKERS.end) {
      this.#end(Number(words[2]), Number(words[3]));
      return;
    }
    if (this.#current === undefined) return;
    const summary = SUMMARY.exec(line);
    if (summary) this.#summary = { passed: Number(summary[1]), failed: Number(summary[2]) };
    else if (PASSED.test(line)) this.#passedLines++;
  }

  #end(index: number, code: number): void {
    if (index !== this.#current || this.#finished.has(index)) return;
    this.#finished.add(index);
    this.#current = undefined;
    const summary = this.#summary;
    if (summary !== undefined) {
      this.totals.passed += summary.passed;
      // A run that failed after its summary (a leak check, a crash on exit)
      // still counts as one failure.
      this.totals.failed += code !== 0 && summary.failed === 0 ? 1 : summary.failed;
      return;
    }
    const passed = this.#passedLines;
    const failed = Math.max(1, (this.#declared[index] ?? 1) - passed);
    this.totals.passed += passed;
    this.totals.failed += failed;
    this.unfinished.push({ file: this.#files[index] ?? `#${index}`, code, passed, failed });
  }
}
