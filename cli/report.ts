/**
 * `report`: render a migration report as an SVG chart (and a text table).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseReport } from "../migration/report.ts";
import { renderReportSvg } from "../migration/report_svg.ts";
import { UsageError } from "./describe_error.ts";
import { summarize } from "./migrate.ts";

/** The usage text of `report`. */
export const REPORT_USAGE = "usage: mod.ts report FILE [--svg OUT]";

/**
 * Runs `report`.
 *
 * @param args The arguments after `report`.
 * @returns 0.
 * @throws {UsageError} For bad arguments.
 * @throws {TypeError} For a file that is not a migration report.
 *
 * @example
 * ```ts ignore
 * runReport(["report.json", "--svg", "report.svg"]);
 * ```
 */
export function runReport(args: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { svg: { type: "string" } },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (${REPORT_USAGE})`);
  }
  const [file, ...extra] = parsed.positionals;
  if (file === undefined || extra.length > 0) {
    throw new UsageError(`name one report file (${REPORT_USAGE})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(Deno.readTextFileSync(file));
  } catch (e) {
    throw new TypeError(`Cannot read the migration report ${file}: ${(e as Error).message}`);
  }
  const report = parseReport(value, file);
  console.log(summarize(report));
  console.log(
    "\n iter      sent MiB   zero pages   dirty pages    ms     MB/s   expected ms  throttle",
  );
  for (const r of report.iterations) {
    console.log(
      `${String(r.iteration).padStart(5)} ${(r.bytes / 2 ** 20).toFixed(1).padStart(13)} ${
        String(r.zeroPages).padStart(12)
      } ${String(r.dirtyPages).padStart(13)} ${r.durationMs.toFixed(0).padStart(6)} ${
        r.bandwidthMBps.toFixed(0).padStart(8)
      } ${
        (Number.isFinite(r.expectedDowntimeMs) ? r.expectedDowntimeMs.toFixed(0) : "inf").padStart(
          13,
        )
      } ${String(r.throttle).padStart(9)}`,
    );
  }
  if (parsed.values.svg !== undefined) {
    Deno.writeTextFileSync(parsed.values.svg, renderReportSvg(report));
    console.log(`\nchart written to ${parsed.values.svg}`);
  }
  return 0;
}
