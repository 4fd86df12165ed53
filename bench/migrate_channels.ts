// 1 GiB live migrations over loopback TCP between two processes with 1, 2
// and 4 parallel channels (`--channels`), on random and on half-zero RAM,
// the counts alternating within each round. Prints the medians and each
// count's ratio to 1 channel in the same run.
// Run: deno task bench:channels [--ram 1G] [--pairs 3] [--counts 1,2,4]
import { parseArgs } from "node:util";
import { migratePair } from "./_migrate_pair.ts";

const root = new URL("..", import.meta.url).pathname;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    ram: { type: "string", default: "1G" },
    pairs: { type: "string", default: "3" },
    counts: { type: "string", default: "1,2,4" },
    fills: { type: "string", default: "random,half" },
  },
});
const ramBytes = Number(/^(\d+)G$/.exec(values.ram)?.[1] ?? "1") * 2 ** 30;
const pairs = Number(values.pairs);
const counts = values.counts.split(",").map(Number);
const fills = values.fills.split(",");
const out = `${root}bench/out`;
Deno.mkdirSync(out, { recursive: true });

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench] ${text}\n`));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const GB = 1e9;
const results: Record<string, Record<number, { totalMs: number[]; downtimeMs: number[] }>> = {};
for (const fill of fills) {
  results[fill] = {};
  for (const n of counts) results[fill][n] = { totalMs: [], downtimeMs: [] };
  for (let i = 0; i < pairs; i++) {
    for (const n of counts) {
      progress(`${fill}, round ${i + 1}/${pairs}: ${n} channel(s)`);
      const { src } = await migratePair(
        values.ram,
        ["--fill", fill, "--seed", String(i + 1), "--channels", String(n)],
        ["--channels", String(n)],
      );
      results[fill][n].totalMs.push(src.totalMs);
      results[fill][n].downtimeMs.push(src.downtimeMs);
    }
  }
}
const summary = Object.fromEntries(
  fills.map((fill) => {
    const base = median(results[fill][counts[0]].totalMs);
    return [
      fill,
      Object.fromEntries(counts.map((n) => {
        const ms = median(results[fill][n].totalMs);
        return [n, {
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
for (const fill of fills) {
  for (const n of counts) {
    const s = summary[fill][n];
    console.log(
      `  ${fill.padEnd(7)} ${String(n).padStart(2)} channel(s) ${
        s.medianMs.toFixed(0).padStart(6)
      } ms  ${s.gbps.toFixed(2)} GB/s  ${s.ratioVsFirst.toFixed(2)}x ${
        counts[0]
      } channel(s)  downtime ${s.medianDowntimeMs.toFixed(0)} ms`,
    );
  }
}
console.log(`  JSON: bench/out/migrate_channels.json`);
