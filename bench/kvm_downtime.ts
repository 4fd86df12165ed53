/**
 * The downtime of a running KVM guest against the Worker workload at the
 * same dirty rate, measured in one run: two processes (`receive`, `migrate`)
 * over loopback TCP, the same RAM, fill, write pattern and rate, in
 * alternating rounds of the KVM test guest (dirty bitmap), the KVM test
 * guest (dirty ring) and the Worker. Prints the medians and the ratios to
 * the Worker's, and writes bench/out/kvm_downtime.json.
 *
 * ```sh
 * deno run -A bench/kvm_downtime.ts [--ram 256M] [--rate 32M] [--pattern random] [--rounds 5]
 * deno run -A bench/kvm_downtime.ts --help
 * ```
 *
 * Needs a usable /dev/kvm on this host.
 *
 * @module
 */

import { benchArgs } from "./_args.ts";
import { median } from "./_limits_common.ts";

const HELP = `deno run -A bench/kvm_downtime.ts [flags]   (the second half of deno task bench:kvm)

The downtime of a running KVM test guest (dirty bitmap, then dirty ring)
against the Worker workload at the same dirty rate: receive and migrate over
loopback TCP, the same RAM, fill, write pattern and rate, in alternating
rounds. Prints the medians and the ratios to the Worker's.

  --ram SIZE        guest RAM (default 256M)
  --rate RATE       the guest's writes/s, migrate's --dirty-rate (default 32M)
  --pattern NAME    the write pattern, migrate's --workload: random,
                    sequential or hotspot (default random)
  --rounds N        alternating rounds (default 5)
  -h, --help        show this help

Needs a usable /dev/kvm. Writes bench/out/kvm_downtime.json.`;
const root = new URL("..", import.meta.url).pathname;
const { values, integer, size, rate, choice } = benchArgs("bench/kvm_downtime.ts", HELP, {
  ram: { type: "string", default: "256M" },
  rate: { type: "string", default: "32M" },
  pattern: { type: "string", default: "random" },
  rounds: { type: "string", default: "5" },
});
size("ram");
rate("rate");
choice("pattern", ["random", "sequential", "hotspot"]);
const ROUNDS = integer("rounds", 1);
const PERMS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
];
const out = `${root}bench/out`;
Deno.mkdirSync(out, { recursive: true });

function say(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[kvm downtime] ${text}\n`));
}

type Kind = "kvm bitmap" | "kvm ring" | "worker";

interface Run {
  downtimeMs: number;
  expectedDowntimeMs: number;
  iterations: number;
  stopCopyPages: number;
  totalMs: number;
  dirtyPagesPerSecond: number;
}

function cli(args: string[], stderr: "piped" | "null"): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMS, `${root}mod.ts`, ...args],
    stdin: "null",
    stdout: "null",
    stderr,
  }).spawn();
}

async function once(kind: Kind, round: number): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-kvm-downtime-" });
  try {
    const kvm = kind !== "worker";
    const recv = cli([
      "receive",
      "--from",
      "tcp:127.0.0.1:0",
      "--ram",
      values.ram,
      "--report",
      `${dir}/dst.json`,
      ...(kvm ? ["--guest", "kvm", "--run-after-ms", "0"] : []),
    ], "piped");
    const reader = recv.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    let endpoint: string | undefined;
    while (endpoint === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new TypeError(`receive exited early: ${seen}`);
      seen += value;
      endpoint = /listening on (\S+)/.exec(seen)?.[1];
    }
    const drain = (async () => {
      while (!(await reader.read()).done) { /* keep the pipe flowing */ }
    })();
    const src = await cli([
      "migrate",
      "--to",
      endpoint,
      "--ram",
      values.ram,
      "--workload",
      values.pattern,
      "--dirty-rate",
      values.rate,
      "--seed",
      String(round + 1),
      "--report",
      `${dir}/src.json`,
      ...(kvm ? ["--guest", "kvm", "--kvm-dirty", kind === "kvm ring" ? "ring" : "bitmap"] : []),
      ...(kvm ? ["--heartbeat-ms", "0"] : []),
    ], "piped").output();
    const dst = await recv.status;
    await drain;
    if (!src.success || !dst.success) {
      throw new TypeError(
        `${kind}: migrate or receive failed: ${new TextDecoder().decode(src.stderr)}`,
      );
    }
    const s = JSON.parse(Deno.readTextFileSync(`${dir}/src.json`));
    const d = JSON.parse(Deno.readTextFileSync(`${dir}/dst.json`));
    if (s.sourceDigest !== d.digest) throw new TypeError(`${kind}: digests differ`);
    if (kvm && d.guest?.verdict !== "continued") {
      throw new TypeError(`${kind}: the guest did not go on: ${d.guest?.failures}`);
    }
    const rows = s.iterations as { dirtyPages: number; durationMs: number }[];
    return {
      downtimeMs: s.downtimeMs,
      expectedDowntimeMs: s.expectedDowntimeMs,
      iterations: rows.length,
      stopCopyPages: s.stopCopyPages,
      totalMs: s.totalMs,
      // What the sources saw, over the bulk pass and the iterations after it.
      dirtyPagesPerSecond: rows.reduce((n, r) => n + r.dirtyPages, 0) /
        Math.max(1e-3, rows.reduce((n, r) => n + r.durationMs, 0) / 1000),
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const kinds: Kind[] = ["kvm bitmap", "kvm ring", "worker"];
const runs = new Map<Kind, Run[]>(kinds.map((k) => [k, []]));
for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order each round: the machine is noisy and shared.
  const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]);
  for (const kind of order) {
    say(`round ${round + 1}/${ROUNDS}: ${kind}`);
    runs.get(kind)!.push(await once(kind, round));
  }
}
const med = (kind: Kind, key: keyof Run) => median(runs.get(kind)!.map((r) => r[key]));
console.log(
  `\n${values.ram} of ${values.pattern}-written RAM at ${values.rate}/s over loopback TCP, ` +
    `median of ${ROUNDS} rounds`,
);
console.log(
  "\n| workload | downtime ms | / Worker | expected ms | iterations | stop-copy pages | downtime µs per stop-copy page | dirty pages/s seen |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const kind of kinds) {
  console.log(
    `| ${kind === "worker" ? "Worker (memory/ tracker)" : `KVM guest (${kind.slice(4)})`} | ${
      med(kind, "downtimeMs").toFixed(1)
    } | ${(med(kind, "downtimeMs") / med("worker", "downtimeMs")).toFixed(2)} | ${
      med(kind, "expectedDowntimeMs").toFixed(1)
    } | ${med(kind, "iterations")} | ${med(kind, "stopCopyPages")} | ${
      median(runs.get(kind)!.map((r) => (r.downtimeMs * 1000) / Math.max(1, r.stopCopyPages)))
        .toFixed(1)
    } | ${med(kind, "dirtyPagesPerSecond").toFixed(0)} |`,
  );
}
Deno.writeTextFileSync(
  `${out}/kvm_downtime.json`,
  JSON.stringify({ ...values, runs: Object.fromEntries(runs) }, null, 2) + "\n",
);
console.log("\nJSON: bench/out/kvm_downtime.json");
