// A 1 GiB live migration over loopback TCP between two processes (`receive`
// and `migrate`), side by side with a C loopback-TCP pump of the same bytes,
// alternating A B A B. Prints the medians and the ratio to the C baseline, and
// each side's peak RSS. Run: deno task bench:migrate [--ram 1G] [--pairs 3]
import { buildC } from "./_limits_common.ts";
import { parseArgs } from "node:util";

const root = new URL("..", import.meta.url).pathname;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    ram: { type: "string", default: "1G" },
    pairs: { type: "string", default: "3" },
    fill: { type: "string", default: "random" },
  },
});
const ramBytes = Number(/^(\d+)G$/.exec(values.ram)?.[1] ?? "1") * 2 ** 30;
const pairs = Number(values.pairs);
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

const PERMS = ["--allow-ffi", "--allow-read", "--allow-write", "--allow-net", "--allow-env"];

async function ours(run: number) {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-bench-" });
  try {
    const recv = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...PERMS,
        `${root}mod.ts`,
        "receive",
        "--from",
        "tcp:127.0.0.1:0",
        "--ram",
        values.ram,
        "--report",
        `${dir}/dst.json`,
      ],
      stderr: "piped",
      stdout: "null",
    }).spawn();
    const reader = recv.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    let endpoint: string | undefined;
    while (endpoint === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`receive exited early: ${buffered}`);
      buffered += value;
      endpoint = /listening on (\S+)/.exec(buffered)?.[1];
    }
    const drain = (async () => {
      while (!(await reader.read()).done) { /* keep the pipe flowing */ }
    })();
    const src = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...PERMS,
        `${root}mod.ts`,
        "migrate",
        "--to",
        endpoint,
        "--ram",
        values.ram,
        "--fill",
        values.fill,
        "--seed",
        String(run + 1),
        "--report",
        `${dir}/src.json`,
      ],
      stderr: "piped",
      stdout: "null",
    }).output();
    await recv.status;
    await drain;
    if (!src.success) throw new Error(`migrate failed: ${new TextDecoder().decode(src.stderr)}`);
    const s = JSON.parse(Deno.readTextFileSync(`${dir}/src.json`));
    const d = JSON.parse(Deno.readTextFileSync(`${dir}/dst.json`));
    if (s.sourceDigest !== d.digest) throw new Error("digest mismatch");
    return {
      totalMs: s.totalMs as number,
      downtimeMs: s.downtimeMs as number,
      streamBytes: s.totalBytes as number,
      srcRss: s.peakRssBytes as number,
      dstRss: d.peakRssBytes as number,
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
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
