import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { GuestMemory } from "./guest_memory.ts";
import { SoftwareDirtyLog } from "./software_dirty_log.ts";
import { checkRandomWrites, checkWorkerWrites } from "./_tracker_checks.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";

// The software log needs nothing of the kernel: every test runs against
// FakeKernel, which also counts that nothing is left open or mapped.

function released(kernel: FakeKernel): void {
  assert.equal(kernel.openFds + kernel.liveMappings, 0, kernel.openFdDescriptions().join());
}

for (
  const [seed, kinds] of [
    [21, ["byte", "page"]],
    [22, ["span2m", "edge"]],
    [23, ["byte", "page", "span2m", "edge"]],
  ] as const
) {
  Deno.test(`SoftwareDirtyLog.harvest() reports exactly random ${kinds.join(", ")} writes`, () => {
    const kernel = new FakeKernel();
    checkRandomWrites("software", { exact: true, seed, kinds: [...kinds], syscalls: kernel });
    released(kernel);
  });
}

for (const pattern of ["random", "sequential", "hotspot"] as const) {
  Deno.test(`SoftwareDirtyLog.harvest() contains every page a Worker wrote through the API (${pattern})`, async () => {
    const kernel = new FakeKernel();
    await checkWorkerWrites("software", { pattern, seed: 31, syscalls: kernel });
    released(kernel);
  });
}

Deno.test("SoftwareDirtyLog.harvest() sees every scalar write and counts views as writes", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }, {
    gpa: g(1n << 20n),
    size: 1n << 20n,
  }]);
  using log = new SoftwareDirtyLog(mem);
  log.start();
  mem.writeU8(g(0x1fffn), 1);
  mem.writeU16(g(0x2fffn), 1); // pages 2 and 3
  mem.writeU32(g(0x10_0000n - 2n), 1); // last page of region 0, first of region 1
  mem.writeU64(g(0x10_5000n), 1n);
  mem.view(g(0x9000n), 0x2001); // pages 9, 10, 11
  mem.readView(g(0x20000n), 4096); // not a write
  const [a, b] = log.harvest();
  assert.deepEqual(a.pageIndexes(), [1, 2, 3, 9, 10, 11, 255]);
  assert.deepEqual(b.pageIndexes(), [0, 5]);
  assert.ok(log.harvest().every((bm) => bm.isEmpty()));
});

Deno.test("SoftwareDirtyLog.stop() stops logging and GuestMemory.close() stops it", () => {
  const kernel = new FakeKernel();
  const mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }], { syscalls: kernel });
  const log = new SoftwareDirtyLog(mem);
  assert.throws(() => log.harvest(), /not started/);
  log.start();
  log.stop();
  mem.writeU8(g(0n), 1);
  log.start();
  assert.ok(log.harvest()[0].isEmpty());
  mem.close();
  assert.equal(log.active, false);
  released(kernel);
});
