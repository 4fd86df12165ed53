import assert from "node:assert/strict";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { FakeKvm } from "../tests/fake/kvm.ts";
import { KvmDirtyLog } from "./dirty_log.ts";
import { Kvm } from "./kvm.ts";

const MiB = 1n << 20n;

function world(options: { manualProtect?: boolean; caps?: Record<number, number> } = {}) {
  const fake = new FakeKvm(options.caps === undefined ? {} : { caps: options.caps });
  const kvm = Kvm.open({ syscalls: fake });
  const memory = GuestMemory.create([
    { gpa: guestAddress(0n), size: 4n * MiB },
    { gpa: guestAddress(16n * MiB), size: MiB },
  ]);
  const vm = kvm.createVm();
  const slots = vm.addMemory(memory);
  const vcpu = vm.createVcpu();
  const log = new KvmDirtyLog(
    vm,
    options.manualProtect === undefined ? {} : { manualProtect: options.manualProtect },
  );
  return {
    fake,
    vm,
    vcpu,
    log,
    memory,
    bitmaps: () => vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n))),
    [Symbol.dispose]() {
      log.stop();
      vm.close();
      slots[Symbol.dispose]();
      memory.close();
      kvm.close();
      assert.equal(fake.openFds, 0);
      assert.equal(fake.liveMappings, 0);
    },
  };
}

async function guestWrites(w: ReturnType<typeof world>, gpas: bigint[]): Promise<void> {
  const done = Promise.withResolvers<void>();
  using _port = w.vm.pio.register({ base: 0x600, length: 1 }, {
    write: () => {
      done.resolve();
      return "pause";
    },
  });
  const v = w.fake.vcpu(0);
  v.script.push(...gpas.map((write) => ({ write, value: write | 1n })), { out: 0x600, value: 0 });
  if (w.vcpu.state === "created") await w.vcpu.start();
  else w.vcpu.resume();
  await done.promise;
  await w.vcpu.pause();
}

for (const manualProtect of [true, false]) {
  Deno.test(`KvmDirtyLog.harvestInto() reports exactly the pages written (manual protect ${manualProtect})`, async () => {
    using w = world({ manualProtect });
    w.log.start();
    assert.equal(w.log.manualProtect, manualProtect);
    const b0 = w.bitmaps();
    assert.equal(w.log.harvestInto(b0).dirtyPages, 0);
    await guestWrites(w, [0x1000n, 0x1008n, 0x3ff000n, 16n * MiB + 0x5000n]);
    const b1 = w.bitmaps();
    const h = w.log.harvestInto(b1);
    assert.deepEqual(h, {
      source: "kvm-dirty-log",
      dirtyPages: 3,
      scope: "precise",
      coveredPages: 1280,
    });
    assert.deepEqual([b1[0].pageIndexes(), b1[1].pageIndexes()], [[1, 1023], [5]]);
    assert.equal(
      w.memory.readU64(guestAddress(0x1008n)),
      0x1009n,
      "the writes landed in guest RAM",
    );
    const b2 = w.bitmaps();
    assert.equal(w.log.harvestInto(b2).dirtyPages, 0, "a harvest resets the log");
    await guestWrites(w, [0x1000n]);
    const b3 = w.bitmaps();
    assert.equal(
      w.log.harvestInto(b3).dirtyPages,
      1,
      "and the page is logged again when rewritten",
    );
  });
}

Deno.test("KvmDirtyLog clears only chunks that hold dirty pages", async () => {
  using w = world();
  w.log.start();
  await guestWrites(w, [0n, 0x3ff000n]);
  w.log.harvestInto(w.bitmaps());
  // Slot 0 has 1024 pages in one 32768-page chunk; slot 1 had nothing.
  assert.deepEqual(w.log.calls, { get: 2, clear: 1 });
  const clears = w.fake.calls.filter((c) => c.name === "KVM_CLEAR_DIRTY_LOG");
  assert.equal(clears.length, 1);
});

Deno.test("KvmDirtyLog uses KVM_GET_DIRTY_LOG alone where the kernel lacks manual protect", async () => {
  using w = world({ caps: { 168: 0 } });
  w.log.start();
  assert.equal(w.log.manualProtect, false);
  await guestWrites(w, [0x2000n]);
  assert.equal(w.log.harvestInto(w.bitmaps()).dirtyPages, 1);
  assert.equal(w.log.calls.clear, 0);
  assert.throws(
    () => new KvmDirtyLog(w.vm, { manualProtect: true }).start(),
    /no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2/,
  );
});

Deno.test("KvmDirtyLog.harvestInto() checks the bitmaps and that it was started", () => {
  using w = world();
  assert.throws(() => w.log.harvestInto(w.bitmaps()), /before start\(\)/);
  w.log.start();
  assert.throws(
    () => w.log.harvestInto([new DirtyBitmap(1024)]),
    /into 1 bitmaps: the VM has 2 slots/,
  );
  assert.throws(
    () => w.log.harvestInto([new DirtyBitmap(1024), new DirtyBitmap(100)]),
    /slot 1 \(256 pages\) into a bitmap of 100 pages/,
  );
  assert.throws(() => new KvmDirtyLog(w.vm, { clearChunkPages: 100 }), RangeError);
});

Deno.test("KvmDirtyLog.coverInto() marks every page; stop() turns logging off and frees buffers", () => {
  using w = world();
  w.log.start();
  w.log.harvestInto(w.bitmaps());
  const b = w.bitmaps();
  w.log.coverInto(b);
  assert.deepEqual(b.map((x) => x.count()), [1024, 256]);
  w.log.stop();
  w.log.stop();
  assert.equal(w.vm.dirtyLogging, false);
  assert.equal(w.fake.liveMappings, 1, "only kvm_run stays mapped");
});
