// On the host (Linux 6.18 without CONFIG_MEM_SOFT_DIRTY). The real soft-dirty
// test runs in the Debian 6.1 guest: tests/kernel/memory_soft_dirty_test.ts.
import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { DirtyTrackerUnavailableError } from "./errors.ts";
import { GuestMemory } from "./guest_memory.ts";
import { probeSoftDirty, SoftDirtyTracker } from "./soft_dirty_tracker.ts";
import { openFdCount } from "../tests/_memory_support.ts";

function hostKernelHasSoftDirty(): boolean {
  // The project's host kernels are built without it; the Debian guest has it.
  return Deno.env.get("DENO_VMM_IN_GUEST") === "1";
}

Deno.test("probeSoftDirty() reports that soft-dirty is not compiled in on this host", () => {
  assert.equal(
    hostKernelHasSoftDirty(),
    false,
    "this test is for the host; the guest runs tests/kernel/",
  );
  const fds = openFdCount();
  const probe = probeSoftDirty();
  assert.equal(probe.ok, false);
  assert.match(
    (probe as { reason: string }).reason,
    /^soft-dirty is not compiled in \(CONFIG_MEM_SOFT_DIRTY\) on kernel .*: \/proc\/self\/clear_refs accepted "4" but pagemap bit 55 stayed clear after a write$/,
  );
  assert.equal(openFdCount(), fds);
});

Deno.test("SoftDirtyTracker.start() throws DirtyTrackerUnavailableError on this host", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  using t = new SoftDirtyTracker(mem);
  assert.throws(() => t.start(), (e: Error) => {
    assert.ok(e instanceof DirtyTrackerUnavailableError);
    assert.equal(e.tracker, "soft-dirty");
    assert.match(
      e.message,
      /^Cannot use the soft-dirty dirty tracker: soft-dirty is not compiled in/,
    );
    return true;
  });
  assert.equal(t.active, false);
  assert.throws(() => t.harvest(), /not started/);
});
