import assert from "node:assert/strict";
import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { hostAddress, iova } from "../../sys/address.ts";
import { VfioContainer } from "../../vfio/container.ts";
import { FakeKernel } from "../../tests/fake_kernel.ts";
import { anonMemory } from "../../tests/anon_memory.ts";
import { expandBitmapInto } from "../engine/dirty_source.ts";
import { VfioDirtySource } from "./vfio_dirty_source.ts";
import { guestAddress as g } from "../../sys/address.ts";

const MiB = 0x100000n;

Deno.test("VfioDirtySource.unmapDma() keeps a vIOMMU unmap's dirty pages for the next harvest", () => {
  const kernel = new FakeKernel();
  using mem = anonMemory(2n * MiB, { syscalls: kernel });
  {
    using container = VfioContainer.open({ syscalls: kernel });
    using _g = container.attachGroup(26);
    // Two regions: GPA 0 and GPA 1 MiB, mapped at IOVA = GPA.
    const regions = [{ gpa: g(0n), size: MiB }, { gpa: MiB, size: MiB }];
    using _a = container.mapDma(iova(0n), { vaddr: mem.vaddr, size: MiB });
    container.mapDma(iova(MiB), { vaddr: hostAddress(mem.vaddr + MiB), size: MiB });
    const source = new VfioDirtySource(container, regions);
    source.start();
    kernel.pin(26, 0x3000n, 0x1000n); // a page in region 0
    kernel.pin(26, MiB + 0x5000n, 0x2000n); // two pages in region 1
    const first = regions.map(() => new DirtyBitmap(256));
    source.harvestInto(first);
    assert.deepEqual(first[0].pageIndexes(), [3]);
    assert.deepEqual(first[1].pageIndexes(), [5, 6]);
    // The device writes region 1 again, then a vIOMMU unmaps it during pre-copy.
    kernel.pin(26, MiB + 0x9000n, 0x1000n);
    assert.equal(source.unmapDma(MiB, MiB), MiB);
    const next = regions.map(() => new DirtyBitmap(256));
    source.harvestInto(next);
    assert.deepEqual(next[1].pageIndexes(), [5, 6, 9], "the unmap's bits are not lost");
    assert.deepEqual(next[0].pageIndexes(), [3], "pinned pages stay dirty");
    source.stop();
  }
  mem[Symbol.dispose]();
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("expandBitmapInto() expands coarse pages to 4 KiB pages", () => {
  const dst = new DirtyBitmap(2048); // 8 MiB
  // Bits 0 and 3 of a 2 MiB-page bitmap: pages 0-511 and 1536-2047.
  expandBitmapInto(dst, 0, new Uint32Array([0b1001]), { bits: 4, factor: 512 });
  assert.equal(dst.count(), 1024);
  assert.deepEqual([...dst.runs()], [[0, 512], [1536, 512]]);
  // An offset start and a bitmap running past the end are clipped.
  const small = new DirtyBitmap(100);
  expandBitmapInto(small, 90, new Uint32Array([0b11]), { bits: 2, factor: 8 });
  assert.deepEqual([...small.runs()], [[90, 10]]);
  assert.throws(
    () => expandBitmapInto(small, 0, new Uint32Array(1), { bits: 1, factor: 0 }),
    RangeError,
  );
});
