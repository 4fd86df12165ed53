// The pagemap-scan tracker. Its exactness is a host-conformance check: it
// needs the host's userfaultfd async write-protect and PAGEMAP_SCAN (Linux
// 6.7), and FakeKernel passes those to the host too (while counting fds and
// mappings and failing calls on request). What fails before reaching the
// host (a refused userfaultfd) runs against the fake alone.
import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { EACCES, EINVAL, EIO, ENOMEM } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import { DirtyTrackerUnavailableError } from "./errors.ts";
import { GuestMemory } from "./guest_memory.ts";
import { PagemapScanTracker } from "./pagemap_scan_tracker.ts";
import { checkRandomWrites, checkWorkerWrites } from "./_tracker_checks.ts";
import { FakeKernel, type FakeKernelOptions } from "../tests/fake_kernel.ts";
import {
  hostConformanceTest,
  type HostNeed,
  PAGEMAP_SCAN_HOST,
  USERFAULTFD_BUILT_IN,
} from "../tests/_host_conformance.ts";

const MiB = 1n << 20n;

function unavailable(pattern: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof DirtyTrackerUnavailableError, String(e));
    assert.equal(e.tracker, "pagemap-scan");
    assert.match(e.reason, pattern);
    return true;
  };
}

Deno.test("PagemapScanTracker.start() names vm.unprivileged_userfaultfd and UFFD_USER_MODE_ONLY when userfaultfd is refused", () => {
  const kernel = new FakeKernel({
    unprivilegedUserfaultfd: 0,
    seccompDeniesUserfaultfd: true,
    deniedPaths: ["/dev/userfaultfd"],
  });
  {
    using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
    using t = new PagemapScanTracker(mem);
    assert.throws(
      () => t.start(),
      unavailable(
        /^userfaultfd\(UFFD_USER_MODE_ONLY\) is not permitted \(EPERM\): vm\.unprivileged_userfaultfd is 0, .* \/dev\/userfaultfd could not be used either \(EACCES\)\. Grant it .*sysctl -w vm\.unprivileged_userfaultfd=1/,
      ),
    );
    assert.equal(t.active, false);
    assert.equal(kernel.openFds, 0, `fds: ${kernel.openFdDescriptions()}`);
    assert.equal(kernel.liveMappings, 1, "only the guest RAM");
  }
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

// Every step of start() failed in turn: the reason names what is missing, and
// nothing is left open or mapped but the guest RAM.
const START_FAULTS: {
  what: string;
  needs?: readonly HostNeed[];
  options?: FakeKernelOptions;
  fail?: [string, number];
  expect: (e: unknown) => boolean;
}[] = [
  {
    what: "UFFDIO_API refuses the async write-protect features",
    needs: [USERFAULTFD_BUILT_IN], // the refusal is injected before the host answers
    fail: ["UFFDIO_API", EINVAL],
    expect: unavailable(/lacks UFFD_FEATURE_WP_ASYNC or UFFD_FEATURE_WP_UNPOPULATED .*6\.7/),
  },
  {
    what: "UFFDIO_REGISTER refuses a region",
    fail: ["UFFDIO_REGISTER", EINVAL],
    expect: unavailable(
      /^UFFDIO_REGISTER in write-protect mode failed for region 0 "ram0" .*EINVAL/,
    ),
  },
  {
    what: "UFFDIO_WRITEPROTECT fails",
    fail: ["UFFDIO_WRITEPROTECT", ENOMEM],
    expect: (e) => e instanceof IoctlError && e.ioctl === "UFFDIO_WRITEPROTECT",
  },
  {
    what: "/proc/self/pagemap cannot be opened",
    options: { deniedPaths: ["/proc/self/pagemap"] },
    expect: unavailable(
      /^cannot set up PAGEMAP_SCAN on \/proc\/self\/pagemap \(open \/proc\/self\/pagemap failed: EACCES/,
    ),
  },
  {
    what: "the scan buffer cannot be mapped",
    fail: ["mmap", ENOMEM],
    expect: unavailable(
      /^cannot set up PAGEMAP_SCAN on \/proc\/self\/pagemap \(mmap failed: ENOMEM/,
    ),
  },
  {
    what: "the kernel has no PAGEMAP_SCAN",
    options: { pagemapScan: false },
    expect: unavailable(
      /lacks the PAGEMAP_SCAN ioctl on \/proc\/self\/pagemap \(Linux 6\.7 or later\)/,
    ),
  },
];

for (const fault of START_FAULTS) {
  hostConformanceTest(
    `PagemapScanTracker.start() fails cleanly when ${fault.what}`,
    PAGEMAP_SCAN_HOST,
    () => {
      const kernel = new FakeKernel(fault.options);
      using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
      if (fault.fail) kernel.failNext(...fault.fail);
      using t = new PagemapScanTracker(mem);
      assert.throws(() => t.start(), fault.expect);
      assert.equal(t.active, false);
      if (fault.fail) {
        assert.ok(kernel.calls.some((c) => c.errno === fault.fail![1]), "the fault was hit");
      }
      assert.equal(kernel.openFds, 0, `fds: ${kernel.openFdDescriptions()}`);
      assert.equal(kernel.liveMappings, 1, "only the guest RAM");
    },
  );
}

hostConformanceTest(
  "PagemapScanTracker.start() falls back to /dev/userfaultfd when the syscall is refused",
  [
    ...PAGEMAP_SCAN_HOST,
    {
      what: "/dev/userfaultfd",
      missing: () => {
        try {
          Deno.statSync("/dev/userfaultfd");
          return undefined;
        } catch {
          return "it does not exist (Linux 6.1 or later makes it)";
        }
      },
    },
  ],
  () => {
    const kernel = new FakeKernel({ seccompDeniesUserfaultfd: true });
    {
      using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
      using t = new PagemapScanTracker(mem);
      t.start();
      assert.ok(kernel.calls.some((c) => c.syscall === "open" && c.name === "/dev/userfaultfd"));
      assert.deepEqual(
        kernel.openFdDescriptions(),
        [
          "userfaultfd via /dev/userfaultfd",
          "file /proc/self/pagemap",
        ].sort((a, b) =>
          kernel.openFdDescriptions().indexOf(a) - kernel.openFdDescriptions().indexOf(b)
        ),
      );
      mem.writeU8(g(0x7000n), 1);
      assert.deepEqual(t.harvest()[0].pageIndexes(), [7]);
    }
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

hostConformanceTest(
  "PagemapScanTracker.harvest() reports exactly random single-byte and page writes",
  PAGEMAP_SCAN_HOST,
  () => {
    checkRandomWrites("pagemap-scan", { exact: true, seed: 1, kinds: ["byte", "page"] });
  },
);

hostConformanceTest(
  "PagemapScanTracker.harvest() reports exactly 2 MiB spans and region edges",
  PAGEMAP_SCAN_HOST,
  () => {
    checkRandomWrites("pagemap-scan", { exact: true, seed: 2, kinds: ["span2m", "edge"] });
  },
);

hostConformanceTest(
  "PagemapScanTracker.harvest() reports exactly a mix of all write kinds, through FakeKernel",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel();
    checkRandomWrites("pagemap-scan", {
      exact: true,
      seed: 3,
      kinds: ["byte", "page", "span2m", "edge"],
      syscalls: kernel,
    });
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

for (const pattern of ["random", "sequential", "hotspot"] as const) {
  hostConformanceTest(
    `PagemapScanTracker.harvest() contains every page a Worker wrote (${pattern})`,
    PAGEMAP_SCAN_HOST,
    async () => {
      await checkWorkerWrites("pagemap-scan", { pattern, seed: 11 });
    },
  );
}

hostConformanceTest(
  "PagemapScanTracker.harvest() contains whole-page Worker writes to anonymous memory",
  PAGEMAP_SCAN_HOST,
  async () => {
    await checkWorkerWrites("pagemap-scan", {
      pattern: "random",
      seed: 12,
      span: "page",
      region: 0,
    });
  },
);

hostConformanceTest(
  "PagemapScanTracker.harvest() reports every page of a fully written region",
  PAGEMAP_SCAN_HOST,
  () => {
    using mem = GuestMemory.create([{ gpa: g(0n), size: 64n << 20n }]);
    using t = new PagemapScanTracker(mem);
    t.start();
    mem.fill(g(0n), { length: 64 << 20, value: 3 });
    const [bm] = t.harvest();
    assert.equal(bm.count(), bm.pages);
    assert.deepEqual([...bm.runs()], [[0, bm.pages]]);
    assert.equal(t.harvest()[0].count(), 0);
  },
);

hostConformanceTest(
  "PagemapScanTracker.harvest() ORs into given bitmaps",
  PAGEMAP_SCAN_HOST,
  () => {
    using mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
    using t = new PagemapScanTracker(mem);
    t.start();
    const into = t.harvest();
    into[0].set(7);
    mem.writeU8(g(0x3000n), 1);
    assert.equal(t.harvest({ into }), into);
    assert.deepEqual(into[0].pageIndexes(), [3, 7]);
  },
);

hostConformanceTest(
  "PagemapScanTracker.harvest() throws PAGEMAP_SCAN's error and stop() still releases",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel();
    using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
    const t = new PagemapScanTracker(mem);
    t.start();
    kernel.failNext("PAGEMAP_SCAN", EIO);
    assert.throws(() => t.harvest(), (e: unknown) => e instanceof IoctlError && e.errno === EIO);
    assert.equal(t.active, true);
    t.stop();
    assert.equal(kernel.openFds, 0);
    assert.equal(kernel.liveMappings, 1, "only the guest RAM");
  },
);

hostConformanceTest(
  "PagemapScanTracker.stop() closes its fds and GuestMemory.close() stops it",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel();
    const mem = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }], { syscalls: kernel });
    const t = new PagemapScanTracker(mem);
    t.start();
    assert.deepEqual(kernel.openFdDescriptions().length, 2, "userfaultfd + pagemap");
    assert.equal(kernel.liveMappings, 2, "the RAM and the scan buffer");
    t.stop();
    t.stop();
    assert.equal(kernel.openFds, 0);
    assert.equal(kernel.liveMappings, 1);
    t.start();
    mem.close();
    assert.equal(t.active, false);
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
    assert.throws(() => t.harvest(), /not started/);
    assert.throws(() => t.start(), /closed memory/);
  },
);

Deno.test("PagemapScanTracker.start() refuses EACCES on /dev/userfaultfd too, leaving nothing open", () => {
  const kernel = new FakeKernel({ seccompDeniesUserfaultfd: true });
  kernel.failNext("open /dev/userfaultfd", EACCES);
  using mem = GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel });
  using t = new PagemapScanTracker(mem);
  assert.throws(() => t.start(), unavailable(/could not be used either \(EACCES\)/));
  assert.equal(kernel.openFds, 0);
});
