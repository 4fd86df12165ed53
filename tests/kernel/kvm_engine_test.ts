// kernel-profiles: stock-6.1-kvm
// The migration engine driven by the real KVM: KVM's dirty bitmap (or ring)
// merged with the VMM's own writes, the vCPUs as the workload, their state as
// device state. The test guest writes known page lists while pre-copy runs
// (at the end of the bulk pass, and just before stop-and-copy pauses it); each
// source's harvests must hold exactly those pages, what was sent must
// rebuild the source's RAM, and the guest must go on in a second VM from
// what the engine sent. Auto-converge's throttle runs on real vCPUs.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { KvmDirtyLog } from "../../kvm/dirty_log.ts";
import { KvmDirtyRing } from "../../kvm/dirty_ring.ts";
import type { KvmDirtySource } from "../../kvm/dirty_source.ts";
import { GUEST_LAYOUT } from "../../kvm/guest/layout.ts";
import { GuestProgram } from "../../kvm/guest/program.ts";
import { Kvm } from "../../kvm/kvm.ts";
import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { GuestMemory } from "../../memory/guest_memory.ts";
import type { DirtySource } from "../../migration/engine/dirty_source.ts";
import { migrate } from "../../migration/engine/precopy.ts";
import { ramDigest, sourceRam } from "../../migration/guest/guest_ram.ts";
import { KvmGuestDirtySource } from "../../migration/guest/kvm_dirty_source.ts";
import { KVM_STATE_DEVICE_ID, KvmStateDevice } from "../../migration/guest/kvm_state_device.ts";
import { KvmWorkload } from "../../migration/guest/kvm_workload.ts";
import { VmmWriteSource } from "../../migration/guest/vmm_write_source.ts";
import { guestAddress } from "../../sys/address.ts";
import { RecordingSink } from "../_recording_sink.ts";
import { testSeed } from "../_random.ts";
import { until } from "../_support.ts";
import { type BootedGuest, bootGuest, command, dataPageFrame } from "./_kvm.ts";

const RAM = 16n << 20n;
const LIST_PAGE = Number(GUEST_LAYOUT.list / 4096n);
const MAILBOX_PAGE = Number(GUEST_LAYOUT.mailbox / 4096n);

/** A source that keeps the pages each harvest added (call 0 is setup's probe). */
function recorded(source: DirtySource): DirtySource & { harvests: number[][] } {
  const harvests: number[][] = [];
  return {
    name: source.name,
    get scope() {
      return source.scope;
    },
    concurrentSafe: source.concurrentSafe,
    harvests,
    start: () => source.start(),
    stop: () => source.stop(),
    coverInto: (b) => source.coverInto(b),
    harvestInto(bitmaps) {
      const own = bitmaps.map((b) => new DirtyBitmap(b.pages));
      const h = source.harvestInto(own);
      harvests.push(own[0].pageIndexes());
      bitmaps.forEach((b, i) => b.orMerge(own[i]));
      return h;
    },
  };
}

function pageList(seed: number, count: number, pages: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: count }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0) % pages;
  });
}

/**
 * Exactly the data pages of `list` and the guest's own pages; nothing else
 * but its page-table pages (nested paging reports page walks as writes).
 */
function expectGuestPages(got: number[], list: number[], what: string): void {
  const want = new Set([...list.map(dataPageFrame), ...GuestProgram.ownPages()]);
  const tables = new Set(GuestProgram.pageTablePages());
  const missing = [...want].filter((p) => !got.includes(p));
  const extra = got.filter((p) => !want.has(p) && !tables.has(p));
  assert.deepEqual({ missing: missing.slice(0, 10), extra: extra.slice(0, 10) }, {
    missing: [],
    extra: [],
  }, `${what}: exactly the pages the guest wrote`);
}

async function settle(g: BootedGuest, kvm: KvmDirtySource, list: number[]): Promise<void> {
  // KVM reports a page the guest first reads after logging began: read them
  // all (the code, the page list) once, and drop that harvest.
  kvm.start();
  assert.equal(await command(g, "writeList", { pages: list }), undefined);
  kvm.harvestInto(g.vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n))));
}

for (const kind of ["bitmap", "ring"] as const) {
  Deno.test(`migrate() on the real KVM with the dirty ${kind}: exact harvests, the guest goes on from what was sent`, async () => {
    const seed = testSeed();
    console.log(`seed ${seed}`);
    await using g = await bootGuest({
      ramBytes: RAM,
      seed,
      vm: kind === "ring" ? { dirtyRingBytes: 1 << 18 } : {},
    });
    using kvmDirty = kind === "ring" ? new KvmDirtyRing(g.vm) : new KvmDirtyLog(g.vm);
    const [l0, l1] = [1, 2].map((k) => pageList(seed + k, 400, g.guest.dataPages));
    await settle(g, kvmDirty, pageList(seed, 400, g.guest.dataPages));
    const kvmSource = recorded(new KvmGuestDirtySource(kvmDirty, g.vm, g.memory.regions));
    const vmmSource = recorded(new VmmWriteSource(g.memory));
    using vcpus = new KvmWorkload(g.vm);
    const sink = new RecordingSink();
    // At the end of the bulk pass the guest writes one list ...
    sink.onIteration = async (n) => {
      if (n === 0) assert.equal(await command(g, "writeList", { pages: l0 }), undefined);
    };
    const report = await migrate({
      ram: sourceRam(g.memory),
      sink,
      sources: [kvmSource, vmmSource],
      // ... and another just before stop-and-copy pauses it.
      workload: {
        async pause() {
          assert.equal(await command(g, "writeList", { pages: l1 }), undefined);
          await vcpus.pause();
        },
        resume: () => vcpus.resume(),
        setThrottle: (p) => vcpus.setThrottle(p),
      },
      devices: [new KvmStateDevice(g.vm)],
      digest: () => ramDigest(g.memory),
      transport: "recording",
    });
    const why = `seed ${seed}`;
    assert.equal(report.result, "completed", why);
    const k = kvmSource.harvests;
    const v = vmmSource.harvests;
    // Harvest 0 is setup's probe, 1 the end of the bulk pass, the last stop-and-copy's.
    assert.ok(k.length >= 3 && v.length === k.length, why);
    expectGuestPages(k[1], l0, `${why}: KVM after the bulk pass`);
    expectGuestPages(k.at(-1)!, l1, `${why}: KVM at stop-and-copy`);
    const tables = new Set(GuestProgram.pageTablePages());
    for (const between of k.slice(2, -1)) {
      assert.ok(between.every((p) => tables.has(p)), `${why}: an idle guest wrote ${between}`);
    }
    // The VMM wrote the page lists and the commands; KVM never sees those writes.
    assert.deepEqual(v[1], [MAILBOX_PAGE, LIST_PAGE], `${why}: the VMM's writes`);
    assert.deepEqual(v.at(-1), [MAILBOX_PAGE, LIST_PAGE], `${why}: the VMM's writes`);
    for (const between of v.slice(2, -1)) assert.deepEqual(between, [], why);
    const sentAfterBulk = new Set(sink.phases.slice(1).flatMap((p) => p.pages));
    for (const p of [...k[1], ...v[1]]) assert.ok(sentAfterBulk.has(p), `${why}: page ${p} resent`);
    const last = new Set(sink.sent("stop-and-copy"));
    for (const p of [...k.at(-1)!, ...v.at(-1)!]) assert.ok(last.has(p), `${why}: page ${p}`);
    const got = sink.destination!.view(guestAddress(0n), Number(RAM));
    assert.ok(
      Buffer.from(got).equals(Buffer.from(g.memory.readView(guestAddress(0n), Number(RAM)))),
      `${why}: what was sent rebuilds the source's RAM`,
    );

    // The guest goes on in a second VM from the pages and the state sent.
    const counter = g.guest.mailbox().counter;
    using memory2 = GuestMemory.create([{ gpa: guestAddress(0n), size: RAM }]);
    memory2.write(guestAddress(0n), got);
    using kvm = Kvm.open();
    using vm2 = kvm.createVm();
    using _slots = vm2.addMemory(memory2);
    await new KvmStateDevice(vm2).loadState(sink.deviceStates.get(KVM_STATE_DEVICE_ID)!);
    using guest2 = GuestProgram.attach(vm2, vm2.vcpus[0], memory2);
    await vm2.start();
    assert.equal(
      await command({ guest: guest2, vcpu: vm2.vcpus[0] }, "run", { maxWrites: 200 }),
      undefined,
    );
    assert.equal(await command({ guest: guest2, vcpu: vm2.vcpus[0] }, "verify"), undefined);
    const mb = guest2.mailbox();
    assert.ok(
      mb.counter >= counter + 200n,
      `${why}: counter ${mb.counter} goes on from ${counter}`,
    );
    assert.equal(mb.boots, 1n, "it did not boot again");
    assert.equal(mb.checksum, guest2.expectedChecksum(mb.counter));
    assert.equal(mb.verifySum, mb.pageSum);
    await vm2.stop();
    console.log(
      `${kind}: ${report.iterations.length} iterations; counter ${counter} at the stop, ${mb.counter} in the second VM`,
    );
  });
}

Deno.test("KvmWorkload.setThrottle() takes real vCPUs out of KVM_RUN for a share of each period", async () => {
  await using g = await bootGuest({ ramBytes: 8n << 20n, seed: 3 });
  void g.guest.command("run", { pattern: "sequential", maxWrites: 0 });
  assert.ok(await until(() => g.guest.mailbox().counter > 0n, 30_000), "the guest writes");
  using w = new KvmWorkload(g.vm, { timesliceMs: 5 });
  const kicks = g.vcpu.runCounts.interrupted;
  w.setThrottle(50);
  assert.ok(await until(() => w.stats.periods >= 5, 30_000), "five throttle periods");
  w.setThrottle(0);
  assert.ok(g.vcpu.runCounts.interrupted >= kicks + 5, "each period kicked the vCPU out");
  assert.equal(g.vcpu.state, "running", "it runs freely again");
  const c = g.guest.mailbox().counter;
  assert.ok(await until(() => g.guest.mailbox().counter > c, 30_000), "and writes on");
  await w.pause();
  assert.equal(g.vcpu.state, "paused");
  w.resume();
  assert.equal(g.vcpu.state, "running");
});
