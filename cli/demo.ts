/**
 * `demo`: a live migration between two local processes, a destination
 * (`receive`) and a source (`migrate`) whose RAM a Worker keeps writing. With
 * a VFIO group (`--group N` or `DENO_VMM_VFIO_GROUP`), the source's RAM is
 * mapped into the real container and its dirty bitmaps join the CPU's.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseReport } from "../migration/report.ts";
import { renderReportSvg } from "../migration/report_svg.ts";
import { UsageError } from "./describe_error.ts";
import { parseChoice, parseInteger } from "./parse.ts";
import type { ReceiveReport } from "./receive.ts";

/** The usage text of `demo`. */
export const DEMO_USAGE =
  "usage: mod.ts demo [--ram SIZE] [--workload random|sequential|hotspot] [--dirty-rate RATE] [--transport tcp|unix] [--group N] [--downtime-ms N] [--svg OUT]";

const PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
];

async function forward(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  onLine?: (l: string) => void,
) {
  const decoder = new TextDecoder();
  let tail = "";
  for await (const chunk of stream) {
    tail += decoder.decode(chunk, { stream: true });
    const lines = tail.split(/\r?\n|\r/);
    tail = lines.pop() ?? "";
    for (const line of lines) {
      const clean = line.replaceAll("\x1b[K", "");
      if (clean === "") continue;
      onLine?.(clean);
      console.log(`${prefix} ${clean}`);
    }
  }
  if (tail !== "") console.log(`${prefix} ${tail}`);
}

/**
 * Runs `demo`.
 *
 * @param args The arguments after `demo`.
 * @returns 0 when the destination verified an image equal to the source's.
 * @throws {UsageError} For bad arguments.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runDemo([]));
 * ```
 */
export async function runDemo(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ram: { type: "string", default: "256M" },
        workload: { type: "string", default: "random" },
        "dirty-rate": { type: "string", default: "32M" },
        transport: { type: "string", default: "tcp" },
        group: { type: "string" },
        "downtime-ms": { type: "string" },
        svg: { type: "string", default: "migration-demo.svg" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (${DEMO_USAGE})`);
  }
  const transport = parseChoice("--transport", values.transport, ["tcp", "unix"] as const);
  const groupText = values.group ?? Deno.env.get("DENO_VMM_VFIO_GROUP");
  const group = groupText === undefined ? undefined : parseInteger("--group", groupText);
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-demo-" });
  const mod = new URL("../mod.ts", import.meta.url).pathname;
  const deno = Deno.execPath();
  try {
    const from = transport === "tcp" ? "tcp:127.0.0.1:0" : `unix:${dir}/migration.sock`;
    console.log(
      `demo: ${values.ram} of guest RAM, a ${values.workload} Worker workload at ${
        values["dirty-rate"]
      }/s, over ${transport}, ${
        group === undefined
          ? "CPU dirty tracking only (no VFIO group named)"
          : `VFIO group ${group} (real container)`
      }`,
    );
    const receiver = new Deno.Command(deno, {
      args: [
        "run",
        ...PERMISSIONS,
        mod,
        "receive",
        "--from",
        from,
        "--ram",
        values.ram,
        "--report",
        `${dir}/dst.json`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let listening!: (endpoint: string) => void;
    const endpoint = new Promise<string>((resolve) => listening = resolve);
    const receiverOut = Promise.all([
      forward(receiver.stdout, "[destination]"),
      forward(receiver.stderr, "[destination]", (l) => {
        const m = /^listening on (\S+)/.exec(l);
        if (m) listening(m[1]);
      }),
    ]);
    const to = await Promise.race([
      endpoint,
      receiver.status.then((s) => {
        throw new Error(`The destination exited (${s.code}) before listening`);
      }),
    ]);
    const sourceArgs = [
      "run",
      ...PERMISSIONS,
      mod,
      "migrate",
      "--to",
      to,
      "--ram",
      values.ram,
      "--workload",
      values.workload,
      "--dirty-rate",
      values["dirty-rate"],
      "--report",
      `${dir}/src.json`,
    ];
    if (values["downtime-ms"] !== undefined) {
      sourceArgs.push(
        "--downtime-ms",
        String(parseInteger("--downtime-ms", values["downtime-ms"], { min: 1 })),
      );
    }
    if (group !== undefined) {
      // vfio-pci groups never pin pages: the container reports every mapped
      // page dirty. The demo takes the explicit choice to resend them in full.
      sourceArgs.push("--group", String(group), "--allow-imprecise-device-dirty");
    }
    const source = new Deno.Command(deno, { args: sourceArgs, stdout: "piped", stderr: "piped" })
      .spawn();
    await Promise.all([
      forward(source.stdout, "[source]     "),
      forward(source.stderr, "[source]     "),
    ]);
    const srcStatus = await source.status;
    // A source that failed before connecting leaves the destination waiting:
    // give it a moment to notice a broken stream, then stop it.
    const stop = setTimeout(() => {
      try {
        receiver.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }, srcStatus.success ? 60_000 : 2_000);
    const dstStatus = await receiver.status;
    clearTimeout(stop);
    await receiverOut;
    let srcText: string;
    try {
      srcText = Deno.readTextFileSync(`${dir}/src.json`);
    } catch {
      console.log(`\ndemo FAILED: the source exited (${srcStatus.code}) before writing its report`);
      return 1;
    }
    const src = parseReport(JSON.parse(srcText), "the source report");
    let dst: ReceiveReport = { result: "failed", error: "no report" };
    try {
      dst = JSON.parse(Deno.readTextFileSync(`${dir}/dst.json`));
    } catch {
      // The destination died before writing its report.
    }
    Deno.writeTextFileSync(values.svg, renderReportSvg(src));
    const same = src.sourceDigest !== null && src.sourceDigest === dst.digest;
    console.log(
      [
        "",
        `demo ${srcStatus.success && dstStatus.success && same ? "succeeded" : "FAILED"}:`,
        `  source:      ${src.result}, ${src.iterations.length} iterations, image at the destination in ${
          src.imageMs?.toFixed(0) ?? "-"
        } ms, verified at ${src.totalMs.toFixed(0)} ms, downtime ${
          src.downtimeMs?.toFixed(0) ?? "-"
        } ms`,
        `  destination: ${dst.result}${dst.error ? ` (${dst.error})` : ""}`,
        `  digests:     ${same ? "equal" : "DIFFERENT"} (${
          (src.sourceDigest ?? "-").slice(0, 16)
        }…)`,
        `  chart:       ${values.svg}`,
      ].join("\n"),
    );
    return srcStatus.success && dstStatus.success && same ? 0 : 1;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
