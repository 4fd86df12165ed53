// deno-vmm's migration (mod.ts migrate -> receive) against QEMU's own (a
// paused q35 TCG source over a prefilled tmpfs image): the system's QEMU 7.2,
// plain and in its best configuration, and QEMU 10 from bookworm-backports in
// its best ones (multifd 2 and 4 channels, zero pages detected on the multifd
// threads, a preallocated destination), and a C loopback-TCP pump, all moving
// the same RAM over loopback TCP, alternating A B A B. Every QEMU run sets
// max-bandwidth and downtime-limit. Then a capped link that looks like
// production: source and destination in two network namespaces joined by a
// veth pair shaped with tc (1 and 10 Gbit/s), RAM that looks like a guest's
// (zero pages, text and binaries from this machine's files, random pages),
// ours with --compress zstd and none against QEMU 10's best for a link
// (multifd 2 and 4 channels with multifd-compression zstd, multifd 4 without),
// sources in one namespace, destinations in the other. Prints a table per case, writes
// bench/out/migrate_vs_qemu.json and .svg. Run with --help for the flags.
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
import { renderBarChart, stackSvgs } from "./_bar_chart.ts";
import {
  formatLinkRate,
  inNamespace,
  type LinkPlan,
  linkUnavailable,
  parseLinkRate,
  planLink,
  setUpLink,
  tearDownAllLinks,
  tearDownLink,
} from "./_capped_link.ts";
import { type ImageSummary, writeRealisticImage } from "./_realistic_image.ts";
import { median } from "./_stats.ts";

const root = new URL("..", import.meta.url).pathname;
const out = `${root}bench/out`;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    ram: { type: "string", default: "1G" },
    pairs: { type: "string", default: "5" },
    "dirty-rate": { type: "string", default: "64M" },
    only: { type: "string" },
    "link-ram": { type: "string", default: "1G" },
    links: { type: "string", default: "1gbit,10gbit" },
    "link-pairs": { type: "string", default: "3" },
    "link-dirty-rate": { type: "string", default: "32M" },
    "image-seed": { type: "string", default: "1" },
    help: { type: "boolean", short: "h" },
  },
});
const HELP = `deno task bench:qemu [flags]

Our migrate -> receive against QEMU 7.2 and 10's own migration over loopback
TCP, then over capped links between two network namespaces.

  --ram NG               loopback cases: guest RAM (default 1G)
  --pairs N              loopback cases: alternating pairs (default 5)
  --dirty-rate RATE      loopback cases: the workload's writes/s (default 64M)
  --only loopback|link   run one part only (default both)
  --link-ram SIZE        capped links: guest RAM, such as 512M or 1G (default 1G)
  --links RATES          capped links: tc rates, comma-separated (default 1gbit,10gbit)
  --link-pairs N         capped links: alternating pairs (default 3)
  --link-dirty-rate RATE capped links: the workload's writes/s (default 32M)
  --image-seed N         capped links: the realistic image's seed (default 1)
  -h, --help             show this help

The capped links need root, ip and tc (iproute2); without them that part is
skipped with a message. Writes bench/out/migrate_vs_qemu.json and .svg.`;
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const only = values.only;
if (only !== undefined && only !== "loopback" && only !== "link") {
  console.error(`bench:qemu: --only takes loopback or link, not "${only}"`);
  Deno.exit(2);
}
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
  tearDownAllLinks();
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
  return await oursRun({
    ram: values.ram,
    srcArgs: ["--fill", fill, "--seed", `${SEED}`].concat(
      workload ? ["--workload", "random", "--dirty-rate", values["dirty-rate"]] : [],
    ),
    dir,
    timeoutMs: RUN_TIMEOUT,
  });
}

/** One migrate -> receive, over loopback or across a capped link. */
async function oursRun(o: {
  ram: string;
  srcArgs: string[];
  /** Further `receive` flags (`--channels N`). */
  dstArgs?: string[];
  dir: string;
  timeoutMs: number;
  link?: LinkPlan;
}): Promise<Run> {
  const cli = (ns: string | undefined, args: string[]) => {
    const argv = [Deno.execPath(), "run", ...PERMS, `${root}mod.ts`, ...args];
    const [cmd, ...rest] = ns === undefined ? argv : inNamespace(ns, argv);
    return spawnTracked(cmd, rest, true);
  };
  // Plain TCP beyond loopback: the destination needs --insecure-plaintext.
  const plain = o.link === undefined ? [] : ["--insecure-plaintext"];
  const listen = o.link === undefined ? "tcp:127.0.0.1:0" : `tcp:${o.link.dstAddr}:0`;
  const recv = cli(o.link?.dstNs, [
    ...["receive", "--from", listen, "--ram", o.ram, "--report", `${o.dir}/dst.json`],
    ...plain,
    ...(o.dstArgs ?? []),
  ]);
  const recvErr = collectStderr(recv);
  let src: Deno.ChildProcess | undefined;
  try {
    let endpoint: string | undefined;
    const deadline = performance.now() + o.timeoutMs;
    let exited = false;
    recv.status.then(() => exited = true);
    while (!(endpoint = /^listening on (\S+)/m.exec(recvErr())?.[1])) {
      if (exited) throw new Error(`receive exited early: ${recvErr().trim()}`);
      if (performance.now() > deadline) throw new Error("timed out waiting for receive to listen");
      await new Promise((r) => setTimeout(r, 10));
    }
    src = cli(o.link?.srcNs, [
      ...["migrate", "--to", endpoint, "--ram", o.ram, ...o.srcArgs],
      ...["--report", `${o.dir}/src.json`],
    ]);
    const srcErr = collectStderr(src);
    // A source that fails ends the run at once (its destination would wait for a peer).
    const s = await withTimeout(src.status, o.timeoutMs, "migrate to exit");
    if (!s.success) throw new Error(`migrate failed: ${srcErr().trim().split("\n").pop()}`);
    const r = await withTimeout(recv.status, o.timeoutMs, "receive to exit");
    if (!r.success) throw new Error(`receive failed: ${recvErr().trim().split("\n").pop()}`);
    const rep = JSON.parse(await Deno.readTextFile(`${o.dir}/src.json`));
    const dst = JSON.parse(await Deno.readTextFile(`${o.dir}/dst.json`));
    if (rep.result !== "completed" || rep.sourceDigest !== dst.digest) {
      throw new Error(`our migration did not verify (${rep.result})`);
    }
    return {
      wallMs: rep.imageMs,
      downtimeMs: rep.downtimeMs,
      wireBytes: rep.totalBytes,
      verifyMs: rep.totalMs - rep.imageMs,
      detail: {
        iterations: rep.iterations.length,
        zeroPages: dst.zeroPages,
        compression: rep.compression,
      },
    };
  } finally {
    await Promise.all([recv, src].map((c) => c && stopChild(c)));
    for (const f of ["src.json", "dst.json"]) await Deno.remove(`${o.dir}/${f}`).catch(() => {});
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
  const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "deno-vmm-vs-qemu-" });
  scratch.push(shm);
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-vs-qemu-" });
  scratch.push(tmp);
  let json: Record<string, unknown> = { qemu: version, qemu10: qemu10.version };
  const svgs: string[] = [];
  if (only !== "link") {
    await loopback(qemu10, shm, tmp);
    const r = report(version, qemu10);
    json = { ...json, ...r.json };
    svgs.push(r.svg);
  }
  if (only !== "loopback") {
    const l = await cappedLinks(qemu10, shm, tmp);
    json.link = l.json;
    if (l.svg !== undefined) svgs.push(l.svg);
  }
  Deno.writeTextFileSync(`${out}/migrate_vs_qemu.json`, JSON.stringify(json, null, 2) + "\n");
  if (svgs.length > 0) {
    Deno.writeTextFileSync(
      `${out}/migrate_vs_qemu.svg`,
      svgs.length === 1 ? svgs[0] : stackSvgs(svgs),
    );
  }
  console.log("\nJSON: bench/out/migrate_vs_qemu.json  SVG: bench/out/migrate_vs_qemu.svg");
}

async function loopback(qemu10: QemuBinary, shm: string, tmp: string): Promise<void> {
  progress("building the C pump");
  const pump = buildC("tcp_pump.c", "tcp_pump");
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
}

// The medians of one engine's runs: time, the rate it gives, downtime, bytes on the wire.
function medianRun(rs: readonly Run[], gbps: (ms: number) => number): Record<string, number> {
  const wallMs = median(rs.map((r) => r.wallMs));
  return {
    wallMs,
    GBps: gbps(wallMs),
    downtimeMs: median(rs.map((r) => r.downtimeMs)),
    wireBytes: median(rs.map((r) => r.wireBytes)),
  };
}

function report(version: string, qemu10: QemuBinary): { json: object; svg: string } {
  const summary = cases.map((c) => {
    const med: Partial<Record<Engine, Record<string, number>>> = {};
    for (const e of ENGINES) {
      const rs = c.runs[e];
      if (!rs) continue;
      med[e] = { ...medianRun(rs, GBps), verifyMs: median(rs.map((r) => r.verifyMs ?? NaN)) };
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
    maxBandwidth: MAX_BANDWIDTH,
    downtimeLimitMs: DOWNTIME_LIMIT_MS,
    ramBytes,
    pairs,
    dirtyRate: rate,
    cases: summary,
    aims: aims.map(([what, got, want]) => ({ what, got, want, met: got >= want })),
  };
  return {
    json,
    svg: renderBarChart({
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
  };
}

// ---- The capped links: two namespaces, tc-shaped veth, realistic RAM ----

const LINK_ENGINES = [
  "oursZstd",
  "oursZstd2",
  "oursRaw",
  "oursAuto",
  "qemu10m2z",
  "qemu10m4z",
  "qemu10m4",
] as const;
type LinkEngine = typeof LINK_ENGINES[number];
const LINK_LABEL: Record<LinkEngine, string> = {
  oursZstd: "ours --compress zstd",
  oursZstd2: "ours --compress zstd --channels 2",
  oursRaw: "ours --compress none",
  oursAuto: "ours --compress auto",
  qemu10m2z: "QEMU 10 multifd 2 zstd, zero-pg multifd",
  qemu10m4z: "QEMU 10 multifd 4 zstd, zero-pg multifd",
  qemu10m4: "QEMU 10 multifd 4, zero-pg multifd",
};
const LINK_QEMU_ENGINES = ["qemu10m2z", "qemu10m4z", "qemu10m4"] as const;
const LINK_QEMU: Partial<Record<LinkEngine, QemuConfig>> = {
  qemu10m2z: {
    multifd: true,
    channels: 2,
    zeroPageDetection: "multifd",
    compression: "zstd",
    prealloc: true,
  },
  qemu10m4z: {
    multifd: true,
    channels: 4,
    zeroPageDetection: "multifd",
    compression: "zstd",
    prealloc: true,
  },
  qemu10m4: { multifd: true, channels: 4, zeroPageDetection: "multifd", prealloc: true },
};
/** QEMU's max-bandwidth on a capped link: above the link, so tc is the cap. */
const LINK_BANDWIDTH_FACTOR = 1.25;

interface LinkCase {
  id: string;
  rateBits: number;
  workload: boolean;
  title: string;
  runs: Partial<Record<LinkEngine, Run[]>>;
  failures: { engine: LinkEngine; pair: number; message: string }[];
}

function parseRam(text: string): number | undefined {
  const m = /^(\d+)([MG])$/i.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * (m[2].toUpperCase() === "G" ? 2 ** 30 : 2 ** 20);
}

async function cappedLinks(
  qemu10: QemuBinary,
  shm: string,
  tmp: string,
): Promise<{ json: object; svg?: string }> {
  const why = linkUnavailable();
  if (why !== undefined) {
    const message = `capped links skipped: ${why}`;
    console.log(`\n${message}`);
    return { json: { skipped: message } };
  }
  const linkRam = values["link-ram"];
  const bytes = parseRam(linkRam);
  const linkPairs = Number(values["link-pairs"]);
  const seed = Number(values["image-seed"]);
  let rates: number[];
  try {
    rates = values.links.split(",").map(parseLinkRate);
  } catch (e) {
    throw new Error(`--links: ${(e as Error).message}`);
  }
  if (bytes === undefined || bytes % 4096 !== 0 || !(linkPairs >= 1) || !Number.isInteger(seed)) {
    throw new Error("usage: --link-ram NM|NG --link-pairs N (N >= 1) --image-seed N (see --help)");
  }
  // In the ordinary temp dir, not /dev/shm: `migrate --fill-from` reads it, and Deno
  // wants --allow-all for paths under /dev. The page cache keeps it in memory.
  const image = `${tmp}/realistic.img`;
  progress(`writing the ${linkRam} realistic RAM image (seed ${seed})`);
  const summary: ImageSummary = await writeRealisticImage(image, bytes, seed);
  const share = (k: keyof ImageSummary["pages"]) =>
    `${(summary.pages[k] / (bytes / 4096) * 100).toFixed(0)} %`;
  const imageText = `zero ${share("zero")}, text ${share("text")} (${summary.textFiles} files), ` +
    `binaries ${share("binary")} (${summary.binaryFiles} files), random ${
      share("random")
    }; seed ${seed}`;
  progress(`  ${imageText}`);
  const cases: LinkCase[] = [];
  for (const rateBits of rates) {
    for (const workload of [false, true]) {
      cases.push({
        id: `${formatLinkRate(rateBits)}-${workload ? "workload" : "idle"}`,
        rateBits,
        workload,
        title: `${formatLinkRate(rateBits)} link, ${
          workload ? `workload ${values["link-dirty-rate"]}/s random writes` : "no workload"
        }`,
        runs: {},
        failures: [],
      });
    }
  }
  for (const [index, rateBits] of rates.entries()) {
    // Generous: the uncompressed image at the link's rate, four times, plus a minute.
    const timeoutMs = (bytes * 8 / rateBits) * 4000 + 60_000;
    const link = planLink(Deno.pid, index, rateBits);
    progress(`link ${formatLinkRate(rateBits)}: namespaces ${link.srcNs} and ${link.dstNs}`);
    setUpLink(link);
    try {
      for (let p = 0; p < linkPairs; p++) {
        for (const c of cases.filter((c) => c.rateBits === rateBits)) {
          const order: LinkEngine[] = c.workload
            ? ["oursZstd", "oursZstd2", "oursRaw", "oursAuto"]
            : [
              "oursZstd",
              "qemu10m2z",
              "oursZstd2",
              "qemu10m4z",
              "oursRaw",
              "qemu10m4",
              "oursAuto",
            ];
          if (p % 2 === 1) order.reverse();
          for (const e of order) {
            progress(`link pair ${p + 1}/${linkPairs}, ${c.id}: ${LINK_LABEL[e]}`);
            const once = async () =>
              e === "oursZstd" || e === "oursZstd2" || e === "oursRaw" || e === "oursAuto"
                ? await oursRun({
                  ram: linkRam,
                  dstArgs: e === "oursZstd2" ? ["--channels", "2"] : [],
                  srcArgs: [
                    ...["--fill-from", image, "--seed", `${seed}`],
                    ...[
                      "--compress",
                      e === "oursRaw" ? "none" : e === "oursAuto" ? "auto" : "zstd",
                    ],
                    ...(e === "oursZstd2" ? ["--channels", "2"] : []),
                    ...(c.workload
                      ? ["--workload", "random", "--dirty-rate", values["link-dirty-rate"]]
                      : []),
                  ],
                  dir: tmp,
                  timeoutMs,
                  link,
                })
                : qemuRun(
                  await qemuMigrate({
                    qemu: qemu10,
                    maxBandwidth: rateBits / 8 * LINK_BANDWIDTH_FACTOR,
                    downtimeLimitMs: DOWNTIME_LIMIT_MS,
                    netns: { src: link.srcNs, dst: link.dstNs, dstAddr: link.dstAddr },
                    image,
                    ramBytes: bytes,
                    config: LINK_QEMU[e]!,
                    dir: shm,
                    timeoutMs,
                  }),
                );
            let r: Run | undefined;
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
            (c.runs[e] ??= []).push(r);
            progress(
              `  ${r.wallMs.toFixed(0)} ms, downtime ${r.downtimeMs.toFixed(0)} ms, ${
                (r.wireBytes / MiB).toFixed(0)
              } MiB on the wire`,
            );
          }
        }
      }
    } finally {
      tearDownLink(link);
    }
  }
  return linkReport(cases, bytes, linkPairs, imageText, summary, qemu10);
}

function linkReport(
  cases: LinkCase[],
  bytes: number,
  linkPairs: number,
  imageText: string,
  image: ImageSummary,
  qemu10: QemuBinary,
): { json: object; svg: string } {
  const ramText = `${bytes / MiB} MiB`;
  const gbps = (ms: number) => bytes / 1e9 / (ms / 1000);
  const summary = cases.map((c) => {
    const med: Partial<Record<LinkEngine, Record<string, number>>> = {};
    for (const e of LINK_ENGINES) {
      const rs = c.runs[e];
      if (!rs) continue;
      med[e] = { ...medianRun(rs, gbps), runs: rs.length };
    }
    const ratios = Object.fromEntries(
      LINK_ENGINES.map((
        e,
      ) => [e, med[e] && med.oursZstd ? med[e]!.wallMs / med.oursZstd.wallMs : null]),
    ) as Record<LinkEngine, number | null>;
    const best = LINK_QEMU_ENGINES.filter((e) => med[e])
      .sort((a, b) => med[a]!.wallMs - med[b]!.wallMs)[0];
    const oursBest = (["oursZstd", "oursZstd2", "oursRaw", "oursAuto"] as const).filter((e) =>
      med[e]
    )
      .sort((a, b) => med[a]!.wallMs - med[b]!.wallMs)[0];
    return {
      ...c,
      median: med,
      ratios,
      qemu10Best: best === undefined ? undefined : { engine: best, ratio: ratios[best]! },
      oursBestVsQemu10Best: best === undefined || oursBest === undefined
        ? undefined
        : { engine: oursBest, ratio: med[best]!.wallMs / med[oursBest]!.wallMs },
    };
  });
  console.log(
    `\nCapped links: ${ramText} of realistic RAM (${imageText}); source and destination in two ` +
      `network namespaces over a veth pair shaped with tc tbf; ${qemu10.version}; median of ` +
      `${linkPairs} alternating pairs; QEMU: max-bandwidth ${LINK_BANDWIDTH_FACTOR} x the link, ` +
      `downtime-limit ${DOWNTIME_LIMIT_MS} ms; ours: downtime limit ${DOWNTIME_LIMIT_MS} ms`,
  );
  for (const s of summary) {
    console.log(`\n${ramText} realistic, ${s.title}`);
    console.log(
      `  ${"engine".padEnd(42)}${"wall ms".padStart(9)}${"GB/s".padStart(7)}${
        "downtime ms".padStart(13)
      }${"wire MiB".padStart(10)}${"ours/this".padStart(11)}`,
    );
    for (const e of LINK_ENGINES) {
      const m = s.median[e];
      if (!m) {
        console.log(
          `  ${LINK_LABEL[e].padEnd(42)}  n/a: QEMU's source is paused (-S), no workload`,
        );
        continue;
      }
      console.log(
        `  ${LINK_LABEL[e].padEnd(42)}${m.wallMs.toFixed(0).padStart(9)}${
          m.GBps.toFixed(2).padStart(7)
        }${m.downtimeMs.toFixed(0).padStart(13)}${(m.wireBytes / MiB).toFixed(1).padStart(10)}${
          `${s.ratios[e]!.toFixed(2)}x`.padStart(11)
        }`,
      );
    }
    for (const f of s.failures) {
      console.log(`  note: pair ${f.pair}, ${f.engine} attempt failed and was rerun: ${f.message}`);
    }
  }
  const aims = summary.filter((s) => !s.workload && s.qemu10Best).map((s) => ({
    what: `${formatLinkRate(s.rateBits)}: ours zstd / QEMU 10 best >= 1.5`,
    qemu10Best: s.qemu10Best!.engine,
    got: s.qemu10Best!.ratio,
    want: 1.5,
    met: s.qemu10Best!.ratio >= 1.5,
  }));
  console.log("\naims (capped links)");
  for (const a of aims) {
    console.log(`  ${a.what.padEnd(48)} ${a.got.toFixed(2)}x  ${a.met ? "met" : "SHORT"}`);
  }
  for (const s of summary.filter((s) => !s.workload && s.oursBestVsQemu10Best)) {
    const b = s.oursBestVsQemu10Best!;
    console.log(
      `  ${formatLinkRate(s.rateBits)}: ours best (${LINK_LABEL[b.engine]}) / QEMU 10 best (${
        LINK_LABEL[s.qemu10Best!.engine]
      }): ${b.ratio.toFixed(2)}x`,
    );
  }
  console.log(
    "  downtime under the workload: QEMU's source is paused (-S, no guest OS), so it cannot " +
      "dirty; only ours is measured",
  );
  const json = {
    ramBytes: bytes,
    image,
    pairs: linkPairs,
    dirtyRate: values["link-dirty-rate"],
    maxBandwidthFactor: LINK_BANDWIDTH_FACTOR,
    downtimeLimitMs: DOWNTIME_LIMIT_MS,
    cases: summary,
    aims,
  };
  const svg = renderBarChart({
    title: `Migrating ${ramText} of realistic RAM over a tc-capped veth link`,
    subtitle:
      `GB/s (RAM / time to destination complete), median of ${linkPairs} alternating pairs; ${imageText}`,
    groups: summary.map((s) => ({
      label: s.title.replace("workload ", ""),
      values: LINK_ENGINES.map((e) => s.median[e]?.GBps),
    })),
    series: [
      "ours zstd",
      "ours none",
      "QEMU 10 multifd 2 zstd",
      "QEMU 10 multifd 4 zstd",
      "QEMU 10 multifd 4",
    ],
    footnote:
      "QEMU's source is paused (-S), so the workload cases are ours only; 1gbit = 0.125 GB/s on the wire",
  });
  return { json, svg };
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
