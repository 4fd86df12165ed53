// A 1 GiB live migration over loopback TCP between two processes (`receive`
// and `migrate`), side by side with a C loopback-TCP pump of the same bytes,
// alternating A B A B. Prints the medians and the ratio to the C baseline, and
// each side's peak RSS. Run with --help for the flags.
import { benchArgs } from "./_args.ts";
import { buildC } from "./_limits_common.ts";
import { migratePair } from "./_migrate_pair.ts";
import { median } from "./_stats.ts";

const HELP = `deno task bench:migrate [flags]

A live migration (migrate -> receive, two processes) over loopback TCP
against a C loopback-TCP pump of the same bytes, alternating A B A B.
Prints the medians, the ratio to the C pump, the downtime and each side's
peak RSS.

  --ram NG        guest RAM, whole GiB (default 1G)
  --pairs N       alternating pairs (default 3)
  --fill PATTERN  the RAM's contents: random, zero, half, text or untouched
                  (default random)
  -h, --help      show this help

Builds the C pump into bench/out/ with cc. Writes bench/out/migrate_tcp.json.`;
const root = new URL("..", import.meta.url).pathname;
const { values, fail, integer, choice } = benchArgs("bench:migrate", HELP, {
  ram: { type: "string", default: "1G" },
  pairs: { type: "string", default: "3" },
  fill: { type: "string", default: "random" },
});
const gib = /^(\d+)G$/.exec(values.ram)?.[1];
if (gib === undefined || !(Number(gib) >= 1)) fail(`--ram takes NG (N >= 1), not "${values.ram}"`);
choice("fill", ["random", "zero", "half", "text", "untouched"]);
const ramBytes = Number(gib) * 2 ** 30;
const pairs = integer("pairs", 1);
const out = `${root}bench/out`;
Deno.mkdirSync(out, { recursive: true });

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench] ${text}\n`));
}

async function cPump(bin: string): Promise<number> {
  const t = performance.now();
  const r = await new Deno.Command(bin, { args: [String(ramBytes)] }).output();
  if (!r.success) throw new Error("The C pump failed");
  return performance.now() - t;
}

async function ours(run: number) {
  const { src: s, dst: d } = await migratePair(
    values.ram,
    ["--fill", values.fill, "--seed", String(run + 1)],
  );
  return {
    totalMs: s.totalMs as number,
    downtimeMs: s.downtimeMs as number,
    streamBytes: s.totalBytes as number,
    srcRss: s.peakRssBytes as number,
    dstRss: d.peakRssBytes as number,
  };
}

const bin = buildC("tcp_pump.c", "tcp_pump");
const c: number[] = [];
const o: Awaited<ReturnType<typeof ours>>[] = [];
for (let i = 0; i < pairs; i++) {
  progress(`pair ${i + 1}/${pairs}: C pump`);
  c.push(await cPump(bin));
  progress(`pair ${i + 1}/${pairs}: migrate/receive`);
  o.push(await ours(i));
}
const GB = 1e9;
const cMs = median(c);
const oMs = median(o.map((x) => x.totalMs));
const MiB = 2 ** 20;
const result = {
  ramBytes,
  fill: values.fill,
  pairs,
  cPumpMs: c,
  migration: o,
  medianCPumpGBps: ramBytes / GB / (cMs / 1000),
  medianMigrationGBps: ramBytes / GB / (oMs / 1000),
  ratio: cMs / oMs,
  medianDowntimeMs: median(o.map((x) => x.downtimeMs)),
  maxSourceRssMiB: Math.max(...o.map((x) => x.srcRss)) / MiB,
  maxDestinationRssMiB: Math.max(...o.map((x) => x.dstRss)) / MiB,
};
Deno.writeTextFileSync(`${out}/migrate_tcp.json`, JSON.stringify(result, null, 2) + "\n");
console.log(
  `${
    (ramBytes / MiB).toFixed(0)
  } MiB of ${values.fill} RAM over loopback TCP, median of ${pairs} alternating pairs`,
);
console.log(
  `  C loopback TCP pump      ${cMs.toFixed(0).padStart(6)} ms  ${
    result.medianCPumpGBps.toFixed(2)
  } GB/s`,
);
console.log(
  `  migrate -> receive       ${oMs.toFixed(0).padStart(6)} ms  ${
    result.medianMigrationGBps.toFixed(2)
  } GB/s  (${result.ratio.toFixed(2)}x C)`,
);
console.log(`  downtime (median)        ${result.medianDowntimeMs.toFixed(0).padStart(6)} ms`);
console.log(
  `  peak RSS source / dest   ${result.maxSourceRssMiB.toFixed(0)} MiB / ${
    result.maxDestinationRssMiB.toFixed(0)
  } MiB (RAM ${(ramBytes / MiB).toFixed(0)} MiB)`,
);
console.log(`  JSON: bench/out/migrate_tcp.json`);
