// The soft-dirty tracker against FakeKernel: without soft-dirty (as on this
// project's 6.18 hosts) and its failures, deterministically; with soft-dirty
// modelled by the fake (which finds the writes with the host's userfaultfd
// write-protect and PAGEMAP_SCAN, hence those needs). Against a real
// CONFIG_MEM_SOFT_DIRTY kernel it runs in the Debian 6.1 guest
// (tests/kernel/memory_soft_dirty_test.ts); here a host-conformance test
// checks the probe against the host kernel's own configuration.
import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { EIO, ENOMEM } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { DirtyTrackerUnavailableError } from "./errors.ts";
import { GuestMemory } from "./guest_memory.ts";
import { probeSoftDirty, SoftDirtyTracker } from "./soft_dirty_tracker.ts";
import { checkRandomWrites } from "./_tracker_checks.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import {
  hostConformanceTest,
  kernelConfigReadable,
  kernelHas,
  PAGEMAP_SCAN_HOST,
} from "../tests/_host_conformance.ts";

const MiB = 1n << 20n;
const NOT_COMPILED_IN =
  /^soft-dirty is not compiled in \(CONFIG_MEM_SOFT_DIRTY\) on kernel .+: \/proc\/self\/clear_refs accepted "4" but pagemap bit 55 stayed clear after a write$/;

Deno.test("probeSoftDirty() reports a kernel without soft-dirty, leaving nothing open", () => {
  const kernel = new FakeKernel({ softDirty: false });
  const probe = probeSoftDirty({ syscalls: kernel });
  assert.equal(probe.ok, false);
  assert.match((probe as { reason: string }).reason, NOT_COMPILED_IN);
  assert.ok(kernel.calls.some((c) => c.syscall === "write" && c.name === "/proc/self/clear_refs"));
  assert.ok(kernel.calls.some((c) => c.syscall === "pread" && c.name === "/proc/self/pagemap"));
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

Deno.test("SoftDirtyTracker.start() throws DirtyTrackerUnavailableError without soft-dirty", () => {
  const kernel = new FakeKernel({ softDirty: false });
  {
    using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
    using t = new SoftDirtyTracker(mem);
    assert.throws(() => t.start(), (e: Error) => {
      assert.ok(e instanceof DirtyTrackerUnavailableError);
      assert.equal(e.tracker, "soft-dirty");
      assert.match(e.reason, NOT_COMPILED_IN);
      return true;
    });
    assert.equal(t.active, false);
    assert.throws(() => t.harvest(), /not started/);
  }
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

for (
  const { what, kernel, reason } of [
    {
      what: "clear_refs cannot be written",
      kernel: () => new FakeKernel({ softDirty: true, deniedPaths: ["/proc/self/clear_refs"] }),
      reason:
        /^cannot write "4" to \/proc\/self\/clear_refs \(open \/proc\/self\/clear_refs failed: EACCES/,
    },
    {
      what: "pagemap cannot be read",
      kernel: () => new FakeKernel({ softDirty: true, deniedPaths: ["/proc/self/pagemap"] }),
      reason: /^cannot read \/proc\/self\/pagemap \(open \/proc\/self\/pagemap failed: EACCES/,
    },
    {
      what: "the probe page cannot be mapped",
      kernel: () => new FakeKernel({ softDirty: true }).failNext("mmap", ENOMEM),
      reason: /^cannot map a scratch page for the probe \(mmap failed: ENOMEM/,
    },
  ]
) {
  Deno.test(`probeSoftDirty() says why when ${what}, leaving nothing open`, () => {
    const k = kernel();
    const probe = probeSoftDirty({ syscalls: k });
    assert.equal(probe.ok, false);
    assert.match((probe as { reason: string }).reason, reason);
    assert.equal(k.openFds, 0, `fds: ${k.openFdDescriptions()}`);
    assert.equal(k.liveMappings, 0);
  });
}

hostConformanceTest(
  "SoftDirtyTracker.harvest() reports exactly random writes on a soft-dirty kernel",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel({ softDirty: true });
    checkRandomWrites("soft-dirty", {
      exact: true,
      seed: 41,
      kinds: ["byte", "page", "span2m", "edge"],
      syscalls: kernel,
    });
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

hostConformanceTest(
  "SoftDirtyTracker.harvest() of one tracker keeps another's pages (clear_refs is process-wide)",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel({ softDirty: true });
    {
      using a = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
      using b = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
      using ta = new SoftDirtyTracker(a);
      using tb = new SoftDirtyTracker(b);
      ta.start();
      tb.start();
      a.writeU8(g(0x1000n), 1);
      b.writeU8(g(0x5000n), 1);
      assert.deepEqual(ta.harvest()[0].pageIndexes(), [1]); // clears b's bits too
      b.writeU8(g(0x6000n), 1);
      assert.deepEqual(tb.harvest()[0].pageIndexes(), [5, 6]);
      assert.deepEqual(ta.harvest()[0].pageIndexes(), []);
      assert.deepEqual(kernel.openFdDescriptions(), ["file /proc/self/pagemap"], "one shared fd");
      ta.stop();
      assert.equal(kernel.openFds, 1, "still shared by the other tracker");
      tb.stop();
      assert.equal(kernel.openFds, 0);
    }
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

hostConformanceTest(
  "SoftDirtyTracker.harvest() throws a failed pagemap read, and stop() still releases",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel({ softDirty: true });
    {
      using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
      using t = new SoftDirtyTracker(mem);
      t.start();
      kernel.failNext("pread /proc/self/pagemap", EIO);
      assert.throws(
        () => t.harvest(),
        (e: unknown) =>
          e instanceof SyscallError && e.errno === EIO && e.path === "/proc/self/pagemap",
      );
      mem.writeU8(g(0n), 1);
      assert.deepEqual(t.harvest()[0].pageIndexes(), [0]);
      mem.close(); // stops the tracker
      assert.equal(t.active, false);
    }
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

hostConformanceTest("probeSoftDirty() agrees with the kernel's CONFIG_MEM_SOFT_DIRTY", [
  kernelConfigReadable(),
], () => {
  const probe = probeSoftDirty();
  if (kernelHas("CONFIG_MEM_SOFT_DIRTY")) {
    assert.deepEqual(probe, { ok: true });
  } else {
    assert.equal(probe.ok, false);
    assert.match((probe as { reason: string }).reason, NOT_COMPILED_IN);
  }
});
