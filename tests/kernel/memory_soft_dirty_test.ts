// The soft-dirty tracker against a real CONFIG_MEM_SOFT_DIRTY kernel: the
// harness's Debian 6.1 guest (the project's 6.18 hosts lack soft-dirty, and
// 6.1 lacks PAGEMAP_SCAN). Fails, never skips, outside the guest.
import assert from "node:assert/strict";
import { guestAddress as g } from "../../sys/address.ts";
import { selectDirtyTracker } from "../../memory/auto_tracker.ts";
import { GuestMemory } from "../../memory/guest_memory.ts";
import { probeSoftDirty, SoftDirtyTracker } from "../../memory/soft_dirty_tracker.ts";
import { checkRandomWrites, checkWorkerWrites } from "../../memory/_tracker_checks.ts";
import { inGuest } from "./env.ts";
import { defaultSyscalls } from "../../sys/libc.ts";

function requireGuest(): void {
  assert.ok(
    inGuest(),
    "DENO_VMM_IN_GUEST is not 1: run this with `deno run -A tests/kernel/run.ts " +
      "tests/kernel/memory_soft_dirty_test.ts` (boots the Debian 6.1 guest, whose kernel has soft-dirty)",
  );
}

// The guest runs THP "always": khugepaged may collapse written 4 KiB pages
// into a 2 MiB page whose soft-dirty bit then covers all of it (a documented
// false positive). Turn THP off for this process (prctl PR_SET_THP_DISABLE)
// so the checks below can demand exactly the written pages.
const PR_SET_THP_DISABLE = 41;
assert.equal(defaultSyscalls().prctl(PR_SET_THP_DISABLE, 1n), 0, "prctl(PR_SET_THP_DISABLE)");

Deno.test("probeSoftDirty() finds soft-dirty working in the guest kernel", () => {
  requireGuest();
  assert.deepEqual(probeSoftDirty(), { ok: true });
});

Deno.test("SoftDirtyTracker.harvest() contains random single-byte and page writes", () => {
  requireGuest();
  checkRandomWrites("soft-dirty", { exact: true, seed: 41, kinds: ["byte", "page"] });
});

Deno.test("SoftDirtyTracker.harvest() contains 2 MiB spans and region edges", () => {
  requireGuest();
  checkRandomWrites("soft-dirty", { exact: true, seed: 42, kinds: ["span2m", "edge"] });
});

for (const pattern of ["random", "sequential", "hotspot"] as const) {
  Deno.test(`SoftDirtyTracker.harvest() contains every page a paused Worker wrote (${pattern})`, async () => {
    requireGuest();
    await checkWorkerWrites("soft-dirty", { pattern, seed: 51 });
  });
}

Deno.test("SoftDirtyTracker keeps two trackers' bits apart across clear_refs", () => {
  requireGuest();
  using a = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  using b = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  using ta = new SoftDirtyTracker(a);
  using tb = new SoftDirtyTracker(b);
  ta.start();
  tb.start();
  ta.harvest();
  tb.harvest();
  a.writeU8(g(0x1000n), 1);
  b.writeU8(g(0x2000n), 1);
  assert.ok(ta.harvest()[0].test(1)); // this clear must not lose b's page
  assert.ok(tb.harvest()[0].test(2));
});

Deno.test("selectDirtyTracker() picks soft-dirty in the guest and says why not pagemap-scan", () => {
  requireGuest();
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  const sel = selectDirtyTracker(mem);
  using _t = sel.tracker;
  assert.equal(sel.chosen, "soft-dirty");
  assert.equal(sel.rejected.length, 1);
  assert.equal(sel.rejected[0].kind, "pagemap-scan");
  assert.match(sel.rejected[0].reason, /Linux 6\.7/);
});
