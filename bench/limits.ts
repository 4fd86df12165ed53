/**
 * The project's primitives as ratios to physical baselines measured in the
 * same run, C and ours alternated round by round, medians of every sample:
 *
 * - page copy (GuestMemory `view()`/`readView()` + `Uint8Array.set`) vs C
 *   memcpy (bench/c/memcpy_bw.c), whole, 4 KiB / 64 KiB / 2 MiB runs, and
 *   every 4 KiB page in the same random order;
 * - bitmap scan (DirtyBitmap `count`, `forEachRun`, `pageIndexes` over a
 *   16 GiB-sized bitmap) vs bench/c/bitmap_scan.c through FFI on the same words;
 * - dirty harvest (the tracker `selectDirtyTracker` picks; PAGEMAP_SCAN here)
 *   vs bench/c/memory_harvest.c making the same kernel calls (the baseline
 *   bench/memory_harvest.ts uses, with its dirtying pattern);
 * - stream encode (StreamWriter into a null sink, `pageRuns`) vs C memcpy of
 *   the same bytes, and StreamWriter → receiveStream over loopback TCP vs the
 *   C pump of bench/c/tcp_pump.c.
 *
 * Ratio = our speed / the baseline's speed (1.00 = as fast as C; times are
 * inverted so that higher is better everywhere).
 *
 * ```sh
 * deno task bench:limits [--rounds 5] [--mib 1024]
 * deno task bench:limits --help
 * ```
 *
 * Prints one table, writes bench/out/limits.json, and a progress line per
 * phase on stderr.
 *
 * @module
 */

import { benchArgs } from "./_args.ts";
import { selectDirtyTracker } from "../memory/auto_tracker.ts";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { sourceRam } from "../migration/guest/guest_ram.ts";
import { connectEndpoint } from "../migration/transport/open.ts";
import { StreamWriter } from "../migration/stream/writer.ts";
import { pageRuns } from "../migration/stream/zero_pages.ts";
import { guestAddress as g } from "../sys/address.ts";
import {
  buildC,
  crcDigest,
  fillDensity,
  fillRandom,
  median,
  openBitmapScan,
  OUT,
  pageOrder,
  progress,
  XorShift32,
} from "./_limits_common.ts";

const HELP = `deno task bench:limits [flags]

The project's primitives as ratios to C baselines measured in the same run,
C and ours alternated round by round (ratio = our speed / the baseline's):
page copy vs memcpy, DirtyBitmap scans vs C over the same words, the dirty
harvest vs bench/c/memory_harvest.c, stream encode vs memcpy, and
StreamWriter -> receiveStream over loopback TCP vs a C TCP pump.

  --rounds N    alternating rounds per case (default 5)
  --mib N       the region in MiB, even, at least 64 (default 1024)
  -h, --help    show this help

Needs a C compiler (builds into bench/out/). Prints one table and a progress
line per phase on stderr, writes bench/out/limits.json.`;
const { fail, integer } = benchArgs("bench:limits", HELP, {
  rounds: { type: "string", default: "5" },
  mib: { type: "string", default: "1024" },
});
const ROUNDS = integer("rounds", 1);
const MIB = integer("mib", 64);
if (MIB % 2 !== 0) fail(`--mib takes an even number, not "${MIB}"`);
const SIZE = MIB * 2 ** 20;
const PAGES = SIZE / 4096;
const BITMAP_PAGES = 4_194_304; // 16 GiB of 4 KiB pages = 512 KiB of bitmap

/** One line of the table. */
interface Row {
  phase: string;
  primitive: string;
  unit: string;
  ours: number;
  baseline: number;
  baselineName: string;
  /** Our speed / the baseline's speed. */
  ratio: number;
  oursSamples: number[];
  baselineSamples: number[];
  note?: string;
}
const rows: Row[] = [];

/** Adds a row from time samples (ns); `bytes` makes it a GB/s row, else `scale` per sample. */
function addRow(
  phase: string,
  primitive: string,
  baselineName: string,
  oursNs: number[],
  baseNs: number[],
  how: { bytes: number } | { unit: string; divisor: number },
  note?: string,
): void {
  const o = median(oursNs);
  const b = median(baseNs);
  const [unit, ours, baseline] = "bytes" in how
    ? ["GB/s", how.bytes / o, how.bytes / b]
    : [how.unit, o / how.divisor, b / how.divisor];
  rows.push({
    phase,
    primitive,
    unit,
    ours,
    baseline,
    baselineName,
    ratio: b / o,
    oursSamples: oursNs,
    baselineSamples: baseNs,
    note,
  });
}

/** Times `fn` `iters` times after `warm` untimed calls; returns ns per call. */
function timeSync(fn: () => void, iters: number, warm = 1): number[] {
  for (let i = 0; i < warm; i++) fn();
  const ns: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    ns.push((performance.now() - t0) * 1e6);
  }
  return ns;
}

/** As {@linkcode timeSync} for async work. */
async function timeAsync(fn: () => Promise<void>, iters: number, warm = 1): Promise<number[]> {
  for (let i = 0; i < warm; i++) await fn();
  const ns: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    ns.push((performance.now() - t0) * 1e6);
  }
  return ns;
}

/** Runs a C baseline program that prints `{"ns": [...], ...}`. */
function runCJson(bin: string, args: string[]): { ns: number[]; pages?: number } {
  const r = new Deno.Command(bin, { args }).outputSync();
  if (!r.success) {
    throw new Error(`${bin} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

// ---------------------------------------------------------------------------
progress(`building the C baselines into ${OUT}`);
const memcpyBin = buildC("memcpy_bw.c", "memcpy_bw");
const harvestBin = buildC("memory_harvest.c", "limits_memory_harvest");
const pumpBin = buildC("tcp_pump.c", "limits_tcp_pump");
const cScan = openBitmapScan();

const src = GuestMemory.create([{ gpa: g(0n), size: BigInt(SIZE) }], { prefault: true });
const dst = GuestMemory.create([{ gpa: g(0n), size: BigInt(SIZE) }], { prefault: true });
src.fill(g(0n), { length: SIZE, value: 1 });

// --- page copy -------------------------------------------------------------
{
  const sizeB = BigInt(SIZE);
  const copyRuns = (run: number) => {
    const r = BigInt(run);
    for (let gpa = 0n; gpa < sizeB; gpa += r) {
      dst.view(g(gpa), run).set(src.readView(g(gpa), run));
    }
  };
  const order = pageOrder(PAGES);
  const copyRandom = () => {
    for (let i = 0; i < order.length; i++) {
      const gpa = g(BigInt(order[i] * 4096));
      dst.view(gpa, 4096).set(src.readView(gpa, 4096));
    }
  };
  const cases: { name: string; c: string[]; ours: () => void; iters: number }[] = [
    { name: `whole ${MIB} MiB`, c: ["whole"], ours: () => copyRuns(SIZE), iters: 3 },
    { name: "4 KiB runs", c: ["chunk", "", "", "4096"], ours: () => copyRuns(4096), iters: 3 },
    {
      name: "64 KiB runs",
      c: ["chunk", "", "", "65536"],
      ours: () => copyRuns(65536),
      iters: 3,
    },
    {
      name: "2 MiB runs",
      c: ["chunk", "", "", String(2 << 20)],
      ours: () => copyRuns(2 << 20),
      iters: 3,
    },
    { name: "4 KiB pages, random order", c: ["random"], ours: copyRandom, iters: 3 },
  ];
  for (const cs of cases) {
    progress(`page copy: ${cs.name}, ${ROUNDS} rounds`);
    const c: number[] = [];
    const ours: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const args = [...cs.c];
      args[1] = String(MIB);
      args[2] = String(cs.iters);
      c.push(...runCJson(memcpyBin, args).ns);
      ours.push(...timeSync(cs.ours, cs.iters));
    }
    addRow("page copy", `page copy, ${cs.name}`, "C memcpy", ours, c, { bytes: SIZE });
  }
  if (dst.readU8(g(BigInt(SIZE - 1))) !== 1) throw new Error("page copy did not copy");
}

// --- bitmap scan -----------------------------------------------------------
{
  const bm = new DirtyBitmap(BITMAP_PAGES);
  const runsOut = new Uint32Array(BITMAP_PAGES + 2);
  const idxOut = new Uint32Array(BITMAP_PAGES);
  const idxOurs = new Uint32Array(BITMAP_PAGES);
  let sink = 0;
  const pairs = new Uint32Array(BITMAP_PAGES + 2);
  let n = 0;
  const collect = (first: number, count: number) => {
    pairs[n++] = first;
    pairs[n++] = count;
  };
  const ops = [
    {
      name: "count()",
      ours: () => void (sink += bm.count()),
      c: () => void (sink += cScan.count(bm)),
    },
    {
      name: "forEachRun()",
      ours: () => {
        n = 0;
        bm.forEachRun(collect);
        sink += n;
      },
      c: () => void (sink += cScan.runs(bm, runsOut)),
    },
    {
      // Both write into a preallocated array.
      name: "pageIndexesInto()",
      ours: () => void (sink += bm.pageIndexesInto(idxOurs)),
      c: () => void (sink += cScan.indexes(bm, idxOut)),
    },
  ];
  for (const density of [0, 0.001, 0.01, 0.1, 1]) {
    fillDensity(bm, density);
    const label = `${density * 100} %`;
    progress(`bitmap scan: ${label} dirty (${bm.count()} of ${BITMAP_PAGES} pages)`);
    // The two sides must agree before either is timed.
    n = 0;
    bm.forEachRun(collect);
    const cRuns = cScan.runs(bm, runsOut);
    const idx = bm.pageIndexes();
    const cIdx = cScan.indexes(bm, idxOut);
    if (
      cScan.count(bm) !== bm.count() || cRuns * 2 !== n || cIdx !== idx.length ||
      pairs.subarray(0, n).some((v, i) => v !== runsOut[i]) ||
      idx.some((v, i) => v !== idxOut[i]) || bm.pageIndexesInto(idxOurs) !== cIdx ||
      idxOurs.subarray(0, cIdx).some((v, i) => v !== idxOut[i])
    ) {
      throw new Error(`bitmap scan: C and DirtyBitmap disagree at ${label}`);
    }
    const iters = density >= 0.1 ? 10 : 30;
    for (const op of ops) {
      const c: number[] = [];
      const ours: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        c.push(...timeSync(op.c, iters, 3));
        ours.push(...timeSync(op.ours, iters, 3));
      }
      addRow(
        "bitmap scan",
        `bitmap ${op.name}, 16 GiB, ${label}`,
        "C via FFI",
        ours,
        c,
        { unit: "us", divisor: 1e3 },
      );
    }
  }
  if (sink === -1) console.log(sink);
}

// --- dirty harvest -----------------------------------------------------------
{
  using mem = GuestMemory.create([{ gpa: g(0n), size: BigInt(SIZE) }]);
  mem.fill(g(0n), { length: SIZE, value: 1 });
  const { tracker, chosen, rejected } = selectDirtyTracker(mem);
  using _tracker = tracker;
  progress(
    `dirty harvest: selectDirtyTracker chose ${chosen}${
      rejected.length ? ` (rejected ${rejected.map((r) => r.kind).join(", ")})` : ""
    }`,
  );
  const bytes = mem.readView(g(0n), SIZE);
  const into = [new DirtyBitmap(PAGES)];
  tracker.harvest({ into });
  const perGiB = 2 ** 30 / SIZE;
  for (const pct of [0, 1, 100]) {
    progress(`dirty harvest: ${pct} % dirty, ${ROUNDS} rounds`);
    const iters = pct === 100 ? 3 : 5;
    const c: number[] = [];
    const ours: number[] = [];
    let cPages = 0;
    let ourPages = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const cr = runCJson(harvestBin, ["pagemap-scan", String(MIB), String(pct), String(iters)]);
      c.push(...cr.ns.map((x) => x * perGiB));
      cPages = cr.pages ?? 0;
      // The dirtying pattern of memory_harvest.c: xorshift from 1 per process.
      const rng = new XorShift32(1);
      const warm = 2;
      for (let it = 0; it < iters + warm; it++) {
        const count = pct >= 100 ? PAGES : Math.floor((PAGES * pct) / 100);
        for (let i = 0; i < count; i++) {
          const p = pct >= 100 ? i : rng.next() % PAGES;
          bytes[p * 4096] ^= 1;
        }
        into[0].clearAll();
        const t0 = performance.now();
        tracker.harvest({ into });
        const t = (performance.now() - t0) * 1e6;
        if (it >= warm) ours.push(t * perGiB);
      }
      ourPages = into[0].count();
    }
    addRow(
      "dirty harvest",
      `harvest (${chosen}) per GiB, ${pct} % dirty`,
      "C, same ioctls",
      ours,
      c,
      { unit: "ms/GiB", divisor: 1e6 },
      `last harvest: ${ourPages} pages ours, ${cPages} C`,
    );
  }
}

// --- stream encode -----------------------------------------------------------
{
  progress(`stream encode: filling ${MIB} MiB with random bytes`);
  fillRandom(src.view(g(0n), SIZE));
  dst.fill(g(0n), { length: SIZE, value: 0 });
  const ram = sourceRam(src);
  const digest = crcDigest(src);
  const nullSink = { write: () => Promise.resolve() };
  let sink = 0;
  const encode = async () => {
    const w = new StreamWriter(nullSink);
    await w.writeHeader(ram.layout, 4096);
    await w.writePages(ram, g(0n), PAGES);
    await w.writeEnd(digest);
    sink += w.bytesWritten;
  };
  const scan = (mem: GuestMemory) => () => {
    for (const r of pageRuns(mem.readView(g(0n), SIZE), 4096)) sink += r.length;
  };
  const cases = [
    { name: `StreamWriter to a null sink, ${MIB} MiB random`, async: encode },
    { name: `pageRuns(), ${MIB} MiB random`, sync: scan(src) },
    { name: `pageRuns(), ${MIB} MiB zero`, sync: scan(dst) },
  ];
  for (const cs of cases) {
    progress(`stream encode: ${cs.name}, ${ROUNDS} rounds`);
    const c: number[] = [];
    const ours: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      c.push(...runCJson(memcpyBin, ["whole", String(MIB), "3"]).ns);
      ours.push(...(cs.async ? await timeAsync(cs.async, 3) : timeSync(cs.sync!, 3)));
    }
    addRow("stream encode", cs.name, "C memcpy, same bytes", ours, c, { bytes: SIZE });
  }
  if (sink === -1) console.log(sink);
}
dst.close();

// --- loopback TCP ------------------------------------------------------------
{
  const worker = new Worker(new URL("./_limits_receiver.ts", import.meta.url), {
    type: "module",
  });
  type Reply = { port?: number; bytes?: number; error?: string };
  let reply: ((m: Reply) => void) | undefined;
  worker.onmessage = (e: MessageEvent<Reply>) => reply?.(e.data);
  const next = () =>
    new Promise<Reply>((resolve, reject) => {
      reply = (m) => (m.error !== undefined ? reject(new Error(m.error)) : resolve(m));
    });
  const ram = sourceRam(src);
  const digest = crcDigest(src); // computed once: the source RAM does not change
  const overTcp = async (raw: boolean): Promise<number> => {
    const ported = next();
    worker.postMessage({ mib: MIB, raw });
    const { port } = await ported;
    const done = next();
    const t0 = performance.now();
    {
      using conn = await connectEndpoint(`tcp:127.0.0.1:${port}`);
      if (raw) {
        for (let o = 0; o < SIZE; o += 1 << 20) await conn.write(ram.view(g(BigInt(o)), 1 << 20));
      } else {
        const w = new StreamWriter(conn);
        await w.writeHeader(ram.layout, 4096);
        await w.writePages(ram, g(0n), PAGES);
        await w.writeEnd(digest);
      }
    }
    const { bytes } = await done;
    const ns = (performance.now() - t0) * 1e6;
    if (bytes === undefined || bytes < SIZE) throw new Error(`the receiver got ${bytes} bytes`);
    return ns;
  };
  const cPump = (): number => {
    const t0 = performance.now();
    const r = new Deno.Command(pumpBin, { args: [String(SIZE)] }).outputSync();
    if (!r.success) throw new Error("the C TCP pump failed");
    return (performance.now() - t0) * 1e6;
  };
  progress(`loopback TCP: warm-up (the receiver prefaults ${MIB} MiB)`);
  await overTcp(false);
  const c: number[] = [];
  const ours: number[] = [];
  const rawDeno: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    progress(`loopback TCP: round ${round + 1}/${ROUNDS}`);
    c.push(cPump());
    ours.push(await overTcp(false));
    rawDeno.push(await overTcp(true));
  }
  worker.postMessage("close");
  addRow(
    "loopback TCP",
    `StreamWriter -> receiveStream, ${MIB} MiB random`,
    "C TCP pump",
    ours,
    c,
    { bytes: SIZE },
    "receiver in a Worker, prefaulted GuestMemory; CRC-32 digest checked",
  );
  addRow(
    "loopback TCP",
    `raw Deno socket pump, ${MIB} MiB (reference)`,
    "C TCP pump",
    rawDeno,
    c,
    { bytes: SIZE },
  );
}
src.close();
cScan.close();

// --- report ------------------------------------------------------------------
const fmt = (v: number, unit: string) =>
  `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
const header = ["primitive", "ours", "baseline", "ratio"];
const table = rows.map((r) => [
  r.primitive,
  fmt(r.ours, r.unit),
  `${fmt(r.baseline, r.unit)} (${r.baselineName})`,
  r.ratio.toFixed(2),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
const line = (cells: string[]) =>
  cells.map((c, i) => (i === 0 || i === 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(
    "  ",
  );
console.log(
  `deno-vmm limits: medians of ${ROUNDS} alternating rounds; ratio = our speed / baseline speed ` +
    `(1.00 = C); kernel ${Deno.osRelease()}, Deno ${Deno.version.deno}`,
);
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
let phase = "";
for (const [i, t] of table.entries()) {
  if (rows[i].phase !== phase && phase !== "") console.log("");
  phase = rows[i].phase;
  console.log(line(t));
}
Deno.mkdirSync(OUT, { recursive: true });
Deno.writeTextFileSync(
  `${OUT}/limits.json`,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      kernel: Deno.osRelease(),
      deno: Deno.version.deno,
      cpus: navigator.hardwareConcurrency,
      rounds: ROUNDS,
      mib: MIB,
      bitmapPages: BITMAP_PAGES,
      ratio: "our speed / baseline speed; times are per operation, samples in ns",
      rows,
    },
    null,
    2,
  ) + "\n",
);
console.log(`JSON: bench/out/limits.json`);
