import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { selectDirtyTracker } from "./auto_tracker.ts";
import { GuestMemory } from "./guest_memory.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import {
  hostConformanceTest,
  PAGEMAP_SCAN_HOST,
  program,
  ROOT,
  sysctlIs,
} from "../tests/_host_conformance.ts";

const MiB = 1n << 20n;

Deno.test("selectDirtyTracker() rejects pagemap-scan and soft-dirty with their reasons and falls back to software", () => {
  const kernel = new FakeKernel({
    softDirty: false,
    unprivilegedUserfaultfd: 0,
    seccompDeniesUserfaultfd: true,
    deniedPaths: ["/dev/userfaultfd"],
  });
  {
    using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
    const sel = selectDirtyTracker(mem);
    using _t = sel.tracker;
    assert.equal(sel.chosen, "software");
    assert.deepEqual(sel.rejected.map((r) => r.kind), ["pagemap-scan", "soft-dirty"]);
    assert.match(
      sel.rejected[0].reason,
      /^userfaultfd\(UFFD_USER_MODE_ONLY\) is not permitted \(EPERM\): vm\.unprivileged_userfaultfd is 0, /,
    );
    assert.match(
      sel.rejected[1].reason,
      /^soft-dirty is not compiled in \(CONFIG_MEM_SOFT_DIRTY\)/,
    );
    mem.writeU8(g(0x4000n), 1);
    assert.deepEqual(sel.tracker.harvest()[0].pageIndexes(), [4]);
    assert.equal(kernel.openFds, 0, `fds: ${kernel.openFdDescriptions()}`);
  }
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

Deno.test("selectDirtyTracker() throws the last failure when nothing in the order works", () => {
  const kernel = new FakeKernel({ softDirty: false });
  using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
  assert.throws(
    () => selectDirtyTracker(mem, { order: ["soft-dirty"] }),
    /soft-dirty is not compiled in/,
  );
  assert.throws(() => selectDirtyTracker(mem, { order: [] }), RangeError);
  assert.equal(kernel.openFds, 0);
});

hostConformanceTest(
  "selectDirtyTracker() picks soft-dirty where PAGEMAP_SCAN is missing",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel({ softDirty: true, pagemapScan: false });
    {
      using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
      const sel = selectDirtyTracker(mem);
      using _t = sel.tracker;
      assert.equal(sel.chosen, "soft-dirty");
      assert.deepEqual(sel.rejected.map((r) => r.kind), ["pagemap-scan"]);
      assert.match(sel.rejected[0].reason, /lacks the PAGEMAP_SCAN ioctl .*Linux 6\.7/);
      mem.writeU8(g(0x4000n), 1);
      assert.deepEqual(sel.tracker.harvest()[0].pageIndexes(), [4]);
    }
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

hostConformanceTest(
  "selectDirtyTracker() picks pagemap-scan on this host",
  PAGEMAP_SCAN_HOST,
  () => {
    using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }]);
    const sel = selectDirtyTracker(mem);
    using _t = sel.tracker;
    assert.equal(sel.chosen, "pagemap-scan");
    assert.equal(sel.tracker.kind, "pagemap-scan");
    assert.ok(sel.tracker.active);
    assert.deepEqual(sel.rejected, []);
    mem.writeU8(g(0x4000n), 1);
    assert.deepEqual(sel.tracker.harvest()[0].pageIndexes(), [4]);
  },
);

hostConformanceTest(
  "selectDirtyTracker() picks pagemap-scan for user nobody with vm.unprivileged_userfaultfd=0",
  [
    ...PAGEMAP_SCAN_HOST,
    ROOT, // to run the child as uid 65534
    program("setpriv"),
    sysctlIs("/proc/sys/vm/unprivileged_userfaultfd", "0"),
  ],
  async () => {
    // Since Linux 5.11 UFFD_USER_MODE_ONLY is allowed unprivileged even with the
    // sysctl at 0, so pagemap-scan must be chosen: this pins that the tracker
    // needs no root.
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
    assert.equal(sel.chosen, "pagemap-scan", JSON.stringify(sel));
  },
);
