// deno-vmm's migration (mod.ts migrate -> receive) against QEMU's own (a
// paused q35 TCG source over a prefilled tmpfs image): the system's QEMU 7.2,
// plain and in its best configuration, and QEMU 10 from bookworm-backports in
// its best ones (multifd 2 and 4 channels, zero pages detected on the multifd
// threads, a preallocated destination), and a C loopback-TCP pump, all moving
// the same RAM over loopback TCP, alternating A B A B. Every QEMU run sets
// max-bandwidth and downtime-limit. Prints a table per case, writes
// bench/out/migrate_vs_qemu.json and .svg.
// Run: deno task bench:qemu [--ram 1G] [--pairs 5] [--dirty-rate 64M]
import { buildC } from "./_limits_common.ts";
import { parseArgs } from "node:util";
import {
  collectStderr,
  ensureQemu,
  killAllChildren,
  type QemuConfig,
  qemuMigrate,
  type QemuResult,
  spawnTracked,
  stopChild,
  writeImage,
} from "./_qemu.ts";
import { ensureBackportsQemu, type QemuBinary } from "./_qemu10.ts";
import { withTimeout } from "./_qmp.ts";
import { Progress } from "../tests/kernel/harness/exec.ts";
import { renderBarChart } from "./_bar_chart.ts";

const root = new URL("..", import.meta.url).pathname;
const out = `${root}bench/out`;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    ram: { type: "string", default: "1G" },
    pairs: { type: "string", default: "5" },
    "dirty-rate": { type: "string", default: "64M" },
  },
});
const gib = /^(\d+)G$/i.exec(values.ram)?.[1];
const pairs = Number(values.pairs);
if (!gib || Number(gib) < 1 || !(pairs >= 1)) {
  console.error("bench:qemu: usage: --ram NG (N >= 1) --pairs N (N >= 1) --dirty-rate RATE");
  Deno.exit(2);
}
const ramBytes = Number(gib) * 2 ** 30;
const ramLabel = `${gib} GiB`;
const RUN_TIMEOUT = 180_000 * Number(gib);
const MiB = 2 ** 20;
const SEED = 1;
const ATTEMPTS = 3;
// Every QEMU run sets both: loopback is the only cap, and the engine's own
// downtime default.
const MAX_BANDWIDTH = 100e9;
const DOWNTIME_LIMIT_MS = 300;
// Temp dirs: RAM images and QMP sockets in /dev/shm (tmpfs), our reports in
// the ordinary temp dir (Deno wants --allow-all to write under /dev).
const scratch: string[] = [];

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench:qemu] ${text}\n`));
}

function cleanup(): void {
  killAllChildren();
  for (const dir of scratch.splice(0)) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  }
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  Deno.addSignalListener(sig, () => {
    progress(`${sig}: killing children, removing temp files`);
    cleanup();
    Deno.exit(130);
  });
}
globalThis.addEventListener("unload", cleanup);

/** One measured run, in the units of the table. */
interface Run {
  /** To the destination holding the whole image. */
  wallMs: number;
  downtimeMs: number;
  wireBytes: number;
  /** Ours: from the image to both digests compared (QEMU does not verify). */
  verifyMs?: number;
  detail?: unknown;
}

async function cPump(bin: string): Promise<Run> {
  const t = performance.now();
  const child = spawnTracked(bin, [String(ramBytes)], false);
  try {
    const s = await withTimeout(child.status, RUN_TIMEOUT, "the C pump");
    if (!s.success) throw new Error("the C pump failed");
  } finally {
    await stopChild(child);
  }
  return { wallMs: performance.now() - t, downtimeMs: NaN, wireBytes: ramBytes };
}

const PERMS = ["--allow-ffi", "--allow-read", "--allow-write", "--allow-net", "--allow-env"];

type Fill = "random" | "half" | "zero" | "untouched";

async function ours(fill: Fill, workload: boolean, dir: string): Promise<Run> {
  const cli = (args: string[]) =>
    spawnTracked(Deno.execPath(), ["run", ...PERMS, `${root}mod.ts`, ...args], true);
  const recv = cli([
    ...["receive", "--from", "tcp:127.0.0.1:0", "--ram", values.ram, "--report", `${dir}/dst.json`],
  ]);
  const recvErr = collectStderr(recv);
  let src: Deno.ChildProcess | undefined;
  try {
    let endpoint: string | undefined;
    const deadline = performance.now() + RUN_TIMEOUT;
    let exited = false;
    recv.status.then(() => exited = true);
    while (!(endpoint = /listening on (\S+)/.exec(recvErr())?.[1])) {
      if (exited) throw new Error(`receive exited early: ${recvErr().trim()}`);
      if (performance.now() > deadline) throw new Error("timed out waiting for receive to listen");
      await new Promise((r) => setTimeout(r, 10));
    }
    src = cli([
      ...["migrate", "--to", endpoint, "--ram", values.ram, "--fill", fill, "--seed", `${SEED}`],
      ...(workload ? ["--workload", "random", "--dirty-rate", values["dirty-rate"]] : []),
      ...["--report", `${dir}/src.json`],
    ]);
    const srcErr = collectStderr(src);
    const [s, r] = await withTimeout(
      Promise.all([src.status, recv.status]),
      RUN_TIMEOUT,
      "migrate and receive to exit",
    );
    if (!s.success) throw new Error(`migrate failed: ${srcErr().trim().split("\n").pop()}`);
    if (!r.success) throw new Error(`receive failed: ${recvErr().trim().split("\n").pop()}`);
    const rep = JSON.parse(await Deno.readTextFile(`${dir}/src.json`));
    const dst = JSON.parse(await Deno.readTextFile(`${dir}/dst.json`));
    if (rep.result !== "completed" || rep.sourceDigest !== dst.digest) {
      throw new Error(`our migration did not verify (${rep.result})`);
    }
    return {
      wallMs: rep.imageMs,
      downtimeMs: rep.downtimeMs,
      wireBytes: rep.totalBytes,
      verifyMs: rep.totalMs - rep.imageMs,
      detail: { iterations: rep.iterations.length, zeroPages: dst.zeroPages },
    };
  } finally {
    await Promise.all([recv, src].map((c) => c && stopChild(c)));
    for (const f of ["src.json", "dst.json"]) await Deno.remove(`${dir}/${f}`).catch(() => {});
  }
}

function qemuRun(r: QemuResult): Run {
  return { wallMs: r.wallMs, downtimeMs: r.downtimeMs, wireBytes: r.transferredBytes, detail: r };
}

const ENGINES = ["ours", "qemuPlain", "qemuBest", "qemu10m2", "qemu10m4", "cPump"] as const;
type Engine = typeof ENGINES[number];
const LABEL: Record<Engine, string> = {
  ours: "ours (migrate -> receive)",
  qemuPlain: "QEMU 7.2 plain (1 channel, fresh RAM)",
  qemuBest: "QEMU 7.2 best (multifd 2, prealloc)",
  qemu10m2: "QEMU 10 multifd 2, zero-pg multifd",
  qemu10m4: "QEMU 10 multifd 4, zero-pg multifd",
  cPump: "C loopback TCP pump (same bytes)",
};
/** The QEMU configurations, by engine. */
const QEMU_CONFIG: Partial<Record<Engine, QemuConfig>> = {
  qemuPlain: { multifd: false, prealloc: false },
  qemuBest: { multifd: true, prealloc: true },
  qemu10m2: { multifd: true, channels: 2, zeroPageDetection: "multifd", prealloc: true },
  qemu10m4: { multifd: true, channels: 4, zeroPageDetection: "multifd", prealloc: true },
};
const QEMU10_ENGINES = ["qemu10m2", "qemu10m4"] as const;
interface Case {
  id: string;
  fill: Fill;
  workload: boolean;
  title: string;
  runs: Partial<Record<Engine, Run[]>>;
  /** Attempts that failed (and were retried), with their messages. */
  failures: { engine: Engine; pair: number; message: string }[];
}
const rate = values["dirty-rate"];
const cases: Case[] = [];
const FILL_TITLE: Record<Fill, string> = {
  random: "random (incompressible)",
  half: "half-zero pages",
  zero: "all-zero pages",
  untouched: "never-written pages",
};
for (const workload of [false, true]) {
  const fills = workload
    ? ["random", "half"] as const
    : ["random", "half", "zero", "untouched"] as const;
  for (const fill of fills) {
    cases.push({
      id: `${fill}-${workload ? "workload" : "idle"}`,
      fill,
      workload,
      title: `${FILL_TITLE[fill]}, ${
        workload ? `workload ${rate}/s random writes` : "no workload"
      }`,
      runs: {},
      failures: [],
    });
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const GBps = (ms: number) => ramBytes / 1e9 / (ms / 1000);

async function main(): Promise<void> {
  Deno.mkdirSync(out, { recursive: true });
  progress("checking qemu-system-x86_64 (apt-get install qemu-system-x86 if missing)");
  await ensureQemu();
  const version = new TextDecoder().decode(
    (await new Deno.Command("qemu-system-x86_64", { args: ["--version"] }).output()).stdout,
  ).split("\n")[0];
  progress("fetching QEMU 10 from bookworm-backports (unpacked into the cache, once)");
  const qemu10 = await ensureBackportsQemu(new Progress("bench:qemu"));
  progress(`QEMU 10: ${qemu10.version}`);
  progress("building the C pump");
  const pump = buildC("tcp_pump.c", "tcp_pump");
  const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "deno-vmm-vs-qemu-" });
  scratch.push(shm);
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-vs-qemu-" });
  scratch.push(tmp);
  const images: Record<string, string> = {};
  for (const fill of ["random", "half", "zero", "untouched"] as const) {
    progress(`writing the ${values.ram} ${fill} RAM image in /dev/shm (tmpfs)`);
    images[fill] = `${shm}/${fill}.img`;
    await writeImage(images[fill], ramBytes, fill, SEED);
  }
  const push = (c: Case, e: Engine, r: Run) => (c.runs[e] ??= []).push(r);
  for (let p = 0; p < pairs; p++) {
    for (const c of cases) {
      const order: Engine[] = c.workload
        ? ["cPump", "ours"]
        : ["ours", "qemuPlain", "qemu10m2", "qemuBest", "qemu10m4", "cPump"];
      if (p % 2 === 1) order.reverse();
      for (const e of order) {
        progress(`pair ${p + 1}/${pairs}, ${c.id}: ${LABEL[e]}`);
        const once = async () =>
          e === "ours"
            ? await ours(c.fill, c.workload, tmp)
            : e === "cPump"
            ? await cPump(pump)
            : qemuRun(
              await qemuMigrate({
                qemu: (QEMU10_ENGINES as readonly Engine[]).includes(e) ? qemu10 : undefined,
                maxBandwidth: MAX_BANDWIDTH,
                downtimeLimitMs: DOWNTIME_LIMIT_MS,
                image: images[c.fill],
                ramBytes,
                config: QEMU_CONFIG[e]!,
                dir: shm,
                timeoutMs: RUN_TIMEOUT,
              }),
            );
        let r: Run | undefined;
        // A failed run is recorded and retried, up to ATTEMPTS in all.
        for (let attempt = 1; r === undefined; attempt++) {
          try {
            r = await once();
          } catch (err) {
            const message = (err as Error).message.trim().replace(/\s+/g, " ");
            c.failures.push({ engine: e, pair: p + 1, message });
            if (attempt >= ATTEMPTS) throw err;
            progress(`  attempt ${attempt} failed (${message}); retrying`);
          }
        }
        push(c, e, r);
        progress(`  ${r.wallMs.toFixed(0)} ms, ${GBps(r.wallMs).toFixed(2)} GB/s`);
      }
    }
  }
  report(version, qemu10);
}

function report(version: string, qemu10: QemuBinary): void {
  const summary = cases.map((c) => {
    const med: Partial<Record<Engine, Record<string, number>>> = {};
    for (const e of ENGINES) {
      const rs = c.runs[e];
      if (!rs) continue;
      const wallMs = median(rs.map((r) => r.wallMs));
      med[e] = {
        wallMs,
        GBps: GBps(wallMs),
        downtimeMs: median(rs.map((r) => r.downtimeMs)),
        wireBytes: median(rs.map((r) => r.wireBytes)),
        verifyMs: median(rs.map((r) => r.verifyMs ?? NaN)),
      };
    }
    const ratio = (e: Engine) => med[e] ? med[e]!.wallMs / med.ours!.wallMs : null;
    const best10 = QEMU10_ENGINES.filter((e) => med[e])
      .sort((a, b) => med[a]!.wallMs - med[b]!.wallMs)[0];
    return {
      ...c,
      median: med,
      ratios: Object.fromEntries(ENGINES.map((e) => [e, ratio(e)])) as Record<Engine, number>,
      qemu10Best: best10 === undefined
        ? undefined
        : { engine: best10, ratio: med[best10]!.wallMs / med.ours!.wallMs },
    };
  });
  console.log(
    `${version} and ${qemu10.version}; ${ramLabel} of RAM over loopback TCP; median of ${pairs} ` +
      `alternating pairs; every QEMU run: max-bandwidth ${MAX_BANDWIDTH / 1e9} GB/s, ` +
      `downtime-limit ${DOWNTIME_LIMIT_MS} ms`,
  );
  console.log(
    "GB/s = RAM bytes / time until the destination has all of it (ours: its answer to COMPLETE; " +
      "QEMU: its `completed`). Ours then verifies a digest of all RAM on both sides (verify ms); " +
      "QEMU does not verify",
  );
  for (const s of summary) {
    console.log(`\n${ramLabel}, ${s.title}`);
    console.log(
      `  ${"engine".padEnd(36)}${"wall ms".padStart(9)}${"GB/s".padStart(7)}${
        "downtime ms".padStart(13)
      }${"wire MiB".padStart(10)}${"verify ms".padStart(11)}${"ours/this".padStart(11)}`,
    );
    for (const e of ENGINES) {
      const m = s.median[e];
      if (!m) {
        console.log(
          `  ${LABEL[e].padEnd(36)}  n/a: QEMU's source is paused (-S), no workload runs`,
        );
        continue;
      }
      console.log(
        `  ${LABEL[e].padEnd(36)}${m.wallMs.toFixed(0).padStart(9)}${
          m.GBps.toFixed(2).padStart(7)
        }${(Number.isNaN(m.downtimeMs) ? "-" : m.downtimeMs.toFixed(0)).padStart(13)}${
          (m.wireBytes / MiB).toFixed(1).padStart(10)
        }${(Number.isNaN(m.verifyMs) ? "-" : m.verifyMs.toFixed(0)).padStart(11)}${
          `${s.ratios[e]!.toFixed(2)}x`.padStart(11)
        }`,
      );
    }
  }
  for (const s of summary) {
    for (const f of s.failures) {
      console.log(
        `note: ${s.id}, pair ${f.pair}, ${f.engine} attempt failed and was rerun: ${f.message}`,
      );
    }
  }
  // Multifd bytes are not split into precopy/downtime bytes in 7.2: use the plain runs.
  const plain = cases.flatMap((c) => c.runs.qemuPlain ?? []).map((r) => r.detail as QemuResult);
  const stopCopyShare = median(plain.map((q) => q.downtimeBytes / q.transferredBytes));
  console.log(
    `\nQEMU plain sent ${(stopCopyShare * 100).toFixed(0)} % of its bytes in stop-and-copy ` +
      "(median): its source is paused and max-bandwidth x downtime-limit exceeds the RAM, " +
      "so it skips pre-copy",
  );
  const get = (id: string) => summary.find((s) => s.id === id)!.ratios;
  const best10 = (id: string) => summary.find((s) => s.id === id)!.qemu10Best?.ratio ?? NaN;
  const aims = [
    ["random: ours/QEMU plain >= 2", get("random-idle").qemuPlain!, 2],
    ["random: ours/QEMU 7.2 best >= 1", get("random-idle").qemuBest!, 1],
    ["random: ours/QEMU 10 best >= 1", best10("random-idle"), 1],
    ["half-zero: ours/QEMU 10 best >= 1", best10("half-idle"), 1],
    ["random: ours/C pump >= 0.8", get("random-idle").cPump!, 0.8],
    ["half-zero: ours/QEMU plain >= 1.5", get("half-idle").qemuPlain!, 1.5],
    ["half-zero: ours/QEMU 7.2 best >= 1.5", get("half-idle").qemuBest!, 1.5],
    ["all-zero: ours/QEMU plain >= 1.5", get("zero-idle").qemuPlain!, 1.5],
    ["all-zero: ours/QEMU 7.2 best >= 1.5", get("zero-idle").qemuBest!, 1.5],
    ["all-zero: ours/QEMU 10 best >= 1.5", best10("zero-idle"), 1.5],
    ["never-written: ours/QEMU plain >= 1.5", get("untouched-idle").qemuPlain!, 1.5],
    ["never-written: ours/QEMU 7.2 best >= 1.5", get("untouched-idle").qemuBest!, 1.5],
    ["never-written: ours/QEMU 10 best >= 1.5", best10("untouched-idle"), 1.5],
    ...summary.map((s) => [`${s.id}: ours/C >= 0.6`, s.ratios.cPump!, 0.6] as const),
  ] as const;
  console.log("\naims");
  for (const [what, got, want] of aims) {
    console.log(`  ${what.padEnd(40)} ${got.toFixed(2)}x  ${got >= want ? "met" : "SHORT"}`);
  }
  const json = {
    qemu: version,
    qemu10: qemu10.version,
    maxBandwidth: MAX_BANDWIDTH,
    downtimeLimitMs: DOWNTIME_LIMIT_MS,
    ramBytes,
    pairs,
    dirtyRate: rate,
    cases: summary,
    aims: aims.map(([what, got, want]) => ({ what, got, want, met: got >= want })),
  };
  Deno.writeTextFileSync(`${out}/migrate_vs_qemu.json`, JSON.stringify(json, null, 2) + "\n");
  Deno.writeTextFileSync(
    `${out}/migrate_vs_qemu.svg`,
    renderBarChart({
      title: `Migrating ${ramLabel} over loopback TCP: deno-vmm vs QEMU 7.2 and 10`,
      subtitle:
        `GB/s to destination complete, median of ${pairs} alternating pairs; dashed: C TCP pump`,
      groups: summary.map((s) => ({
        label: s.title.replace("workload ", ""),
        values: [
          s.median.ours?.GBps,
          s.median.qemuPlain?.GBps,
          s.median.qemuBest?.GBps,
          s.median.qemu10m2?.GBps,
          s.median.qemu10m4?.GBps,
        ],
      })),
      series: ["ours", "QEMU 7.2 plain", "QEMU 7.2 best", "QEMU 10 multifd 2", "QEMU 10 multifd 4"],
      reference: median(cases.flatMap((c) => c.runs.cPump ?? []).map((r) => GBps(r.wallMs))),
      footnote: "QEMU's source is paused (-S), so the workload cases are ours only",
    }),
  );
  console.log("\nJSON: bench/out/migrate_vs_qemu.json  SVG: bench/out/migrate_vs_qemu.svg");
}

let code = 0;
try {
  await main();
} catch (e) {
  console.error(`bench:qemu: ${(e as Error).message.split("\n")[0]}`);
  code = 1;
} finally {
  cleanup();
}
Deno.exit(code);
