// How tests/all.ts reads the suites' output and writes its last lines: the
// counts from deno test's closing line and the kernel harness's total, the
// host-conformance skips with their reasons, and a check that no test was
// ignored without one.

import { SKIP_LINE } from "./_host_conformance.ts";

/** What one suite reported. */
export interface Tally {
  passed: number;
  failed: number;
  ignored: number;
}

// deno test's closing line: "ok | 12 passed (3 steps) | 0 failed | 2 ignored (1s)".
const DENO_SUMMARY =
  /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed(?: \(\d+ steps?\))?(?: \| (\d+) ignored)?/;
// The kernel harness's total over every guest it booted: "kernel: 30 passed, 0 failed".
const KERNEL_TOTAL = /^kernel: (\d+) passed, (\d+) failed$/;

/**
 * Reads deno test's closing line.
 *
 * @param line A line of output.
 * @returns The counts, or undefined for another line.
 */
export function denoSummary(line: string): Tally | undefined {
  const m = DENO_SUMMARY.exec(line);
  return m ? { passed: Number(m[1]), failed: Number(m[2]), ignored: Number(m[3] ?? 0) } : undefined;
}

/**
 * Reads the kernel harness's total line.
 *
 * @param line A line of output.
 * @returns The counts, or undefined for another line.
 */
export function kernelTotal(line: string): Tally | undefined {
  const m = KERNEL_TOTAL.exec(line);
  return m ? { passed: Number(m[1]), failed: Number(m[2]), ignored: 0 } : undefined;
}

// tests/check.ts's closing line: "check: 11 clean, 0 failed".
const CHECK_TOTAL = /^check: (\d+) clean, (\d+) failed$/;

/**
 * Reads the static checks' closing line (each check counts as one test).
 *
 * @param line A line of output.
 * @returns The counts, or undefined for another line.
 */
export function checkTotal(line: string): Tally | undefined {
  const m = CHECK_TOTAL.exec(line);
  return m ? { passed: Number(m[1]), failed: Number(m[2]), ignored: 0 } : undefined;
}

/**
 * Reads a host-conformance skip line.
 *
 * @param line A line of output.
 * @returns What was skipped and why, or undefined for another line.
 */
export function skipReason(line: string): string | undefined {
  return line.startsWith(SKIP_LINE) ? line.slice(SKIP_LINE.length) : undefined;
}

/**
 * The last lines: each skip's reason, then `N passed, N failed` (and
 * `, N skipped` when any were). A test ignored without a printed reason
 * counts as a failure, with a line that says so.
 *
 * @param tallies Every suite's counts.
 * @param reasons Every skip reason printed.
 * @returns The lines, the last one the summary; and the failures counted.
 */
export function closingLines(
  tallies: readonly Tally[],
  reasons: readonly string[],
): { lines: string[]; failed: number } {
  const passed = tallies.reduce((n, t) => n + t.passed, 0);
  const ignored = tallies.reduce((n, t) => n + t.ignored, 0);
  let failed = tallies.reduce((n, t) => n + t.failed, 0);
  const lines = reasons.map((r) => `skipped: ${r}`);
  const unexplained = ignored - reasons.length;
  if (unexplained > 0) {
    lines.push(`${unexplained} tests were ignored without a printed reason: counted as failed`);
    failed += unexplained;
  }
  const skipped = Math.min(ignored, reasons.length);
  lines.push(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
  return { lines, failed };
}
