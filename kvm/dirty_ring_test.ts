import assert from "node:assert/strict";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { FAKE_RING_RESERVED, FakeKvm } from "../tests/fake/kvm.ts";
import { KvmDirtyRing } from "./dirty_ring.ts";
import { Kvm } from "./kvm.ts";

const MiB = 1n << 20n;

function world(ringBytes: number) {
  const fake = new FakeKvm();
  const kvm = Kvm.open({ syscalls: fake });
  const memory = GuestMemory.create([{ gpa: guestAddress(0n), size: 8n * MiB }]);
  const vm = kvm.createVm({ dirtyRingBytes: ringBytes });
  const slots = vm.addMemory(memory);
  const vcpu = vm.createVcpu();
  const ring = new KvmDirtyRing(vm);
  return {
    fake,
    vm,
    vcpu,
    ring,
    bitmaps: () => vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n))),
    [Symbol.dispose]() {
      ring.close();
      vm.close();
      slots[Symbol.dispose]();
      memory.close();
      kvm.close();
      assert.equal(fake.openFds, 0);
      assert.equal(fake.liveMappings, 0);
    },
  };
}

async function guestWrites(w: ReturnType<typeof world>, pages: number[]): Promise<void> {
  const done = Promise.withResolvers<void>();
  using _port = w.vm.pio.register({ base: 0x600, length: 1 }, {
    write: () => {
      done.resolve();
      return "pause";
    },
  });
  w.fake.vcpu(0).script.push(
    ...pages.map((p) => ({ write: BigInt(p) * 4096n + 8n })),
    { out: 0x600, value: 0 },
  );
  if (w.vcpu.state === "created") await w.vcpu.start();
  else w.vcpu.resume();
  await done.promise;
  await w.vcpu.pause();
}

Deno.test("KvmDirtyRing.harvestInto() reports exactly the pages written, and resets the ring", async () => {
  using w = world(65536);
  assert.equal(w.ring.entries, 4096);
  w.ring.start();
  await guestWrites(w, [3, 3, 9, 2047, 500]);
  const b = w.bitmaps();
  const h = w.ring.harvestInto(b);
  assert.deepEqual(h, {
    source: "kvm-dirty-ring",
    dirtyPages: 4,
    scope: "precise",
    coveredPages: 2048,
  });
  assert.deepEqual(b[0].pageIndexes(), [3, 9, 500, 2047]);
  assert.deepEqual(w.ring.stats, { entries: 4, resets: 1 });
  assert.equal(
    w.fake.vcpu(0).ring?.resetIndex,
    4,
    "KVM_RESET_DIRTY_RINGS reset the harvested entries",
  );
  assert.equal(w.ring.harvestInto(w.bitmaps()).dirtyPages, 0);
  await guestWrites(w, [9]);
  assert.deepEqual(w.ring.harvestInto(w.bitmaps()).dirtyPages, 1, "a re-protected page logs again");
});

Deno.test("KvmDirtyRing handles KVM_EXIT_DIRTY_RING_FULL and the harvest stays exact", async () => {
  using w = world(4096); // 256 entries, soft-full at 192
  w.ring.start();
  const pages = Array.from({ length: 700 }, (_, i) => (i * 7) % 2048);
  await guestWrites(w, pages);
  assert.equal(w.ring.fullExits, Math.floor(700 / (256 - FAKE_RING_RESERVED)));
  assert.equal(w.vcpu.exitCounts["dirty-ring-full"], w.ring.fullExits);
  const b = w.bitmaps();
  assert.equal(w.ring.harvestInto(b).dirtyPages, new Set(pages).size);
  assert.deepEqual(b[0].pageIndexes(), [...new Set(pages)].sort((x, y) => x - y));
});

Deno.test("KvmDirtyRing refuses a VM without a ring, and a second harvester", () => {
  const fake = new FakeKvm();
  using kvm = Kvm.open({ syscalls: fake });
  using plain = kvm.createVm();
  assert.throws(() => new KvmDirtyRing(plain), /made without dirtyRingBytes/);
  using vm = kvm.createVm({ dirtyRingBytes: 4096 });
  using first = new KvmDirtyRing(vm);
  assert.throws(() => new KvmDirtyRing(vm), /has a KvmDirtyRing/);
  first.close();
  using _second = new KvmDirtyRing(vm);
  assert.throws(() => _second.harvestInto([]), /before start\(\)/);
});

Deno.test("Vcpu stops on a full ring when the VM has no KvmDirtyRing", async () => {
  using w = world(4096);
  w.ring.close();
  w.vm.setDirtyLogging(true);
  w.fake.vcpu(0).script.push(
    ...Array.from({ length: 300 }, (_, p) => ({ write: BigInt(p) * 4096n })),
  );
  await w.vcpu.start();
  const stop = await w.vcpu.stopped;
  assert.match(stop.error?.message ?? "", /stopped on KVM_EXIT_DIRTY_RING_FULL/);
});
