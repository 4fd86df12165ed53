// kernel-profiles: custom-6.12-viommu
// A device's own DMA log through the real vfio core: the pintest mdev logs
// the pages it writes with vfio_dma_rw() (vfio_log_ops, iova_bitmap_set), and
// DmaLoggingDirtySource reads them with VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT
// from the 6.12 kernel built with the iova_bitmap helpers: the exact set,
// nothing before START or after STOP, clear on read, chunked reports.
import assert from "node:assert/strict";
import { DirtyBitmap } from "../../../memory/dirty_bitmap.ts";
import { iova } from "../../../sys/address.ts";
import { DmaLoggingDirtySource } from "../../../migration/guest/dma_logging_dirty_source.ts";
import { VfioContainer } from "../../../vfio/container.ts";
import { anonMemory } from "../../anon_memory.ts";
import { seeded, testSeed } from "../../_random.ts";
import { bootProfile } from "../env.ts";
import { createPintest, Pintest } from "../pinned/_pintest.ts";

const PAGE = 0x1000n;
const BASE = 0x100000n;
const PAGES = 64;

function world() {
  bootProfile("custom-6.12-viommu");
  const mdev = createPintest();
  const container = VfioContainer.open();
  const group = container.attachGroup(mdev.group);
  const device = group.openDevice(mdev.uuid);
  const ram = anonMemory(BigInt(PAGES) * PAGE);
  const mapping = container.mapDma(iova(BASE), { vaddr: ram.vaddr, size: ram.size });
  return {
    device,
    pintest: new Pintest(device),
    regions: [{ gpa: 0n, size: BigInt(PAGES) * PAGE }],
    [Symbol.dispose]() {
      mapping.unmap();
      device.close();
      group.close();
      container.close();
      ram[Symbol.dispose]();
      mdev[Symbol.dispose]();
    },
  };
}

function harvest(source: DmaLoggingDirtySource): number[] {
  const bm = new DirtyBitmap(PAGES);
  source.harvestInto([bm]);
  return bm.pageIndexes();
}

Deno.test("DmaLoggingDirtySource reads the pintest mdev's own DMA log through the real vfio core: exact set, clear on read, nothing outside START..STOP", () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  using w = world();
  w.pintest.dmaWrite(BASE + 3n * PAGE, 1n); // before START
  const source = new DmaLoggingDirtySource(w.device, w.regions, {
    iovaBase: BASE,
    maxBitmapBytes: 8,
  });
  try {
    source.start();
    assert.equal(source.pageSize, PAGE);
    assert.deepEqual(source.ranges, [{ iova: BASE, length: BigInt(PAGES) * PAGE }]);
    assert.deepEqual(harvest(source), [0], "only the start probe's page (counted as written)");
    assert.deepEqual(harvest(source), [], "nothing written since START");
    const pages = new Set<number>();
    while (pages.size < 12) pages.add(Math.floor(rand() * PAGES));
    for (const p of pages) {
      w.pintest.dmaWrite(
        BASE + BigInt(p) * PAGE + BigInt(Math.floor(rand() * 4000)) & ~7n,
        BigInt(p),
      );
    }
    assert.deepEqual(harvest(source), [...pages].sort((a, b) => a - b), `seed ${seed}`);
    assert.deepEqual(harvest(source), [], "clear on read");
    w.pintest.dmaWrite(BASE + 63n * PAGE, 7n);
    assert.deepEqual(harvest(source), [63], "64-page region in 8-byte chunks");
  } finally {
    source.stop();
  }
  assert.equal(source.running, false);
  w.pintest.dmaWrite(BASE + 9n * PAGE, 2n); // after STOP
  // A new START sees nothing of before.
  const again = new DmaLoggingDirtySource(w.device, w.regions, { iovaBase: BASE });
  again.start();
  try {
    harvest(again);
    assert.deepEqual(harvest(again), []);
  } finally {
    again.stop();
  }
});
