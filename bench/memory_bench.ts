// deno bench --allow-all bench/memory_bench.ts
// Harvest cost of each tracker on 256 MiB and page-copy throughput. For
// ratios against C baselines, run bench/memory_harvest.ts.
import { guestAddress as g } from "../sys/address.ts";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { digestMemory } from "../memory/digest.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { PagemapScanTracker } from "../memory/pagemap_scan_tracker.ts";
import { SoftwareDirtyLog } from "../memory/software_dirty_log.ts";

const SIZE = 256 << 20;
const mem = GuestMemory.create([{ gpa: g(0n), size: BigInt(SIZE) }], { prefault: true });
mem.fill(g(0n), { length: SIZE, value: 1 });
const pages = mem.regions[0].pages;
const raw = mem.readView(g(0n), SIZE);
const into = [new DirtyBitmap(pages)];

function dirtyOnePercent(viaApi: boolean): void {
  for (let i = 0; i < pages / 100; i++) {
    const p = (i * 7919) % pages;
    if (viaApi) mem.writeU8(g(BigInt(p) * 4096n), i);
    else raw[p * 4096] = i;
  }
}

const scan = new PagemapScanTracker(mem);
scan.start();
Deno.bench("PagemapScanTracker.harvest() 256 MiB clean", { group: "harvest clean" }, () => {
  scan.harvest({ into });
});
Deno.bench("PagemapScanTracker.harvest() 256 MiB 1 % dirty", { group: "harvest 1 %" }, (b) => {
  dirtyOnePercent(false);
  b.start();
  scan.harvest({ into });
  b.end();
});

const dst = new Uint8Array(2 << 20);
for (const run of [4096, 65536, 2 << 20]) {
  Deno.bench(`Uint8Array.set() copies 256 MiB in ${run / 1024} KiB runs`, { group: "copy" }, () => {
    for (let off = 0; off < SIZE; off += run) {
      dst.set(raw.subarray(off, off + run), off % dst.length);
    }
  });
}

Deno.bench("digestMemory() 256 MiB crc32-pages", { group: "digest" }, () => {
  digestMemory(mem);
});

Deno.bench("SoftwareDirtyLog.harvest() 256 MiB 1 % dirty", { group: "harvest 1 %" }, (b) => {
  scan.stop();
  const log = new SoftwareDirtyLog(mem);
  log.start();
  dirtyOnePercent(true);
  b.start();
  log.harvest({ into });
  b.end();
  log.stop();
  scan.start();
});
