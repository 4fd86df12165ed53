/**
 * `demo`: a live migration between two local processes, a destination
 * (`receive`) and a source (`migrate`) whose RAM a Worker keeps writing (or,
 * with `--guest kvm`, where the test guest runs on KVM and goes on running at
 * the destination, its heartbeat lines interleaved). With
 * a VFIO group (`--group N` or `DENO_VMM_VFIO_GROUP`), the source's RAM is
 * mapped into the real container and its dirty bitmaps join the CPU's.
 *
 * @module
 */

import { parseReport } from "../migration/engine/report.ts";
import { renderReportSvg } from "../migration/engine/report_svg.ts";
import { peerText } from "../migration/stream/peer_text.ts";
import { helpText, parseCommand } from "./flags.ts";
import { parseChoice, parseInteger } from "./parse.ts";
import type { ReceiveReport } from "./receive.ts";
import { ReportFile } from "./report_file.ts";
import { onTerminate } from "./terminate.ts";
import {
  checkKvmFlags,
  type DestinationGuestReport,
  openKvm,
  parseGuest,
  parseKvmDirty,
  type SourceGuestReport,
} from "./_kvm_guest.ts";

/** The flags of `demo`. */
export const DEMO_COMMAND = {
  name: "demo",
  summary:
    "A live migration between two local processes: a destination (`receive`) and a source (`migrate`) whose RAM a Worker keeps writing; prints a summary and writes a chart.",
  flags: {
    ram: { type: "string", value: "SIZE", help: "guest RAM", default: "256M" },
    workload: {
      type: "string",
      value: "random|sequential|hotspot",
      help: "how the Worker writes the RAM",
      default: "random",
    },
    "dirty-rate": {
      type: "string",
      value: "RATE",
      help: "the Worker's write rate",
      default: "32M",
    },
    transport: { type: "string", value: "tcp|unix", help: "the connection", default: "tcp" },
    group: {
      type: "string",
      value: "N",
      help: "map the source's RAM into this VFIO group's container",
      default: "$DENO_VMM_VFIO_GROUP, else none",
    },
    "downtime-ms": { type: "string", value: "N", help: "the downtime limit", default: "300" },
    guest: {
      type: "string",
      value: "worker|kvm",
      help:
        "kvm: migrate the test guest running on KVM (its heartbeat interleaved) instead of a Worker",
      default: "worker",
    },
    "kvm-dirty": {
      type: "string",
      value: "bitmap|ring",
      help: "with --guest kvm: KVM's dirty bitmap or its dirty ring",
      default: "bitmap",
    },
    "run-after-ms": {
      type: "string",
      value: "N",
      help: "with --guest kvm: how long the guest runs on at the destination",
      default: "1000",
    },
    svg: {
      type: "string",
      value: "OUT",
      help: "where to write the chart",
      default: "migration-demo.svg",
    },
  },
} as const;

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
  const parsed = parseCommand(DEMO_COMMAND, args);
  if (parsed === "help") {
    console.log(helpText(DEMO_COMMAND));
    return 0;
  }
  const values = {
    ram: "256M",
    workload: "random",
    "dirty-rate": "32M",
    transport: "tcp",
    svg: "migration-demo.svg",
    ...parsed.values,
  };
  const transport = parseChoice("--transport", values.transport, ["tcp", "unix"] as const);
  const guest = parseGuest(values.guest);
  checkKvmFlags(guest, values, ["kvm-dirty", "run-after-ms"]);
  const kvmDirty = parseKvmDirty(values["kvm-dirty"]);
  const runAfterMs = values["run-after-ms"] === undefined
    ? 1000
    : parseInteger("--run-after-ms", values["run-after-ms"]);
  // Where /dev/kvm is missing or not permitted, one line says so before any child starts.
  if (guest === "kvm") openKvm(undefined).close();
  const permissions = guest === "kvm" ? [...PERMISSIONS, "--allow-run"] : PERMISSIONS;
  const groupText = values.group ?? Deno.env.get("DENO_VMM_VFIO_GROUP");
  const group = groupText === undefined ? undefined : parseInteger("--group", groupText);
  using svgFile = ReportFile.open("--svg", values.svg);
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-demo-" });
  const mod = new URL("../mod.ts", import.meta.url).pathname;
  const deno = Deno.execPath();
  const children: Deno.ChildProcess[] = [];
  // Stopped by a signal: no process and no temp directory outlive the demo.
  using _cleanup = onTerminate(async () => {
    await stopChildren(children);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  });
  try {
    const from = transport === "tcp" ? "tcp:127.0.0.1:0" : `unix:${dir}/migration.sock`;
    console.log(
      `demo: ${values.ram} of guest RAM, ${
        guest === "kvm"
          ? `the KVM test guest writing ${values.workload} pages at ${
            values["dirty-rate"]
          }/s (KVM's dirty ${kvmDirty})`
          : `a ${values.workload} Worker workload at ${values["dirty-rate"]}/s`
      }, over ${transport}, ${
        group === undefined
          ? `${
            guest === "kvm" ? "KVM's dirty tracking and the VMM's writes" : "CPU dirty tracking"
          } only (no VFIO group named)`
          : `VFIO group ${group} (real container)`
      }`,
    );
    // Each child's stdin is a pipe from this process: if the demo dies even
    // by SIGKILL, the pipe closes and the destination stops (--until-stdin-closes).
    const receiver = new Deno.Command(deno, {
      args: [
        "run",
        ...permissions,
        mod,
        "receive",
        "--from",
        from,
        "--ram",
        values.ram,
        "--report",
        `${dir}/dst.json`,
        "--until-stdin-closes",
        ...(guest === "kvm" ? ["--guest", "kvm", "--run-after-ms", String(runAfterMs)] : []),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    children.push(receiver);
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
        throw new TypeError(
          `Cannot run the demo: the destination exited (${s.code}) before listening`,
        );
      }),
    ]);
    const sourceArgs = [
      "run",
      ...permissions,
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
      "--until-stdin-closes",
    ];
    if (values["downtime-ms"] !== undefined) {
      sourceArgs.push(
        "--downtime-ms",
        String(parseInteger("--downtime-ms", values["downtime-ms"], { min: 1 })),
      );
    }
    if (guest === "kvm") {
      // The guest runs (and prints its heartbeat) a while before it migrates.
      sourceArgs.push("--guest", "kvm", "--kvm-dirty", kvmDirty, "--run-before-ms", "1000");
    }
    if (group !== undefined) {
      // vfio-pci groups never pin pages: the container reports every mapped
      // page dirty. The demo takes the explicit choice to resend them in full.
      sourceArgs.push("--group", String(group), "--allow-imprecise-device-dirty");
    }
    const source = new Deno.Command(deno, {
      args: sourceArgs,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    children.push(source);
    await Promise.all([
      forward(source.stdout, "[source]     "),
      forward(source.stderr, "[source]     "),
    ]);
    const srcStatus = await source.status;
    // A source that failed before connecting leaves the destination waiting
    // for one: closing its stdin stops it at once.
    if (!srcStatus.success) await receiver.stdin.close().catch(() => {});
    const dstStatus = await receiver.status;
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
    svgFile.write(renderReportSvg(src));
    const same = src.sourceDigest !== null && src.sourceDigest === dst.digest;
    const guestLines = guest === "kvm"
      ? [demoGuestLine(dst.guest, (src as { guest?: SourceGuestReport }).guest)]
      : [];
    console.log(
      [
        "",
        `demo ${srcStatus.success && dstStatus.success && same ? "succeeded" : "FAILED"}:`,
        `  source:      ${src.result}, ${src.iterations.length} iterations, image at the destination in ${
          src.imageMs?.toFixed(0) ?? "-"
        } ms, verified at ${src.totalMs.toFixed(0)} ms, downtime ${
          src.downtimeMs?.toFixed(0) ?? "-"
        } ms`,
        `  destination: ${dst.result}${dst.error ? ` (${peerText(dst.error)})` : ""}`,
        `  digests:     ${same ? "equal" : "DIFFERENT"} (${
          (src.sourceDigest ?? "-").slice(0, 16)
        }…)`,
        ...guestLines,
        `  chart:       ${values.svg}`,
      ].join("\n"),
    );
    return srcStatus.success && dstStatus.success && same ? 0 : 1;
  } finally {
    await stopChildren(children);
    await Deno.remove(dir, { recursive: true });
  }
}

// Both sides' counters and the destination's verdict on the guest.
function demoGuestLine(
  dst: DestinationGuestReport | undefined,
  src: SourceGuestReport | undefined,
): string {
  if (dst === undefined) return "  guest:       no report from the destination";
  const beats = dst.heartbeats.length;
  return `  guest:       counter ${
    src?.atStop?.counter ?? dst.source?.counter ?? "?"
  } at the source's stop (heartbeat ${src?.atStop?.heartbeats ?? "?"}), ${
    dst.atRestore?.counter ?? "?"
  } restored, ${dst.after?.counter ?? "?"} after ${
    dst.ranMs?.toFixed(0) ?? "-"
  } ms at the destination (${beats} heartbeats there); ${
    dst.verdict === "continued"
      ? "it lived through the migration"
      : `FAILED: ${dst.failures.map((f) => peerText(f)).join("; ")}`
  }`;
}

// Stops children still running: SIGTERM, then SIGKILL if one outlives 5 s.
async function stopChildren(children: Deno.ChildProcess[]): Promise<void> {
  await Promise.all(children.map(async (child) => {
    const done = child.status.then(() => true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = (ms: number) =>
      Promise.race([done, new Promise<false>((r) => timer = setTimeout(() => r(false), ms))]);
    try {
      child.kill("SIGTERM");
    } catch {
      return; // already gone
    }
    if (!(await waited(5000))) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone meanwhile */ }
      await done;
    }
    clearTimeout(timer);
  }));
}
