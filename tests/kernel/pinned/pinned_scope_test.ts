// kernel-profiles: custom-6.12-viommu
// type1's pinned dirty scope on the real kernel: a container whose only
// group is the pintest mdev (an emulated IOMMU group) reports exactly the
// pages the device pinned or wrote with vfio_dma_rw(); a vfio-pci group (edu)
// in the same container promotes the scope to all-mapped. Through the public
// VFIO API (VfioContainer, DirtyPageTracker).
import assert from "node:assert/strict";
import { iova } from "../../../sys/address.ts";
import { EINVAL } from "../../../sys/errno.ts";
import { SyscallError } from "../../../sys/errors.ts";
import { VfioContainer } from "../../../vfio/container.ts";
import { anonMemory } from "../../anon_memory.ts";
import { groupAndDevice } from "../_group.ts";
import { bootProfile } from "../env.ts";
import { createPintest, Pintest } from "./_pintest.ts";

const PAGE = 0x1000n;
const BASE = 0x100000n;
const PAGES = 16n;

function setBits(words: Uint32Array): number[] {
  const out: number[] = [];
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if (w & (1 << b)) out.push(i * 32 + b);
  });
  return out;
}

/** A type1 container holding only a pintest mdev's group, 16 pages mapped at BASE. */
function pinnedWorld() {
  bootProfile("custom-6.12-viommu");
  const mdev = createPintest();
  const container = VfioContainer.open();
  const group = container.attachGroup(mdev.group);
  const device = group.openDevice(mdev.uuid);
  const ram = anonMemory(PAGES * PAGE);
  const mapping = container.mapDma(iova(BASE), { vaddr: ram.vaddr, size: ram.size });
  return {
    mdev,
    container,
    group,
    device,
    pintest: new Pintest(device),
    ram,
    mapping,
    query: () => setBits(container.dirtyTracker().query(BASE, PAGES * PAGE).bitmap),
    [Symbol.dispose]() {
      const tracker = container.dirtyTracker();
      if (tracker.running) tracker.stop();
      mapping.unmap();
      device.close();
      group.close();
      container.close();
      ram[Symbol.dispose]();
      mdev[Symbol.dispose]();
    },
  };
}

Deno.test("DirtyPageTracker.query() with only a pinning mdev reports exactly the pinned and written pages", () => {
  using w = pinnedWorld();
  const tracker = w.container.dirtyTracker();
  tracker.start();
  assert.deepEqual(w.query(), [], "nothing pinned or written yet");
  assert.equal(tracker.scope, "precise");
  w.pintest.pin(BASE + 2n * PAGE);
  w.pintest.dmaWrite(BASE + 5n * PAGE + 8n, 0xabab_abab_abab_abn);
  assert.equal(w.pintest.pinned, 1);
  assert.deepEqual(w.query(), [2, 5], "the pinned page and the DMA-written one");
  assert.equal(tracker.scope, "precise");
  assert.deepEqual(w.query(), [2], "still pinned: reported again; written: not");
  const written = new DataView(w.ram.bytes.buffer, w.ram.bytes.byteOffset + 5 * 4096 + 8, 8);
  assert.equal(written.getBigUint64(0, true), 0xabab_abab_abab_abn, "the DMA write landed in RAM");
  w.pintest.unpin(BASE + 2n * PAGE);
  assert.deepEqual(w.query(), [2], "an unpinned page is reported once more");
  assert.deepEqual(w.query(), []);
});

Deno.test("VfioContainer.unmapDma() with a bitmap makes the mdev unpin and reports its pages", () => {
  using w = pinnedWorld();
  const tracker = w.container.dirtyTracker();
  tracker.start();
  w.pintest.pin(BASE + 3n * PAGE);
  w.pintest.pin(BASE + 9n * PAGE);
  assert.equal(w.pintest.pinned, 2);
  const r = w.container.unmapDma(iova(BASE), PAGES * PAGE, { dirtyBitmap: true });
  assert.equal(r.unmapped, PAGES * PAGE);
  assert.deepEqual(setBits(r.dirty!.bitmap), [3, 9]);
  assert.equal(w.pintest.pinned, 0, "the driver's dma_unmap unpinned them");
  assert.equal(w.pintest.unmapped, 2);
});

Deno.test("pintest cannot pin an IOVA that is not mapped (vfio_pin_pages: EINVAL)", () => {
  using w = pinnedWorld();
  assert.throws(
    () => w.pintest.pin(BASE + PAGES * PAGE),
    (e: unknown) => e instanceof SyscallError && e.errno === EINVAL,
  );
  assert.equal(w.pintest.pinned, 0);
});

Deno.test("DirtyPageTracker.scope: adding edu's group promotes the container to all-mapped, removing it restores pinned", () => {
  using w = pinnedWorld();
  const tracker = w.container.dirtyTracker();
  tracker.start();
  w.pintest.pin(BASE + PAGE);
  assert.deepEqual(w.query(), [1]);
  assert.equal(tracker.scope, "precise");
  const edu = w.container.attachGroup(groupAndDevice().group);
  try {
    const all = [...Array(Number(PAGES)).keys()];
    assert.deepEqual(w.query(), all, "a vfio-pci group: every mapped page");
    assert.equal(tracker.scope, "all-mapped");
    assert.deepEqual(w.query(), all, "every time");
  } finally {
    edu.close();
  }
  const all = [...Array(Number(PAGES)).keys()];
  assert.deepEqual(w.query(), all, "leaving, the vfio-pci group marks everything dirty once");
  assert.deepEqual(w.query(), [1], "then the pinned scope again");
  assert.equal(tracker.scope, "precise");
});
