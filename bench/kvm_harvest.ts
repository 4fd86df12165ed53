/**
 * KVM benchmarks, as TypeScript / C ratios measured in one run:
 *
 * - harvest cost per GiB at 0, 1 and 100 % dirty of KVM's dirty bitmap
 *   (`KvmDirtyLog`, manual protect) and dirty ring (`KvmDirtyRing`), against
 *   the same kernel calls made from C (bench/c/kvm_harvest.c) on a twin VM
 *   whose test guest writes the same pages; and of PAGEMAP_SCAN (the memory/
 *   tracker, for pages this process writes) against bench/c/memory_harvest.c,
 *   with each source's cost as a ratio to the bitmap's;
 * - pause latency, from `Vm.pause()` to every vCPU parked, while the guest
 *   writes without exiting, against a C thread kicked out of `KVM_RUN` with
 *   `immediate_exit` and `pthread_kill`.
 *
 * ```sh
 * deno run -A bench/kvm_harvest.ts [--mib 32] [--reps 15] [--pauses 50]
 * deno run -A bench/kvm_harvest.ts --help
 * ```
 *
 * Needs a usable /dev/kvm on this host (run it as a user that may open it).
 *
 * @module
 */

import { benchArgs } from "./_args.ts";
import { buildC, median } from "./_limits_common.ts";
import { KvmDirtyLog } from "../kvm/dirty_log.ts";
import { KvmDirtyRing } from "../kvm/dirty_ring.ts";
import { KvmUnavailableError } from "../kvm/errors.ts";
import { buildGuestImage } from "../kvm/guest/build.ts";
import { GuestProgram } from "../kvm/guest/program.ts";
import { Kvm } from "../kvm/kvm.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import type { Vm } from "../kvm/vm.ts";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { pagemapRow } from "./_pagemap_harvest.ts";

const HELP = `deno run -A bench/kvm_harvest.ts [flags]   (the first half of deno task bench:kvm)

KVM as TypeScript / C ratios measured in one run: the harvest cost per GiB
at 0, 1 and 100 % dirty of KVM's dirty bitmap and dirty ring against the same
kernel calls from C (bench/c/kvm_harvest.c) on a twin VM, and of PAGEMAP_SCAN
against bench/c/memory_harvest.c; then the pause latency, Vm.pause() to every
vCPU parked, against a C thread kicked out of KVM_RUN. Prints the tables.

  --mib N       guest RAM is N + 1 MiB, one slot, scaled to per-GiB figures
                (default 32)
  --reps N      harvest repetitions after 3 warm-up ones (default 15)
  --pauses N    pause-latency samples (default 50)
  -h, --help    show this help

Needs a usable /dev/kvm and a C compiler (builds into bench/out/).`;
const { integer } = benchArgs("bench/kvm_harvest.ts", HELP, {
  mib: { type: "string", default: "32" },
  reps: { type: "string", default: "15" },
  pauses: { type: "string", default: "50" },
});
const MIB = integer("mib", 1);
const REPS = integer("reps", 1);
const WARMUP = 3;
const PAUSES = integer("pauses", 1);
const RAM = BigInt(MIB + 1) << 20n;
const RING_BYTES = 1 << 20;

const C = Deno.dlopen(
  buildC("kvm_harvest.c", "kvm_harvest.so", ["-shared", "-fPIC"]),
  {
    dirty_log_harvest: {
      parameters: ["i32", "u32", "u64", "buffer", "i32", "u32"],
      result: "i64",
    },
    dirty_ring_harvest: {
      parameters: ["i32", "pointer", "u32", "buffer", "buffer", "u64"],
      result: "i64",
    },
    kick_latency: { parameters: ["i32", "pointer", "u32", "buffer"], result: "i32" },
  } as const,
).symbols;

function say(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[kvm bench] ${text}\n`));
}

interface Twin {
  memory: GuestMemory;
  vm: Vm;
  vcpu: Vcpu;
  guest: GuestProgram;
  close(): Promise<void>;
}

const image = await buildGuestImage();
let kvm: Kvm;
try {
  kvm = Kvm.open();
} catch (e) {
  if (e instanceof KvmUnavailableError) {
    console.error(e.message);
    Deno.exit(2);
  }
  throw e;
}

async function twin(ring: boolean): Promise<Twin> {
  const memory = GuestMemory.create([{ gpa: guestAddress(0n), size: RAM }]);
  const vm = kvm.createVm(ring ? { dirtyRingBytes: RING_BYTES } : {});
  const slots = vm.addMemory(memory);
  const vcpu = vm.createVcpu();
  const guest = GuestProgram.install(vm, vcpu, memory, { image, seed: 9 });
  await vcpu.start();
  await guest.command("idle");
  return {
    memory,
    vm,
    vcpu,
    guest,
    async close() {
      await vm.stop();
      guest.close();
      vm.close();
      slots[Symbol.dispose]();
      memory.close();
    },
  };
}

const pagesOfSlot = Number(RAM / 4096n);
const perGiB = 2 ** 30 / Number(RAM);

function levelPages(level: number, dataPages: number): number[] | undefined {
  if (level === 0) return undefined;
  if (level === 100) return Array.from({ length: dataPages }, (_, i) => i);
  return Array.from({ length: Math.floor(dataPages / 100) }, (_, i) => i * 100);
}

async function dirty(t: Twin, level: number): Promise<void> {
  const pages = levelPages(level, t.guest.dataPages);
  const stop = pages === undefined
    ? await t.guest.command("idle")
    : await t.guest.command("writeList", { pages });
  if (stop !== undefined) throw stop.error ?? new TypeError("The bench guest stopped");
}

interface Row {
  source: string;
  level: number;
  tsMs: number;
  cMs: number;
  pages: number;
}

async function benchLog(): Promise<Row[]> {
  const a = await twin(false);
  const b = await twin(false);
  const tsLog = new KvmDirtyLog(a.vm);
  tsLog.start();
  const cLog = new KvmDirtyLog(b.vm); // turns logging and manual protect on; C harvests
  cLog.start();
  const manual = cLog.manualProtect ? 1 : 0;
  const cBitmap = new Uint8Array(Math.ceil(pagesOfSlot / 64) * 8);
  const rows: Row[] = [];
  for (const level of [0, 1, 100]) {
    const ts: number[] = [];
    const c: number[] = [];
    let pages = 0;
    for (let rep = -WARMUP; rep < REPS; rep++) {
      for (const side of rep % 2 === 0 ? ["ts", "c"] : ["c", "ts"]) {
        if (side === "ts") {
          await dirty(a, level);
          const bm = [new DirtyBitmap(pagesOfSlot)];
          const t0 = performance.now();
          const h = tsLog.harvestInto(bm);
          if (rep >= 0) ts.push(performance.now() - t0);
          pages = h.dirtyPages;
        } else {
          await dirty(b, level);
          const t0 = performance.now();
          const n = Number(
            C.dirty_log_harvest(b.vm.unsafeFd, 0, BigInt(pagesOfSlot), cBitmap, manual, 32768),
          );
          c.push(performance.now() - t0);
          if (n < 0) throw new TypeError(`C dirty_log_harvest failed: errno ${-n}`);
          if (n !== pages && pages !== 0) say(`bitmap ${level} %: TS saw ${pages} pages, C ${n}`);
        }
      }
    }
    rows.push({ source: "KVM dirty bitmap", level, tsMs: median(ts), cMs: median(c), pages });
  }
  tsLog.stop();
  cLog.stop();
  await a.close();
  await b.close();
  return rows;
}

async function benchRing(): Promise<Row[]> {
  const a = await twin(true);
  const b = await twin(true);
  const tsRing = new KvmDirtyRing(a.vm);
  tsRing.start();
  b.vm.setDirtyLogging(true);
  const ringB = b.vcpu.unsafeDirtyRing!;
  const next = new Uint32Array(1);
  const rows: Row[] = [];
  for (const level of [0, 1, 100]) {
    const ts: number[] = [];
    const c: number[] = [];
    let pages = 0;
    for (let rep = -WARMUP; rep < REPS; rep++) {
      for (const side of rep % 2 === 0 ? ["ts", "c"] : ["c", "ts"]) {
        if (side === "ts") {
          await dirty(a, level);
          const bm = [new DirtyBitmap(pagesOfSlot)];
          const t0 = performance.now();
          const h = tsRing.harvestInto(bm);
          if (rep >= 0) ts.push(performance.now() - t0);
          pages = h.dirtyPages;
        } else {
          await dirty(b, level);
          const bitmap = new Uint8Array(Math.ceil(pagesOfSlot / 64) * 8);
          const t0 = performance.now();
          const n = Number(C.dirty_ring_harvest(
            b.vm.unsafeFd,
            Deno.UnsafePointer.create(ringB.addr),
            RING_BYTES / 16,
            new Uint8Array(next.buffer),
            bitmap,
            BigInt(pagesOfSlot),
          ));
          if (rep >= 0) c.push(performance.now() - t0);
          if (n < 0) throw new TypeError(`C dirty_ring_harvest failed: errno ${-n}`);
        }
      }
    }
    rows.push({ source: "KVM dirty ring", level, tsMs: median(ts), cMs: median(c), pages });
  }
  say(`ring: ${tsRing.fullExits} full exits on the TypeScript side`);
  tsRing.close();
  await a.close();
  await b.close();
  return rows;
}

function until(done: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => done() ? resolve() : setTimeout(check, 1);
    check();
  });
}

async function benchPause(): Promise<{ ts: number[]; c: number[] }> {
  const t = await twin(false);
  void t.guest.command("run", { pattern: "random", maxWrites: 0 });
  const ts: number[] = [];
  for (let i = 0; i < PAUSES; i++) {
    const c0 = t.guest.mailbox().counter;
    await until(() => t.guest.mailbox().counter > c0);
    const t0 = performance.now();
    await t.vm.pause();
    ts.push((performance.now() - t0) * 1000);
    t.vm.resume();
  }
  await t.vm.pause(); // the C thread takes the vCPU over while ours is parked
  const out = new Float64Array(PAUSES);
  const rc = C.kick_latency(
    t.vcpu.unsafeFd,
    Deno.UnsafePointer.create(BigInt(t.vcpu.unsafeRunAddress)),
    PAUSES,
    new Uint8Array(out.buffer),
  );
  if (rc < 0) throw new TypeError(`C kick_latency failed: errno ${-rc}`);
  t.vm.resume();
  await t.close();
  return { ts, c: [...out] };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

say(
  `guest RAM ${MIB + 1} MiB (one slot, ${pagesOfSlot} pages); per-GiB figures scale by ` +
    `${perGiB.toFixed(2)}; ${REPS} reps after ${WARMUP} warm-up`,
);
const rows = [...await benchLog(), ...await benchRing()];
for (const level of [0, 1, 100]) {
  say(`PAGEMAP_SCAN at ${level} %`);
  const r = await pagemapRow(MIB + 1, level, { reps: REPS, warmup: WARMUP });
  rows.push({ source: "PAGEMAP_SCAN (memory/)", level, ...r });
}
const pause = await benchPause();
kvm.close();

console.log("\n| source | dirty | pages | TypeScript ms/GiB | C ms/GiB | TS / C |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(
    `| ${r.source} | ${r.level} % | ${r.pages} | ${(r.tsMs * perGiB).toFixed(3)} | ${
      (r.cMs * perGiB).toFixed(3)
    } | ${(r.tsMs / r.cMs).toFixed(2)} |`,
  );
}
console.log("\n| dirty | ring / bitmap (TS) | PAGEMAP_SCAN / bitmap (TS) | ring / bitmap (C) |");
console.log("|---:|---:|---:|---:|");
for (const level of [0, 1, 100]) {
  const at = (source: string) => rows.find((r) => r.source === source && r.level === level)!;
  const [bm, ring, scan] = [
    at("KVM dirty bitmap"),
    at("KVM dirty ring"),
    at("PAGEMAP_SCAN (memory/)"),
  ];
  console.log(
    `| ${level} % | ${(ring.tsMs / bm.tsMs).toFixed(2)} | ${(scan.tsMs / bm.tsMs).toFixed(2)} | ${
      (ring.cMs / bm.cMs).toFixed(2)
    } |`,
  );
}
console.log("\n| pause latency (µs) | median | p90 | max |");
console.log("|---|---:|---:|---:|");
for (
  const [name, xs] of [["Vm.pause() (TypeScript, Worker + kick)", pause.ts], [
    "C thread, immediate_exit + pthread_kill",
    pause.c,
  ]] as const
) {
  console.log(
    `| ${name} | ${median(xs).toFixed(1)} | ${pct(xs, 0.9).toFixed(1)} | ${
      Math.max(...xs).toFixed(1)
    } |`,
  );
}
console.log(`\nTS / C pause latency (medians): ${(median(pause.ts) / median(pause.c)).toFixed(2)}`);
