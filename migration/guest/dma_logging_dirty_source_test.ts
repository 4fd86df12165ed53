// DmaLoggingDirtySource against FakeKernel and FakeDmaLoggingDevice: exact
// sets, nothing outside START..STOP, clear on read, chunked reports, merged
// ranges, STOP on failure, and the EOPNOTSUPP fallback.
import assert from "node:assert/strict";
import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { E2BIG, EINVAL, EIO, EOVERFLOW } from "../../sys/errno.ts";
import { IoctlError } from "../../sys/errors.ts";
import {
  mergeDmaLoggingRanges,
  reportDmaLogging,
  startDmaLogging,
} from "../../vfio/device_dma_logging.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../../vfio/errors.ts";
import {
  FakeDmaLoggingDevice,
  type FakeDmaLoggingDeviceOptions,
  FakeKernel,
} from "../../tests/fake_kernel.ts";
import { assertFds, Opened } from "../../tests/_migration_world.ts";
import { seeded, testSeed } from "../../tests/_random.ts";
import { DmaLoggingDirtySource } from "./dma_logging_dirty_source.ts";

const DEV = "0000:00:03.0";
const MiB = 1n << 20n;
// Two regions with a hole, as below and above a PCI hole.
const REGIONS = [{ gpa: 0n, size: 4n * MiB }, { gpa: 8n * MiB, size: 2n * MiB }];

function world(options: FakeDmaLoggingDeviceOptions = {}) {
  const log = new FakeDmaLoggingDevice(options);
  const kernel = new FakeKernel({ groups: [{ id: 26, devices: [{ name: DEV, features: log }] }] });
  return { log, kernel, opened: new Opened(kernel, 26, DEV) };
}

const bitmaps = () => REGIONS.map((r) => new DirtyBitmap(Number(r.size / 4096n)));
const pagesOf = (bms: DirtyBitmap[]) =>
  bms.flatMap((b, i) => b.pageIndexes().map((p) => REGIONS[i].gpa / 4096n + BigInt(p)));

/** `n` distinct random RAM pages (GPA page numbers), seeded. */
function randomPages(rand: () => number, n: number): bigint[] {
  const all = REGIONS.flatMap((
    r,
  ) => [BigInt(Math.floor(rand() * Number(r.size / 4096n))) + r.gpa / 4096n]);
  const out = new Set<bigint>(all);
  while (out.size < n) {
    const r = REGIONS[Math.floor(rand() * REGIONS.length)];
    out.add(r.gpa / 4096n + BigInt(Math.floor(rand() * Number(r.size / 4096n))));
  }
  return [...out].sort((a, b) => (a < b ? -1 : 1));
}

Deno.test("DmaLoggingDirtySource reports exactly the pages the device wrote between START and STOP, and clears on read", () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  const { log, kernel, opened } = world();
  {
    using _o = opened;
    const source = new DmaLoggingDirtySource(opened.device, REGIONS, { devices: ["group 26"] });
    assert.deepEqual(source.devices, ["group 26"]);
    log.deviceWrite(0x1000n, 4096n); // before START: not logged
    source.start();
    assert.equal(log.logging, true);
    assert.deepEqual(log.ranges, [{ iova: 0n, length: 4n * MiB }, {
      iova: 8n * MiB,
      length: 2n * MiB,
    }]);
    assert.equal(source.startNote, "");
    // The start probe's page is counted once, then never again.
    const first = bitmaps();
    source.harvestInto(first);
    assert.deepEqual(pagesOf(first), [0n]);

    const pages = randomPages(rand, 40);
    for (const p of pages) log.deviceWrite(p * 4096n + BigInt(Math.floor(rand() * 4000)), 8n);
    log.deviceWrite(5n * MiB, 4096n); // in the hole: not in any range
    const bms = bitmaps();
    const h = source.harvestInto(bms);
    assert.deepEqual(pagesOf(bms), pages, `seed ${seed}`);
    assert.equal(h.dirtyPages, pages.length);
    assert.equal(h.scope, "precise");
    assert.equal(h.coveredPages, 1536);
    // Clear on read.
    const again = bitmaps();
    assert.equal(source.harvestInto(again).dirtyPages, 0);
    assert.deepEqual(pagesOf(again), []);

    source.stop();
    source.stop();
    assert.equal(log.logging, false);
    assert.equal(log.stops, 1);
    log.deviceWrite(0x2000n, 4096n); // after STOP: not logged
    assert.throws(() => source.harvestInto(bitmaps()), VfioStateError);
  }
  assertFds(kernel, 0);
});

Deno.test("DmaLoggingDirtySource: a chunked report equals one report, and 64 KiB log pages expand to 4 KiB", () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  for (const pageSize of [4096n, 65536n]) {
    const rand = seeded(seed);
    const pages = randomPages(rand, 100);
    const results: bigint[][] = [];
    for (const maxBitmapBytes of [8, 64, 65536]) {
      const { log, kernel, opened } = world({ pageSize });
      {
        using _o = opened;
        const source = new DmaLoggingDirtySource(opened.device, REGIONS, { maxBitmapBytes });
        source.start();
        source.harvestInto(bitmaps());
        for (const p of pages) log.deviceWrite(p * 4096n, 1n);
        const bms = bitmaps();
        source.harvestInto(bms);
        results.push(pagesOf(bms));
        source.stop();
      }
      assertFds(kernel, 0);
    }
    assert.deepEqual(results[0], results[1], `seed ${seed} page ${pageSize}`);
    assert.deepEqual(results[0], results[2], `seed ${seed} page ${pageSize}`);
    const factor = pageSize / 4096n;
    const expect = [...new Set(pages.map((p) => p - p % factor))]
      .flatMap((p) => Array.from({ length: Number(factor) }, (_, i) => p + BigInt(i)));
    assert.deepEqual(results[0], expect.sort((a, b) => (a < b ? -1 : 1)), `seed ${seed}`);
  }
});

Deno.test("DmaLoggingDirtySource merges ranges when the driver refuses their number (E2BIG), and says so", () => {
  const { log, kernel, opened } = world({ maxRanges: 1 });
  {
    using _o = opened;
    const source = new DmaLoggingDirtySource(opened.device, REGIONS);
    source.start();
    assert.deepEqual(log.startAttempts, [2, 1]);
    assert.deepEqual(log.ranges, [{ iova: 0n, length: 10n * MiB }]);
    assert.match(
      source.startNote,
      /device 0000:00:03.0 refused 2 DMA logging ranges: merged into 1/,
    );
    source.harvestInto(bitmaps());
    log.deviceWrite(5n * MiB, 4096n); // the hole is logged now, but is no region's page
    log.deviceWrite(9n * MiB, 4096n);
    const bms = bitmaps();
    source.harvestInto(bms);
    assert.deepEqual(pagesOf(bms), [9n * MiB / 4096n]);
    source.stop();
  }
  assertFds(kernel, 0);
  assert.deepEqual(
    mergeDmaLoggingRanges([
      { iova: 0n, length: 4096n },
      { iova: 4096n, length: 4096n },
      { iova: 0x10000n, length: 4096n },
      { iova: 0x100000n, length: 4096n },
    ], 2),
    [{ iova: 0n, length: 0x11000n }, { iova: 0x100000n, length: 4096n }],
  );
});

Deno.test("FakeDmaLoggingDevice validates START as the vfio core does", () => {
  const { log, kernel, opened } = world();
  {
    using _o = opened;
    const { syscalls: sys, unsafeFd: fd } = opened.device;
    const errno = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof IoctlError);
        assert.equal(e.ioctl, "VFIO_DEVICE_FEATURE(DMA_LOGGING_START)");
        return e.errno;
      }
      return 0;
    };
    const start = (ranges: { iova: bigint; length: bigint }[]) => () =>
      startDmaLogging(sys, fd, { pageSize: 4096n, ranges });
    assert.equal(errno(start([])), EINVAL);
    assert.equal(
      errno(
        start(Array.from({ length: 257 }, (_, i) => ({ iova: BigInt(i) * 8192n, length: 4096n }))),
      ),
      E2BIG,
    );
    assert.equal(errno(start([{ iova: 0x800n, length: 4096n }])), EINVAL);
    assert.equal(errno(start([{ iova: 0xffff_ffff_ffff_f000n, length: 0x2000n }])), EOVERFLOW);
    assert.equal(
      errno(start([{ iova: 0n, length: 8192n }, { iova: 4096n, length: 4096n }])),
      EINVAL,
    );
    assert.equal(log.logging, false);
    assert.equal(errno(start([{ iova: 0n, length: 8192n }])), 0);
    assert.equal(errno(start([{ iova: 0n, length: 8192n }])), EINVAL, "a second START");
  }
  assertFds(kernel, 0);
});

Deno.test("DmaLoggingDirtySource falls back with a clear message where REPORT answers EOPNOTSUPP, and STOPs", () => {
  const { log, kernel, opened } = world({ bitmapHelpers: false });
  {
    using _o = opened;
    const source = new DmaLoggingDirtySource(opened.device, REGIONS);
    assert.throws(() => source.start(), (e: unknown) => {
      assert.ok(e instanceof DirtyTrackingUnavailableError);
      assert.match(
        e.reason,
        /device 0000:00:03.0 can start DMA logging but its kernel cannot report it/,
      );
      assert.match(e.reason, /EOPNOTSUPP.*CONFIG_IOMMUFD_DRIVER/);
      return true;
    });
    assert.equal(log.logging, false);
    assert.equal(log.stops, 1);
    assert.equal(source.running, false);
  }
  assertFds(kernel, 0);
  // A driver without log_ops: the probe's ENOTTY.
  const kernel2 = new FakeKernel({ groups: [{ id: 26, devices: [{ name: DEV }] }] });
  {
    using o = new Opened(kernel2, 26, DEV);
    assert.throws(
      () => new DmaLoggingDirtySource(o.device, REGIONS).start(),
      (e: unknown) =>
        e instanceof DirtyTrackingUnavailableError && /has no DMA logging/.test(e.reason),
    );
  }
  assertFds(kernel2, 0);
});

Deno.test("DmaLoggingDirtySource STOPs logging when a REPORT fails", () => {
  const { log, kernel, opened } = world();
  {
    using _o = opened;
    const source = new DmaLoggingDirtySource(opened.device, REGIONS);
    source.start();
    kernel.failNext("VFIO_DEVICE_FEATURE", EIO);
    assert.throws(
      () => source.harvestInto(bitmaps()),
      (e: unknown) =>
        e instanceof IoctlError && e.errno === EIO &&
        e.ioctl === "VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)",
    );
    assert.equal(log.logging, false);
    assert.equal(source.running, false);
  }
  assertFds(kernel, 0);
});

Deno.test("FakeDmaLoggingDevice REPORT only sets bits, checks the page size, and refuses while not logging", () => {
  const { log, kernel, opened } = world();
  {
    using _o = opened;
    const { syscalls: sys, unsafeFd: fd } = opened.device;
    const report = (pageSize: bigint, bitmap: Uint8Array) =>
      reportDmaLogging(sys, fd, { iova: 0n, length: 64n * 4096n, pageSize, bitmap });
    const errno = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof IoctlError);
        assert.equal(e.ioctl, "VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)");
        return e.errno;
      }
      return 0;
    };
    assert.equal(errno(() => report(4096n, new Uint8Array(8))), EINVAL, "not logging");
    startDmaLogging(sys, fd, { pageSize: 4096n, ranges: [{ iova: 0n, length: 64n * 4096n }] });
    assert.equal(errno(() => report(2048n, new Uint8Array(16))), EINVAL, "below 4 KiB");
    assert.equal(errno(() => report(12288n, new Uint8Array(8))), EINVAL, "not a power of two");
    log.deviceWrite(5n * 4096n, 1n);
    const bitmap = new Uint8Array(8);
    bitmap[7] = 0x80; // page 63, left as it was
    report(4096n, bitmap);
    assert.deepEqual([...bitmap], [0x20, 0, 0, 0, 0, 0, 0, 0x80]);
    report(4096n, bitmap.fill(0));
    assert.deepEqual([...bitmap], [0, 0, 0, 0, 0, 0, 0, 0], "cleared by the first read");
    log.deviceWrite(5n * 4096n, 1n);
    const coarse = new Uint8Array(8);
    report(16384n, coarse);
    assert.deepEqual([...coarse], [0x02, 0, 0, 0, 0, 0, 0, 0], "a 16 KiB bit for page 5");
  }
  assertFds(kernel, 0);
});
