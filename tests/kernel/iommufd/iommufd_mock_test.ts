// kernel-profiles: custom-6.12
// iommufd dirty tracking on real kernel code: the 6.12 test kernel's selftest
// mock IOMMU (CONFIG_IOMMUFD_TEST, in a boot without a vIOMMU), whose mock
// device's DMA writes IOMMU_TEST_OP_DIRTY plays. Everything but the mock goes
// through the public vfio/iommufd API.
import assert from "node:assert/strict";
import { hostAddress, iova } from "../../../sys/address.ts";
import { EOPNOTSUPP } from "../../../sys/errno.ts";
import { IoctlError } from "../../../sys/errors.ts";
import { mulberry32 } from "../../_memory_support.ts";
import {
  DirtyTrackingUnavailableError,
  Iommufd,
  IommufdDirtyTracker,
  type PageBitmap,
  VfioStateError,
} from "../../../vfio/mod.ts";
import { IOMMU_HW_INFO_TYPE_SELFTEST } from "../../../vfio/uapi/mod.ts";
import { anonMemory } from "../../anon_memory.ts";
import { bootProfile } from "../env.ts";
import {
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  mockDevice,
  mockDmaWrite,
} from "./_selftest.ts";

const PAGE = 4096n;
const BASE = MOCK_APERTURE_START;

function setBits(words: Uint32Array): number[] {
  const out: number[] = [];
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if (w & (1 << b)) out.push(i * 32 + b);
  });
  return out;
}

function bitmapOf(pages: number): PageBitmap {
  return { pages, words: new Uint32Array(Math.ceil(pages / 64) * 2) };
}

/** An iommufd with one IOAS, `pages` of RAM mapped at `BASE`, a mock device on a dirty-tracking HWPT. */
function world(pages: number) {
  bootProfile("custom-6.12");
  const iommufd = Iommufd.open();
  const ioas = iommufd.allocIoas();
  const ram = anonMemory(BigInt(pages) * PAGE);
  const writes = anonMemory(PAGE); // the mock's input bitmap: memory that does not move
  const mapping = ioas.map(iova(BASE), { vaddr: ram.vaddr, size: BigInt(pages) * PAGE });
  const dev = mockDevice(iommufd, ioas.id);
  const hwpt = iommufd.allocHwpt({ devId: dev.devId, ioas, dirtyTracking: true });
  dev.replace(hwpt.id);
  return {
    iommufd,
    ioas,
    hwpt,
    dev,
    mapping,
    /** The device writes these 2 KiB mock pages (relative to BASE); returns out_nr_dirty. */
    write(mockPages: number[], at = BASE, length = BigInt(pages) * PAGE): number {
      writes.bytes.fill(0);
      for (const p of mockPages) writes.bytes[p >> 3] |= 1 << (p & 7);
      return mockDmaWrite(iommufd, hwpt.id, { iova: at, length, bitmap: writes.vaddr });
    },
    [Symbol.dispose]() {
      if (hwpt.tracking) hwpt.setDirtyTracking(false);
      dev[Symbol.dispose]();
      hwpt.close();
      mapping.unmap();
      ioas.close();
      iommufd.close();
      writes[Symbol.dispose]();
      ram[Symbol.dispose]();
    },
  };
}

Deno.test("Iommufd.hwInfo() reports the mock IOMMU and its dirty-tracking capability", () => {
  using w = world(16);
  const info = w.iommufd.hwInfo(w.dev.devId);
  assert.equal(info.dataType, IOMMU_HW_INFO_TYPE_SELFTEST);
  assert.equal(info.dirtyTracking, true);
  assert.equal(w.hwpt.dirtyTrackingCapable, true);
});

Deno.test("HwPagetable.readDirty() reports exactly the pages the device wrote, then none", () => {
  const seed = 0x5eed_0d1e;
  console.log(`seed ${seed}`);
  const rand = mulberry32(seed);
  using w = world(64);
  w.hwpt.setDirtyTracking(true);
  assert.deepEqual(setBits(w.hwpt.readDirty(BASE, 64n * PAGE).bitmap), [], "clean after enabling");
  // Random 2 KiB mock pages: a 4 KiB page is dirty when either half is.
  const mock = [...new Set(Array.from({ length: 20 }, () => rand() % 128))].sort((
    a,
    b,
  ) => a - b);
  assert.equal(w.write(mock), mock.length, "every written mock page was mapped");
  const expected = [...new Set(mock.map((p) => p >> 1))].sort((a, b) => a - b);
  const first = w.hwpt.readDirty(BASE, 64n * PAGE);
  assert.deepEqual(setBits(first.bitmap), expected);
  assert.equal(first.dirtyPages, expected.length);
  assert.equal(first.pages, 64);
  assert.deepEqual(setBits(w.hwpt.readDirty(BASE, 64n * PAGE).bitmap), [], "read cleared them");
});

Deno.test("HwPagetable.readDirty({ noClear }) leaves the bits for the next read", () => {
  using w = world(16);
  w.hwpt.setDirtyTracking(true);
  w.write([0, 1, 10, 31]); // 4 KiB pages 0, 5, 15
  const range = 16n * PAGE;
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(setBits(w.hwpt.readDirty(BASE, range, { noClear: true }).bitmap), [0, 5, 15]);
  }
  assert.deepEqual(setBits(w.hwpt.readDirty(BASE, range).bitmap), [0, 5, 15], "the clearing read");
  assert.deepEqual(setBits(w.hwpt.readDirty(BASE, range).bitmap), []);
});

Deno.test("HwPagetable.readDirty() before tracking is enabled is a typed error", () => {
  using w = world(16);
  assert.throws(() => w.hwpt.readDirty(BASE, 16n * PAGE), VfioStateError);
});

Deno.test("Iommufd.allocHwpt({ dirtyTracking }) refuses a device whose IOMMU cannot track", () => {
  bootProfile("custom-6.12");
  using iommufd = Iommufd.open();
  using ioas = iommufd.allocIoas();
  using dev = mockDevice(iommufd, ioas.id, MOCK_FLAGS_DEVICE_NO_DIRTY);
  assert.equal(iommufd.hwInfo(dev.devId).dirtyTracking, false);
  assert.throws(
    () => iommufd.allocHwpt({ devId: dev.devId, ioas, dirtyTracking: true }),
    (e: unknown) => {
      assert.ok(e instanceof DirtyTrackingUnavailableError, String(e));
      assert.match(e.message, /^Device-side dirty tracking unavailable: /);
      assert.ok(e.cause instanceof IoctlError && e.cause.errno === EOPNOTSUPP, String(e.cause));
      assert.equal(e.cause.ioctl, "IOMMU_HWPT_ALLOC");
      return true;
    },
  );
  // Without dirty tracking the same device gets a page table.
  using plain = iommufd.allocHwpt({ devId: dev.devId, ioas });
  assert.equal(plain.dirtyTrackingCapable, false);
});

Deno.test("IommufdDirtyTracker.harvestInto() merges exact device pages per region, in chunks", () => {
  using w = world(256);
  // Two regions: GPA 0 (128 pages) and GPA 1 MiB (128 pages), IOVA = BASE + GPA.
  const regions = [{ gpa: 0n, size: 128n * PAGE }, { gpa: 128n * PAGE, size: 128n * PAGE }];
  const tracker = new IommufdDirtyTracker(w.hwpt, w.ioas, regions, {
    iovaBase: BASE,
    maxBitmapBytes: 8n, // 64 pages per call: two calls per region
  });
  tracker.start();
  try {
    w.write([0, 127, 128, 255, 256, 511]); // 4 KiB pages 0, 63, 64, 127 | 128, 255
    const bitmaps = [bitmapOf(128), bitmapOf(128)];
    const h = tracker.harvestInto(bitmaps);
    assert.equal(h.scope, "precise");
    assert.equal(h.dirtyPages, 6);
    assert.equal(h.coveredPages, 256);
    assert.deepEqual(setBits(bitmaps[0].words), [0, 63, 64, 127]);
    assert.deepEqual(setBits(bitmaps[1].words), [0, 127]);
    const again = [bitmapOf(128), bitmapOf(128)];
    assert.equal(tracker.harvestInto(again).dirtyPages, 0, "a harvest clears");
  } finally {
    tracker.stop();
  }
  assert.equal(w.hwpt.tracking, false);
});

Deno.test("IommufdDirtyTracker.unmap() keeps the unmapped range's dirty pages for the next harvest", () => {
  bootProfile("custom-6.12");
  using iommufd = Iommufd.open();
  using ioas = iommufd.allocIoas();
  using ram = anonMemory(32n * PAGE);
  using writes = anonMemory(PAGE);
  const low = ioas.map(iova(BASE), { vaddr: ram.vaddr, size: 16n * PAGE });
  const high = ioas.map(iova(BASE + 16n * PAGE), {
    vaddr: hostAddress(ram.vaddr + 16n * PAGE),
    size: 16n * PAGE,
  });
  using dev = mockDevice(iommufd, ioas.id);
  using hwpt = iommufd.allocHwpt({ devId: dev.devId, ioas, dirtyTracking: true });
  dev.replace(hwpt.id);
  const tracker = new IommufdDirtyTracker(hwpt, ioas, [{ gpa: 0n, size: 32n * PAGE }], {
    iovaBase: BASE,
  });
  tracker.start();
  try {
    writes.bytes.fill(0);
    writes.bytes[0] = 0b0000_0100; // mock page 2: 4 KiB page 1 (in `low`)
    writes.bytes[5] = 0b0000_0001; // mock page 40: 4 KiB page 20 (in `high`)
    assert.equal(
      mockDmaWrite(iommufd, hwpt.id, { iova: BASE, length: 32n * PAGE, bitmap: writes.vaddr }),
      2,
    );
    assert.equal(tracker.unmap(BASE, 16n * PAGE), 16n * PAGE);
    assert.equal(low.mapped, false);
    assert.deepEqual(ioas.mappings, [high]);
    const bitmap = bitmapOf(32);
    const h = tracker.harvestInto([bitmap]);
    assert.deepEqual(setBits(bitmap.words), [1, 20], "the unmapped page 1 is not lost");
    assert.equal(h.coveredPages, 16);
  } finally {
    tracker.stop();
    dev[Symbol.dispose]();
    high.unmap();
  }
});
