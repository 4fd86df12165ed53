// PAGEMAP_SCAN (the memory/ tracker: userfaultfd async write-protect and the
// PAGEMAP_SCAN ioctl) harvest cost against C making the same calls
// (bench/c/memory_harvest.c), at a dirty level, for bench/kvm_harvest.ts's
// table: the CPU-side tracker beside KVM's bitmap and ring.

import { buildC, median } from "./_limits_common.ts";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { PagemapScanTracker } from "../memory/pagemap_scan_tracker.ts";
import { guestAddress } from "../sys/address.ts";

/** One level's medians, ms per harvest of `mib` MiB. */
export interface PagemapRow {
  tsMs: number;
  cMs: number;
  pages: number;
}

let bin: string | undefined;

function dirtyPages(bytes: Uint8Array, pages: number, level: number): void {
  // Every 100th page at 1 %, as the KVM rows' guest writes them.
  const step = level === 100 ? 1 : 100;
  for (let p = 0; p < pages; p += step) bytes[p * 4096] ^= 1;
}

function harvestTs(mib: number, level: number, reps: number, warmup: number): number[] {
  using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(mib) << 20n }]);
  const r = mem.regions[0];
  mem.fill(r.gpa, { length: mib << 20, value: 1 });
  using tracker = new PagemapScanTracker(mem);
  tracker.start();
  const into = [new DirtyBitmap(r.pages)];
  tracker.harvest({ into });
  const bytes = mem.readView(r.gpa, Number(r.size));
  const ms: number[] = [];
  for (let i = 0; i < reps + warmup; i++) {
    if (level > 0) dirtyPages(bytes, r.pages, level);
    into[0].clearAll();
    const t0 = performance.now();
    tracker.harvest({ into });
    if (i >= warmup) ms.push(performance.now() - t0);
  }
  return ms;
}

async function harvestC(mib: number, level: number, reps: number): Promise<number[]> {
  bin ??= buildC("memory_harvest.c", "memory_harvest");
  const r = await new Deno.Command(bin, {
    args: ["pagemap-scan", String(mib), String(level), String(reps)],
  }).output();
  if (!r.success) {
    throw new TypeError(`C pagemap-scan failed: ${new TextDecoder().decode(r.stderr)}`);
  }
  return (JSON.parse(new TextDecoder().decode(r.stdout)).ns as number[]).map((ns) => ns / 1e6);
}

/** PAGEMAP_SCAN harvest medians at one level, C and TypeScript rounds alternated. */
export async function pagemapRow(
  mib: number,
  level: number,
  options: { reps: number; warmup: number },
): Promise<PagemapRow> {
  const ts: number[] = [];
  const c: number[] = [];
  for (let round = 0; round < 3; round++) {
    c.push(...await harvestC(mib, level, options.reps));
    ts.push(...harvestTs(mib, level, options.reps, options.warmup));
  }
  const pages = level === 0 ? 0 : level === 100 ? mib * 256 : Math.ceil((mib * 256) / 100);
  return { tsMs: median(ts), cMs: median(c), pages };
}
