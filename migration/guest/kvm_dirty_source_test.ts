import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { KvmDirtyLog } from "../../kvm/dirty_log.ts";
import { KvmDirtyRing } from "../../kvm/dirty_ring.ts";
import { Kvm } from "../../kvm/kvm.ts";
import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { GuestMemory } from "../../memory/guest_memory.ts";
import { guestAddress } from "../../sys/address.ts";
import { FakeKvm } from "../../tests/fake/kvm.ts";
import { RecordingSink } from "../../tests/_recording_sink.ts";
import { testSeed } from "../../tests/_random.ts";
import { migrate } from "../engine/precopy.ts";
import { ramDigest, sourceRam } from "./guest_ram.ts";
import { KvmGuestDirtySource } from "./kvm_dirty_source.ts";
import { VmmWriteSource } from "./vmm_write_source.ts";

const MiB = 1n << 20n;

function bitmapsOf(memory: GuestMemory): DirtyBitmap[] {
  return memory.regions.map((r) => new DirtyBitmap(r.pages));
}

Deno.test("KvmGuestDirtySource.harvestInto() puts each slot's pages into its region", () => {
  const fake = new FakeKvm();
  using memory = GuestMemory.create([
    { gpa: guestAddress(0n), size: 2n * MiB },
    { gpa: guestAddress(8n * MiB), size: 4n * MiB },
  ]);
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  const [low, high] = memory.regions;
  // Region 0 whole; of region 1 only its second MiB (a slot inside a region),
  // and its first MiB read-only (the guest cannot write it).
  using _a = vm.addMemory({ regions: [low] });
  using _b = vm.addMemory({
    regions: [{ gpa: high.gpa + MiB, size: MiB, hostAddress: high.hostAddress + MiB }],
  });
  using _c = vm.addMemory({
    regions: [{ gpa: high.gpa, size: MiB, hostAddress: high.hostAddress }],
  }, { readonly: true });
  using log = new KvmDirtyLog(vm);
  const source = new KvmGuestDirtySource(log, vm, memory.regions);
  assert.equal(source.name, "kvm-dirty-log");
  source.start();
  for (const gpa of [0x3000n, 0x1f_f000n, 9n * MiB + 0x5000n, 10n * MiB - 0x1000n]) {
    assert.ok(fake.vm().guestWrite(gpa, 1n, 8, undefined));
  }
  const bitmaps = bitmapsOf(memory);
  const h = source.harvestInto(bitmaps);
  assert.deepEqual(bitmaps[0].pageIndexes(), [3, 511]);
  assert.deepEqual(bitmaps[1].pageIndexes(), [256 + 5, 511]);
  assert.equal(h.dirtyPages, 4);
  assert.equal(h.coveredPages, 512 + 256, "the read-only slot is not covered");
  const again = bitmapsOf(memory);
  assert.equal(source.harvestInto(again).dirtyPages, 0, "a harvest resets the log");
  const covered = bitmapsOf(memory);
  source.coverInto(covered);
  assert.equal(covered[0].count(), 512);
  assert.deepEqual([covered[1].pageIndexes()[0], covered[1].count()], [256, 256]);
  source.stop();
  assert.equal(vm.dirtyLogging, false);
});

Deno.test("KvmGuestDirtySource() refuses a slot outside every guest RAM region", () => {
  const fake = new FakeKvm();
  using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: 2n * MiB }]);
  using other = GuestMemory.create([{ gpa: guestAddress(16n * MiB), size: MiB }]);
  using kvm = Kvm.open({ syscalls: fake });
  using vm = kvm.createVm();
  using _a = vm.addMemory(memory);
  using _b = vm.addMemory(other);
  using log = new KvmDirtyLog(vm);
  assert.throws(
    () => new KvmGuestDirtySource(log, vm, memory.regions),
    /Cannot harvest KVM slot 1 \(\[0x1000000, 0x1100000\)\) into the migration: it lies in no guest RAM region/,
  );
});

for (const kind of ["log", "ring"] as const) {
  Deno.test(`migrate() with KVM's dirty ${kind} and the VMM's writes sends exactly the pages written`, async () => {
    const seed = testSeed();
    let x = seed || 1;
    const next = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>>= 0);
    };
    const fake = new FakeKvm();
    using memory = GuestMemory.create([
      { gpa: guestAddress(0n), size: 4n * MiB },
      { gpa: guestAddress(8n * MiB), size: 2n * MiB },
    ], { backing: "memfd" });
    using kvm = Kvm.open({ syscalls: fake });
    using vm = kvm.createVm(kind === "ring" ? { dirtyRingBytes: 1 << 16 } : {});
    using _slots = vm.addMemory(memory);
    using _vcpu = vm.createVcpu();
    using kvmSource = kind === "log" ? new KvmDirtyLog(vm) : new KvmDirtyRing(vm);
    const ring = kind === "ring" ? fake.vcpu(0).ring : undefined;
    const pages = memory.regions.flatMap((r) =>
      Array.from({ length: r.pages }, (_, i) => Number(r.gpa / 4096n) + i)
    );
    const pick = (n: number) => Array.from({ length: n }, () => pages[next() % pages.length]);
    const written: { guest: Set<number>; vmm: Set<number> }[] = [];
    const write = () => {
      const round = { guest: new Set(pick(40)), vmm: new Set(pick(6)) };
      for (const p of round.guest) {
        assert.ok(fake.vm().guestWrite(BigInt(p) * 4096n + 8n, BigInt(next()) | 1n, 8, ring));
      }
      for (const p of round.vmm) memory.writeU32(guestAddress(BigInt(p) * 4096n + 16n), next());
      written.push(round);
    };
    const sink = new RecordingSink();
    // Writes at an iteration's marker are harvested at its end and sent in
    // the next iteration; after three rounds nothing is dirty and pre-copy
    // stops; the workload's pause writes a last round for stop-and-copy.
    sink.onIteration = (n) => {
      if (n < 3) write();
    };
    const report = await migrate({
      ram: sourceRam(memory),
      sink,
      sources: [new KvmGuestDirtySource(kvmSource, vm, memory.regions), new VmmWriteSource(memory)],
      workload: {
        pause: () => Promise.resolve(write()),
        resume: () => {},
        setThrottle: () => {},
      },
      limits: { downtimeLimitMs: 1e-9 },
      digest: () => ramDigest(memory),
      transport: "recording",
    });
    const why = `seed ${seed}`;
    assert.equal(report.result, "completed", why);
    assert.deepEqual(sink.phases.map((p) => p.name), [
      "iteration 0",
      "iteration 1",
      "iteration 2",
      "iteration 3",
      "stop-and-copy",
    ]);
    const union = (r: { guest: Set<number>; vmm: Set<number> }) =>
      [...new Set([...r.guest, ...r.vmm])].sort((a, b) => a - b);
    for (let n = 0; n < 3; n++) {
      const row = report.iterations[n];
      assert.deepEqual(row.dirtyPagesBySource, {
        [kvmSource.name]: written[n].guest.size,
        "vmm-writes": written[n].vmm.size,
      }, `${why}: iteration ${n}`);
      assert.deepEqual(
        sink.sent(`iteration ${n + 1}`),
        union(written[n]),
        `${why}: iteration ${n}`,
      );
    }
    assert.equal(report.iterations[3].dirtyPages, 0);
    assert.deepEqual(sink.sent("stop-and-copy"), union(written[3]), why);
    for (const r of memory.regions) {
      const got = sink.destination!.view(r.gpa, Number(r.size));
      const want = memory.readView(r.gpa, Number(r.size));
      assert.ok(
        Buffer.from(got).equals(Buffer.from(want)),
        `${why}: region ${r.index} arrived whole`,
      );
    }
    assert.equal(vm.dirtyLogging, false, "the sources stopped");
  });
}
