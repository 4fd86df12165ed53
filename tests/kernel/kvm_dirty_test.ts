// kernel-profiles: stock-6.1-kvm
// KVM's dirty bitmap and dirty ring on the real kernel: the test guest writes
// a known set of pages (a page list, or a RUN whose pages the VMM replays from
// the seed) and each harvest must hold exactly those pages plus the guest's
// own mailbox and stack pages.
import assert from "node:assert/strict";
import { KvmDirtyLog } from "../../kvm/dirty_log.ts";
import { KvmDirtyRing } from "../../kvm/dirty_ring.ts";
import type { KvmDirtySource } from "../../kvm/dirty_source.ts";
import type { GuestPattern } from "../../kvm/guest/layout.ts";
import { GuestProgram } from "../../kvm/guest/program.ts";
import { guestPage, guestValue } from "../../kvm/guest/workload.ts";
import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { type BootedGuest, bootGuest, command, dataPageFrame } from "./_kvm.ts";

/**
 * Starts a source and settles the mappings: KVM maps a page the guest only
 * reads for the first time since logging began as writable and reports it, so
 * the guest first reads what it will read (its page list), and that harvest
 * is dropped.
 */
async function startSettled(g: BootedGuest, source: KvmDirtySource): Promise<void> {
  source.start();
  assert.equal(await command(g, "writeList", { pages: [0] }), undefined);
  harvest(g, source);
}

function harvest(g: BootedGuest, source: KvmDirtySource): number[] {
  const bitmaps = g.vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n)));
  const h = source.harvestInto(bitmaps);
  const pages = bitmaps[0].pageIndexes();
  assert.equal(h.dirtyPages, pages.length);
  return pages;
}

/**
 * The harvest must hold exactly the data pages written, the guest's mailbox
 * and stack, and nothing else but its page-table pages (which nested paging
 * may report: page walks count as writes).
 */
function expectPages(got: number[], dataPages: Iterable<number>, what: string): void {
  const want = new Set([...dataPages].map(dataPageFrame));
  for (const own of GuestProgram.ownPages()) want.add(own);
  const tables = new Set(GuestProgram.pageTablePages());
  const missing = [...want].filter((p) => !got.includes(p)).slice(0, 10);
  const extra = got.filter((p) => !want.has(p) && !tables.has(p)).slice(0, 10);
  assert.deepEqual(
    { missing, extra, count: got.filter((p) => !tables.has(p)).length },
    { missing: [], extra: [], count: want.size },
    `${what}: the harvest must hold exactly the pages the guest wrote`,
  );
}

function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

function pageList(seed: number, count: number, pages: number): number[] {
  const next = seeded(seed);
  return Array.from({ length: count }, () => next() % pages);
}

/** The data pages RUN writes from write number `from` to `to`. */
function runPages(pattern: GuestPattern, g: BootedGuest, from: bigint, to: bigint): Set<number> {
  const pages = new Set<number>();
  for (let i = from; i < to; i++) {
    pages.add(guestPage(pattern, g.guest.dataPages, i, guestValue(g.guest.seed, i)));
  }
  return pages;
}

for (const manualProtect of [true, false]) {
  Deno.test(`KvmDirtyLog on the real KVM is exact (manual protect ${manualProtect})`, async () => {
    const seed = 0x5eed + (manualProtect ? 1 : 0);
    console.log(`seed ${seed}`);
    await using g = await bootGuest({ ramBytes: 16n << 20n, seed });
    using log = new KvmDirtyLog(g.vm, { manualProtect });
    await startSettled(g, log);
    assert.equal(log.manualProtect, manualProtect);
    const list = pageList(seed, 800, g.guest.dataPages);
    assert.equal(await command(g, "writeList", { pages: list }), undefined);
    expectPages(harvest(g, log), list, "a page list");
    for (const pattern of ["sequential", "random", "hotspot"] as const) {
      const from = g.guest.mailbox().counter;
      assert.equal(await command(g, "run", { pattern, maxWrites: 600 }), undefined);
      const to = g.guest.mailbox().counter;
      assert.equal(to - from, 600n);
      expectPages(harvest(g, log), runPages(pattern, g, from, to), `RUN ${pattern}`);
    }
    assert.equal(await command(g, "idle"), undefined);
    expectPages(harvest(g, log), [], "a command that writes no data page");
  });
}

Deno.test("KvmDirtyRing on the real KVM is exact", async () => {
  const seed = 0x7151;
  console.log(`seed ${seed}`);
  await using g = await bootGuest({ ramBytes: 16n << 20n, seed, vm: { dirtyRingBytes: 1 << 18 } });
  using ring = new KvmDirtyRing(g.vm);
  await startSettled(g, ring);
  const list = pageList(seed, 1000, g.guest.dataPages);
  assert.equal(await command(g, "writeList", { pages: list }), undefined);
  expectPages(harvest(g, ring), list, "a page list");
  const from = g.guest.mailbox().counter;
  assert.equal(await command(g, "run", { pattern: "hotspot", maxWrites: 500 }), undefined);
  const to = g.guest.mailbox().counter;
  expectPages(harvest(g, ring), runPages("hotspot", g, from, to), "RUN hotspot");
  console.log(`ring: ${ring.entries} entries per vCPU, ${ring.stats.entries} collected`);
});

Deno.test("KvmDirtyRing handles a full ring (KVM_EXIT_DIRTY_RING_FULL) and stays exact", async () => {
  const seed = 0xf011;
  console.log(`seed ${seed}`);
  // 256 entries, full at 192. Rounds of eight new pages, harvested only at
  // the end, fill it several times; each round is short enough that a kernel
  // that logs a page more than once still stays within the 64-entry reserve.
  await using g = await bootGuest({ ramBytes: 16n << 20n, seed, vm: { dirtyRingBytes: 4096 } });
  using ring = new KvmDirtyRing(g.vm);
  await startSettled(g, ring);
  const all = new Set<number>();
  for (let round = 0; round < 75; round++) {
    const pages = Array.from({ length: 8 }, (_, i) => round * 8 + i);
    for (const p of pages) all.add(p);
    const stop = await command(g, "writeList", { pages });
    assert.equal(stop, undefined, `round ${round}: ${stop?.error?.message}`);
  }
  assert.ok(ring.fullExits >= 1, `the ring filled (${ring.fullExits} full exits)`);
  assert.equal(g.vcpu.exitCounts["dirty-ring-full"], ring.fullExits);
  expectPages(harvest(g, ring), all, "600 pages through a 256-entry ring");
  console.log(`ring: ${ring.fullExits} full exits, ${ring.stats.entries} entries collected`);
});
