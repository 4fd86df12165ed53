// `migrate --compress zstd` against `--compress none` (the baseline, measured
// in the same run), live over loopback TCP between two processes, on
// text-like RAM (half zero pages, half words: `--fill text`) and on random
// RAM, over the bare loopback and over a link capped with --max-bandwidth
// (default 120M/s, about 1 Gbit/s). Runs alternate none, zstd, none, zstd.
// Prints throughput (RAM bytes / time to the verified image) and bytes on the
// wire, each as a ratio to the baseline. Run with --help for the flags.
import { benchArgs } from "./_args.ts";
import { migratePair } from "./_migrate_pair.ts";
import { median } from "./_stats.ts";

const HELP = `deno task bench:compress [flags]

migrate --compress zstd against --compress none (the baseline), live over
loopback TCP between two processes, on text-like and on random RAM, over the
bare loopback and over a link capped with --max-bandwidth; runs alternate
none, zstd. Prints throughput (RAM / time to the verified image) and bytes on
the wire, each as a ratio to the baseline.

  --ram NM      guest RAM, whole MiB (default 256M)
  --pairs N     alternating pairs per case (default 2)
  --cap RATE    the capped link's --max-bandwidth, per second (default 120M,
                about 1 Gbit/s)
  -h, --help    show this help

Writes bench/out/migrate_compress.json.`;
const root = new URL("..", import.meta.url).pathname;
const { values, fail, integer, rate } = benchArgs("bench:compress", HELP, {
  ram: { type: "string", default: "256M" },
  pairs: { type: "string", default: "2" },
  cap: { type: "string", default: "120M" },
});
const mib = /^(\d+)M$/.exec(values.ram)?.[1];
if (mib === undefined || !(Number(mib) >= 1)) fail(`--ram takes NM (N >= 1), not "${values.ram}"`);
rate("cap");
const ramBytes = Number(mib) * 2 ** 20;
const pairs = integer("pairs", 1);
const out = `${root}bench/out`;
Deno.mkdirSync(out, { recursive: true });

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench] ${text}\n`));
}

interface Run {
  totalMs: number;
  streamBytes: number;
  rawBytes: number | null;
  wireBytes: number | null;
}

async function migration(
  fill: string,
  compress: string,
  cap: string | undefined,
  seed: number,
): Promise<Run> {
  const { src: s } = await migratePair(
    values.ram,
    ["--fill", fill, "--seed", String(seed), "--compress", compress]
      .concat(cap === undefined ? [] : ["--max-bandwidth", cap]),
  );
  return {
    totalMs: s.totalMs,
    streamBytes: s.totalBytes,
    rawBytes: s.compression?.rawBytes ?? null,
    wireBytes: s.compression?.wireBytes ?? null,
  };
}

const MiB = 2 ** 20;
const rows = [];
for (const cap of [undefined, values.cap]) {
  for (const fill of ["text", "random"]) {
    const runs: Record<string, Run[]> = { none: [], zstd: [] };
    for (let i = 0; i < pairs; i++) {
      for (const compress of ["none", "zstd"]) {
        progress(`${cap ?? "loopback"} ${fill} ${compress} ${i + 1}/${pairs}`);
        runs[compress].push(await migration(fill, compress, cap, i + 1));
      }
    }
    const ms = {
      none: median(runs.none.map((r) => r.totalMs)),
      zstd: median(runs.zstd.map((r) => r.totalMs)),
    };
    const bytes = {
      none: median(runs.none.map((r) => r.streamBytes)),
      zstd: median(runs.zstd.map((r) => r.streamBytes)),
    };
    rows.push({ link: cap === undefined ? "loopback" : `cap ${cap}/s`, fill, ms, bytes, runs });
  }
}
Deno.writeTextFileSync(
  `${out}/migrate_compress.json`,
  JSON.stringify({ ramBytes, pairs, rows }, null, 2) + "\n",
);
console.log(
  `${ramBytes / MiB} MiB over loopback TCP, medians of ${pairs} alternating pairs; ` +
    `throughput = RAM / time to the verified image; baseline = --compress none`,
);
console.log(
  "  link          fill    none GB/s  zstd GB/s  speed x   none MiB   zstd MiB   bytes x",
);
for (const r of rows) {
  const gbps = (ms: number) => ramBytes / 1e9 / (ms / 1000);
  console.log(
    `  ${r.link.padEnd(13)} ${r.fill.padEnd(7)} ${gbps(r.ms.none).toFixed(2).padStart(9)} ${
      gbps(r.ms.zstd).toFixed(2).padStart(10)
    } ${(r.ms.none / r.ms.zstd).toFixed(2).padStart(8)} ${
      (r.bytes.none / MiB).toFixed(1).padStart(10)
    } ${(r.bytes.zstd / MiB).toFixed(1).padStart(10)} ${
      (r.bytes.zstd / r.bytes.none).toFixed(3).padStart(9)
    }`,
  );
}
console.log("  JSON: bench/out/migrate_compress.json");
