/**
 * Harvest cost per GiB for each dirty tracker at 0 %, 1 % and 100 % dirty,
 * and page-copy throughput, each against a C baseline making the same
 * kernel calls (bench/c/memory_harvest.c, compiled here with the system `cc`
 * into bench/out/). Prints medians and TypeScript / C ratios.
 *
 * ```sh
 * deno run -A bench/memory_harvest.ts [--mib 256] [--iters 5]
 * deno run -A bench/memory_harvest.ts --help
 * ```
 *
 * Soft-dirty is measured with `unsafeSkipProbe` on kernels without it: the
 * calls cost the same, but no bit is ever set there, so its 1 % and 100 %
 * rows only measure the clean path.
 *
 * @module
 */

import { benchArgs } from "./_args.ts";
import { guestAddress as g } from "../sys/address.ts";
import { hostView } from "../sys/host_memory.ts";
import { libc } from "../sys/_libc.ts";
import { MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE } from "../sys/constants.ts";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import type { DirtyTracker } from "../memory/dirty_tracker.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { PagemapScanTracker } from "../memory/pagemap_scan_tracker.ts";
import { probeSoftDirty, SoftDirtyTracker } from "../memory/soft_dirty_tracker.ts";
import { SoftwareDirtyLog } from "../memory/software_dirty_log.ts";
import { median } from "./_stats.ts";

const HELP = `deno task bench:memory [flags]

The harvest cost per GiB of each dirty tracker (PAGEMAP_SCAN, soft-dirty,
the software log) at 0, 1 and 100 % dirty, and page-copy throughput in 4 KiB,
64 KiB and 2 MiB runs, each against a C baseline making the same kernel calls
(bench/c/memory_harvest.c). Prints medians and TypeScript / C ratios.

  --mib N       the region in MiB, scaled to per-GiB figures (default 256)
  --iters N     samples per run, after the warm-up ones (default 5)
  -h, --help    show this help

Needs a C compiler; builds bench/out/memory_harvest.`;
const { integer } = benchArgs("bench:memory", HELP, {
  mib: { type: "string", default: "256" },
  iters: { type: "string", default: "5" },
});
const MIB = integer("mib", 1);
const ITERS = integer("iters", 1);
const here = new URL(".", import.meta.url).pathname;
const out = `${here}out`;

async function compile(): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  const bin = `${out}/memory_harvest`;
  const r = await new Deno.Command("cc", {
    args: ["-O2", "-Wall", "-o", bin, `${here}c/memory_harvest.c`],
  }).output();
  if (r.code !== 0) throw new Error(`cc failed: ${new TextDecoder().decode(r.stderr)}`);
  return bin;
}

async function runC(
  bin: string,
  mode: string,
  arg: number,
  iters: number,
): Promise<{ ns: number[]; pages: number }> {
  const r = await new Deno.Command(bin, { args: [mode, String(MIB), String(arg), String(iters)] })
    .output();
  if (r.code !== 0) throw new Error(`${mode}: ${new TextDecoder().decode(r.stderr)}`);
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

let rng = 1;
function nextRand(): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return rng >>> 0;
}

function dirty(mem: GuestMemory, percent: number, viaApi: boolean): void {
  const r = mem.regions[0];
  const bytes = mem.readView(r.gpa, Number(r.size));
  const n = percent >= 100 ? r.pages : Math.floor((r.pages * percent) / 100);
  for (let i = 0; i < n; i++) {
    const p = percent >= 100 ? i : nextRand() % r.pages;
    if (viaApi) mem.writeU8(g(BigInt(p) * 4096n), bytes[p * 4096] ^ 1);
    else bytes[p * 4096] ^= 1;
  }
}

function runTs(kind: string, percent: number, iters: number): { ns: number[]; pages: number } {
  rng = 1;
  using mem = GuestMemory.create([{ gpa: g(0n), size: BigInt(MIB) << 20n }]);
  mem.fill(g(0n), { length: MIB << 20, value: 1 });
  const tracker: DirtyTracker = kind === "pagemap-scan"
    ? new PagemapScanTracker(mem)
    : kind === "soft-dirty"
    ? new SoftDirtyTracker(mem, { unsafeSkipProbe: true })
    : new SoftwareDirtyLog(mem);
  using _t = tracker;
  tracker.start();
  const into = [new DirtyBitmap(mem.regions[0].pages)];
  tracker.harvest({ into });
  const ns: number[] = [];
  const warm = 3; // the first runs warm up the JIT
  for (let it = 0; it < iters + warm; it++) {
    dirty(mem, percent, kind === "software");
    into[0].clearAll();
    const t0 = performance.now();
    tracker.harvest({ into });
    const t = (performance.now() - t0) * 1e6;
    if (it >= warm) ns.push(t);
  }
  return { ns, pages: into[0].count() };
}

function copyTs(run: number, iters: number, ffiNs: number[] = []): number[] {
  const size = MIB << 20;
  const lib = libc();
  const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
  const a = lib.mmap(0n, BigInt(size), 3, flags, -1, 0n);
  const b = lib.mmap(0n, BigInt(size), 3, flags, -1, 0n);
  try {
    const src = hostView(a, size).fill(1);
    const dst = hostView(b, size);
    const ns: number[] = [];
    for (let it = 0; it < iters + 2; it++) {
      const t0 = performance.now();
      for (let off = 0; off < size; off += run) dst.set(src.subarray(off, off + run), off);
      if (it >= 2) ns.push((performance.now() - t0) * 1e6);
      // The same copy through libc memcpy, in this process, interleaved.
      const r = BigInt(run);
      const t1 = performance.now();
      for (let off = 0n; off < BigInt(size); off += r) lib.memcpy(b + off, a + off, r);
      if (it >= 2) ffiNs.push((performance.now() - t1) * 1e6);
    }
    return ns;
  } finally {
    lib.munmap(a, BigInt(size));
    lib.munmap(b, BigInt(size));
  }
}

const bin = await compile();
const perGiB = 1024 / MIB;
const softDirty = probeSoftDirty();
console.log(
  `harvest cost per GiB (median of ${ITERS}, ${MIB} MiB region scaled), kernel ${Deno.osRelease()}`,
);
if (!softDirty.ok) {
  console.log(`soft-dirty: ${softDirty.reason}; its rows measure the clean path only`);
}
console.log("tracker        dirty   C ms/GiB   TS ms/GiB   TS/C   pages C/TS");
const rows: string[] = [];
for (const kind of ["pagemap-scan", "soft-dirty", "software"]) {
  for (const pct of [0, 1, 100]) {
    const iters = pct === 100 && kind !== "software" ? Math.max(2, Math.ceil(ITERS / 2)) : ITERS;
    // Alternate C and TypeScript runs and pool them: the machine is noisy.
    const c = { ns: [] as number[], pages: 0 };
    const ts = { ns: [] as number[], pages: 0 };
    for (let round = 0; round < 3; round++) {
      const cr = await runC(bin, kind, pct, iters);
      const tr = runTs(kind, pct, iters);
      c.ns.push(...cr.ns);
      ts.ns.push(...tr.ns);
      c.pages = cr.pages;
      ts.pages = tr.pages;
    }
    const cm = (median(c.ns) / 1e6) * perGiB;
    const tm = (median(ts.ns) / 1e6) * perGiB;
    const row = `${kind.padEnd(14)} ${String(pct).padStart(4)} %  ${cm.toFixed(3).padStart(9)}  ${
      tm.toFixed(3).padStart(10)
    }  ${(tm / cm).toFixed(2).padStart(5)}   ${c.pages}/${ts.pages}`;
    console.log(row);
    rows.push(row);
  }
}
console.log(
  "\npage copy (GB/s, median)   C memcpy (process)   memcpy via FFI (same process)   TS Uint8Array.set   TS/C   TS/FFI",
);
for (const run of [4096, 65536, 2 << 20]) {
  const c = { ns: [] as number[] };
  const ts: number[] = [];
  const ffi: number[] = [];
  for (let round = 0; round < 3; round++) {
    c.ns.push(...(await runC(bin, "memcpy", run, ITERS)).ns);
    ts.push(...copyTs(run, ITERS, ffi));
  }
  const bytes = MIB * 2 ** 20;
  const cg = bytes / median(c.ns);
  const tg = bytes / median(ts);
  const fg = bytes / median(ffi);
  console.log(
    `run ${String(run / 1024).padStart(5)} KiB   ${cg.toFixed(2).padStart(18)}   ${
      fg.toFixed(2).padStart(29)
    }   ${tg.toFixed(2).padStart(17)}   ${(tg / cg).toFixed(2)}   ${(tg / fg).toFixed(2)}`,
  );
}
