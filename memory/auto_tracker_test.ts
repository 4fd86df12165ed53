import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { selectDirtyTracker } from "./auto_tracker.ts";
import { GuestMemory } from "./guest_memory.ts";

// On the host (Linux 6.18, root): PAGEMAP_SCAN works, soft-dirty is not
// compiled in. tests/kernel/memory_soft_dirty_test.ts checks the guest.

Deno.test("selectDirtyTracker() picks pagemap-scan on this host", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  const sel = selectDirtyTracker(mem);
  using _t = sel.tracker;
  assert.equal(sel.chosen, "pagemap-scan");
  assert.equal(sel.tracker.kind, "pagemap-scan");
  assert.ok(sel.tracker.active);
  assert.deepEqual(sel.rejected, []);
  mem.writeU8(g(0x4000n), 1);
  assert.deepEqual(sel.tracker.harvest()[0].pageIndexes(), [4]);
});

Deno.test("selectDirtyTracker() rejects soft-dirty as not compiled in and falls back to software", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  const sel = selectDirtyTracker(mem, { order: ["soft-dirty", "software"] });
  using _t = sel.tracker;
  assert.equal(sel.chosen, "software");
  assert.equal(sel.rejected.length, 1);
  assert.equal(sel.rejected[0].kind, "soft-dirty");
  assert.match(sel.rejected[0].reason, /^soft-dirty is not compiled in \(CONFIG_MEM_SOFT_DIRTY\)/);
});

Deno.test("selectDirtyTracker() throws the last failure when nothing in the order works", () => {
  using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  assert.throws(
    () => selectDirtyTracker(mem, { order: ["soft-dirty"] }),
    /soft-dirty is not compiled in/,
  );
});

Deno.test("selectDirtyTracker() picks pagemap-scan for an unprivileged user with vm.unprivileged_userfaultfd=0", async () => {
  // A child running as nobody. Since Linux 5.11 UFFD_USER_MODE_ONLY is allowed
  // unprivileged even with the sysctl at 0, so pagemap-scan must be chosen:
  // this pins that the tracker needs no root.
  const script = `
    import { GuestMemory, selectDirtyTracker } from "${new URL("./mod.ts", import.meta.url)}";
    using mem = GuestMemory.create([{ gpa: 0n, size: 1n << 20n }]);
    const s = selectDirtyTracker(mem);
    console.log(JSON.stringify({ chosen: s.chosen, rejected: s.rejected }));
    s.tracker.stop();
  `;
  const out = await new Deno.Command("setpriv", {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", Deno.execPath(), "eval", script],
    env: { DENO_DIR: "/tmp/deno-vmm-nobody-cache", HOME: "/tmp" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const sel = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.equal(Deno.readTextFileSync("/proc/sys/vm/unprivileged_userfaultfd").trim(), "0");
  assert.equal(sel.chosen, "pagemap-scan", JSON.stringify(sel));
});
