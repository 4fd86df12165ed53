// 1 GiB live migrations over loopback TCP between two processes with 1, 2
// and 4 parallel channels (`--channels`), on random and on half-zero RAM,
// the counts alternating within each round. Prints the medians of the time
// until the destination holds the image (setup included) and of the whole
// migration (its digests included), each as a ratio to 1 channel in the
// same run.
// Run with --help for the flags.
import { benchArgs } from "./_args.ts";
import { migratePair } from "./_migrate_pair.ts";
import { median } from "./_stats.ts";

const HELP = `deno task bench:channels [flags]

Live migrations (migrate -> receive, two processes) over loopback TCP with
several parallel channels (--channels), the counts alternating within each
round. Prints the medians of the time to the image at the destination and
of the whole migration, each as a ratio to the first count, and the downtime.

  --ram NG          guest RAM, whole GiB (default 1G)
  --pairs N         rounds (default 3)
  --counts N,N,...  channel counts, comma-separated; the first is the baseline
                    (default 1,2,4)
  --fills F,F,...   RAM contents, comma-separated, each random, zero, half,
                    text or untouched (default random,half)
  -h, --help        show this help

Writes bench/out/migrate_channels.json.`;
const FILLS = ["random", "zero", "half", "text", "untouched"];
const root = new URL("..", import.meta.url).pathname;
const { values, fail, integer } = benchArgs("bench:channels", HELP, {
  ram: { type: "string", default: "1G" },
  pairs: { type: "string", default: "3" },
  counts: { type: "string", default: "1,2,4" },
  fills: { type: "string", default: "random,half" },
});
const gib = /^(\d+)G$/.exec(values.ram)?.[1];
if (gib === undefined || !(Number(gib) >= 1)) fail(`--ram takes NG (N >= 1), not "${values.ram}"`);
const ramBytes = Number(gib) * 2 ** 30;
const pairs = integer("pairs", 1);
if (!/^\d+(,\d+)*$/.test(values.counts) || values.counts.split(",").some((n) => !(+n >= 1))) {
  fail(`--counts takes channel counts >= 1, comma-separated, not "${values.counts}"`);
}
const counts = values.counts.split(",").map(Number);
const fills = values.fills.split(",");
const badFill = fills.find((f) => !FILLS.includes(f));
if (badFill !== undefined) fail(`--fills takes ${FILLS.join(", ")}, not "${badFill}"`);
const out = `${root}bench/out`;
Deno.mkdirSync(out, { recursive: true });

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench] ${text}\n`));
}

const GB = 1e9;
const results: Record<
  string,
  Record<number, { totalMs: number[]; imageMs: number[]; downtimeMs: number[] }>
> = {};
for (const fill of fills) {
  results[fill] = {};
  for (const n of counts) results[fill][n] = { totalMs: [], imageMs: [], downtimeMs: [] };
  for (let i = 0; i < pairs; i++) {
    for (const n of counts) {
      progress(`${fill}, round ${i + 1}/${pairs}: ${n} channel(s)`);
      const { src } = await migratePair(
        values.ram,
        ["--fill", fill, "--seed", String(i + 1), "--channels", String(n)],
        ["--channels", String(n)],
      );
      results[fill][n].totalMs.push(src.totalMs);
      results[fill][n].imageMs.push(src.imageMs);
      results[fill][n].downtimeMs.push(src.downtimeMs);
    }
  }
}
const summary = Object.fromEntries(
  fills.map((fill) => {
    const base = median(results[fill][counts[0]].totalMs);
    const baseImage = median(results[fill][counts[0]].imageMs);
    return [
      fill,
      Object.fromEntries(counts.map((n) => {
        const ms = median(results[fill][n].totalMs);
        const image = median(results[fill][n].imageMs);
        return [n, {
          medianImageMs: image,
          imageGBps: ramBytes / GB / (image / 1000),
          imageRatioVsFirst: baseImage / image,
          medianMs: ms,
          gbps: ramBytes / GB / (ms / 1000),
          ratioVsFirst: base / ms,
          medianDowntimeMs: median(results[fill][n].downtimeMs),
        }];
      })),
    ];
  }),
);
Deno.writeTextFileSync(
  `${out}/migrate_channels.json`,
  JSON.stringify({ ramBytes, pairs, counts, results, summary }, null, 2) + "\n",
);
console.log(
  `${(ramBytes / 2 ** 20).toFixed(0)} MiB over loopback TCP, median of ${pairs} rounds ` +
    `(${Deno.build.os}, ${navigator.hardwareConcurrency} CPUs)`,
);
console.log(
  "  RAM     channels   image (ratio)                 whole migration (ratio)   downtime",
);
for (const fill of fills) {
  for (const n of counts) {
    const s = summary[fill][n];
    console.log(
      `  ${fill.padEnd(7)} ${String(n).padStart(8)}   ${
        s.medianImageMs.toFixed(0).padStart(5)
      } ms ${s.imageGBps.toFixed(2)} GB/s (${s.imageRatioVsFirst.toFixed(2)}x)   ${
        s.medianMs.toFixed(0).padStart(5)
      } ms (${s.ratioVsFirst.toFixed(2)}x)        ${s.medianDowntimeMs.toFixed(0)} ms`,
    );
  }
}
console.log(`  JSON: bench/out/migrate_channels.json`);
