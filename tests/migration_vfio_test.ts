// Migration with the source RAM mapped into a VFIO container (FakeKernel):
// the dirty-scope policy, the pinned scope, and a fault in every VFIO call
// the migration path makes.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { EINVAL, EIO } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { type ForwardedCall, ForwardingSyscalls } from "./forwarding_syscalls.ts";
import { VfioContainer } from "../vfio/container.ts";
import { FakeKernel } from "./fake_kernel.ts";

const MiB = 1 << 20;

/**
 * Counts the calls made once armed, and fails the nth call of one ioctl (or
 * syscall) name; everything else passes through.
 */
class FailNth extends ForwardingSyscalls {
  armed = false;
  readonly counts = new Map<string, number>();
  constructor(
    inner: Syscalls,
    readonly name: string,
    readonly nth: number,
    readonly errno: number,
  ) {
    super(inner);
  }
  #hit(name: string): boolean {
    if (!this.armed) return false;
    const n = (this.counts.get(name) ?? 0) + 1;
    this.counts.set(name, n);
    return name === this.name && n === this.nth;
  }
  override around<T>(call: ForwardedCall, run: () => T): T {
    if (call.syscall === "ioctl" && this.#hit(call.name!)) {
      throw new IoctlError(call.name!, this.errno);
    }
    if (call.syscall === "mmap" && this.#hit("mmap")) throw new SyscallError("mmap", this.errno);
    return run();
  }
}

Deno.test("migrateGuest() refuses an all-mapped container unless told otherwise", async () => {
  const kernel = new FakeKernel();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    const refused = await runMigrationScenario({ ram: 64 * MiB, vfio: { container } });
    assert.equal(refused.report.result, "failed");
    assert.equal(refused.report.failedPhase, "setup");
    assert.match(
      refused.report.error!,
      /all-mapped scope.*vfio-pci.*never converge.*--allow-imprecise-device-dirty/,
    );
    assert.equal(refused.destination.ok, false);
    assert.equal(refused.sourceDigestAfter, refused.sourceDigestBefore);
    const allowed = await runMigrationScenario({
      ram: 64 * MiB,
      vfio: { container },
      imprecise: "allow",
      workload: { pattern: "random", pagesPerSecond: 2_000 },
      // The 64 MiB resent at stop-and-copy must fit the limit on a loaded machine too.
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(allowed.report.result, "completed", allowed.report.error);
    assert.equal(allowed.report.dirtyScope["vfio-container"], "all-mapped");
    assert.match(allowed.report.policy.applied, /imprecise device dirty allowed: 64\.0 MiB/);
    assert.ok(allowed.report.stopCopyPages >= 16384, "every mapped page resent at stop-and-copy");
    assert.equal(allowed.destination.digest, allowed.report.sourceDigest);
    // Later iterations leave the all-mapped pages out: they are not counted dirty.
    for (const row of allowed.report.iterations.slice(1)) assert.ok(row.dirtyPages < 16384);
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("migrateGuest() estimates an all-zero guest's downtime in RAM bytes, and converges", async () => {
  // The bulk pass of 64 MiB of zero pages writes a few KiB; the 64 MiB resent
  // in full at stop-and-copy cost what that pass cost, not 64 MiB at the
  // stream's byte rate.
  const kernel = new FakeKernel();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    const r = await runMigrationScenario({
      ram: 64 * MiB,
      fill: (v) => v.fill(0),
      vfio: { container },
      imprecise: "allow",
      // Room for a loaded machine; the estimate in stream bytes was over 20 000 s.
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    const bulk = r.report.iterations[0];
    assert.equal(bulk.zeroPages, bulk.sentPages, "the bulk pass was all zero pages");
    assert.ok(bulk.bytes < 1 * MiB, `the bulk pass wrote ${bulk.bytes} bytes`);
    assert.ok(
      r.report.expectedDowntimeMs! <= r.report.policy.downtimeLimitMs,
      `expected downtime ${r.report.expectedDowntimeMs} ms`,
    );
    console.log(
      `64 MiB all-zero, all-mapped: bulk pass ${bulk.durationMs.toFixed(1)} ms for ${bulk.bytes} ` +
        `stream bytes; expected downtime ${r.report.expectedDowntimeMs!.toFixed(1)} ms, actual ${
          r.report.downtimeMs!.toFixed(1)
        } ms`,
    );
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("migrateGuest() converges normally in the pinned scope", async () => {
  const kernel = new FakeKernel();
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    // Every group has pinned: the kernel reports the pinned pages only.
    const r = await runMigrationScenario({
      ram: 64 * MiB,
      vfio: { container },
      workload: { pattern: "hotspot", pagesPerSecond: 5_000 },
      beforeMigrate: () => kernel.pin(26, 0x10000n, 0x4000n),
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", r.report.error);
    assert.equal(r.report.dirtyScope["vfio-container"], "precise");
    assert.equal(r.destination.digest, r.report.sourceDigest);
  }
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

async function faultRun(name: string, nth: number) {
  const kernel = new FakeKernel();
  const sys = new FailNth(kernel, name, nth, name === "mmap" ? EIO : EINVAL);
  let r;
  {
    using container = VfioContainer.open({ syscalls: sys });
    using _g = container.attachGroup(26);
    r = await runMigrationScenario({
      ram: 16 * MiB,
      vfio: { container },
      beforeMigrate: () => {
        kernel.pin(26, 0n, 0x1000n);
        sys.armed = true; // count (and fail) only what the migration itself calls
      },
    });
    assert.equal(kernel.liveMappings, 0, `${name} #${nth}: bitmap memory released`);
  }
  assert.equal(kernel.openFds + kernel.dmaMappings, 0, `${name} #${nth}: fds and DMA mappings`);
  return { r, counts: sys.counts };
}

Deno.test("a fault in every VFIO call of the migration path fails cleanly and leaks nothing", async () => {
  const clean = await faultRun("none", 0);
  assert.equal(clean.r.report.result, "completed", clean.r.report.error);
  const path = ["VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_DIRTY_PAGES", "mmap"];
  for (const name of path) assert.ok((clean.counts.get(name) ?? 0) > 0, `the path calls ${name}`);
  for (const name of path) {
    const total = clean.counts.get(name)!;
    for (let nth = 1; nth <= total; nth++) {
      const { r } = await faultRun(name, nth);
      const label = `${name} #${nth} of ${total}`;
      if (r.report.result === "completed") {
        // Only the final STOP may fail after the destination verified the image.
        assert.ok(r.report.warnings?.some((w) => /Cannot stop vfio-container/.test(w)), label);
        assert.equal(r.destination.digest, r.report.sourceDigest, label);
      } else {
        assert.equal(r.destination.ok, false, `${label}: no partial image reported`);
        assert.equal(r.sourceDigestAfter, r.sourceDigestBefore, `${label}: source RAM untouched`);
        assert.match(r.report.error!, /(EINVAL|EIO)/, label);
      }
    }
  }
});
