/**
 * `report`: render a migration report as an SVG chart (and a text table).
 *
 * @module
 */

import { parseReport } from "../migration/engine/report.ts";
import { renderReportSvg } from "../migration/engine/report_svg.ts";
import { UsageError } from "./describe_error.ts";
import { helpText, parseCommand } from "./flags.ts";
import { summarize } from "./migrate.ts";
import { ReportFile } from "./report_file.ts";

/** The flags of `report`. */
export const REPORT_COMMAND = {
  name: "report",
  summary: "Print a migration report written by `migrate --report`, and chart it as SVG.",
  positionals: "FILE",
  flags: {
    svg: { type: "string", value: "OUT", help: "write the chart to this SVG file" },
  },
} as const;

/**
 * Runs `report`.
 *
 * @param args The arguments after `report`.
 * @returns 0.
 * @throws {UsageError} For bad arguments, or an `--svg` path that cannot be written.
 * @throws {TypeError} For a file that is not a migration report.
 *
 * @example
 * ```ts ignore
 * runReport(["report.json", "--svg", "report.svg"]);
 * ```
 */
export function runReport(args: string[]): number {
  const parsed = parseCommand(REPORT_COMMAND, args);
  if (parsed === "help") {
    console.log(helpText(REPORT_COMMAND));
    return 0;
  }
  const [file, ...extra] = parsed.positionals;
  if (file === undefined || extra.length > 0) {
    throw new UsageError("name one report file (see `mod.ts report --help`)");
  }
  using svg = parsed.values.svg === undefined
    ? undefined
    : ReportFile.open("--svg", parsed.values.svg);
  let value: unknown;
  try {
    value = JSON.parse(Deno.readTextFileSync(file));
  } catch (e) {
    throw new TypeError(`Cannot read the migration report ${file}: ${(e as Error).message}`);
  }
  const report = parseReport(value, file);
  console.log(summarize(report));
  const device = report.iterations.some((r) => r.deviceBytes !== undefined);
  console.log(
    "\n iter      sent MiB   zero pages   dirty pages    ms     MB/s   expected ms  throttle" +
      (device ? "  device MiB" : ""),
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
      } ${String(r.throttle).padStart(9)}${
        device ? ((r.deviceBytes ?? 0) / 2 ** 20).toFixed(1).padStart(12) : ""
      }`,
    );
  }
  if (svg !== undefined) {
    svg.write(renderReportSvg(report));
    console.log(`\nchart written to ${parsed.values.svg}`);
  }
  return 0;
}
