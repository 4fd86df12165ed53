import assert from "node:assert/strict";
import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { hostAddress, iova } from "../../sys/address.ts";
import { FakeIommufd } from "../../tests/_fake_iommufd.ts";
import { Iommufd } from "../../vfio/iommufd/iommufd.ts";
import { IommufdDirtySource } from "./iommufd_dirty_source.ts";

const PAGE = 4096n;

Deno.test("IommufdDirtySource.unmap() reads with NO_CLEAR first: the unmapped pages reach the next harvest", () => {
  const sys = new FakeIommufd();
  {
    using iommufd = Iommufd.open({ syscalls: sys });
    using ioas = iommufd.allocIoas();
    // Host addresses are never touched by the fake's IOAS.
    using _low = ioas.map(iova(0n), { vaddr: hostAddress(0x7000_0000_0000n), size: 16n * PAGE });
    using _high = ioas.map(iova(16n * PAGE), {
      vaddr: hostAddress(0x7000_0001_0000n),
      size: 16n * PAGE,
    });
    using hwpt = iommufd.allocHwpt({ devId: 1, ioas, dirtyTracking: true });
    const source = new IommufdDirtySource(hwpt, ioas, [{ gpa: 0n, size: 32n * PAGE }], {
      devices: ["group 26"],
    });
    assert.equal(source.scope, "precise");
    assert.equal(source.preciseByConstruction, true);
    assert.deepEqual(source.devices, ["group 26"]);
    source.start();
    sys.deviceWrite(3n * PAGE);
    sys.deviceWrite(20n * PAGE);
    assert.equal(source.unmap(0n, 16n * PAGE), 16n * PAGE);
    const reads = sys.calls.filter((c) => c === "IOMMU_HWPT_GET_DIRTY_BITMAP").length;
    assert.equal(reads, 1, "one NO_CLEAR read before the unmap");
    const bitmap = new DirtyBitmap(32);
    const h = source.harvestInto([bitmap]);
    assert.equal(h.source, "iommufd-hwpt");
    assert.deepEqual([bitmap.test(3), bitmap.test(20), bitmap.count()], [true, true, 2]);
    assert.equal(h.coveredPages, 16, "only the mapped half is covered now");
    const again = new DirtyBitmap(32);
    source.harvestInto([again]);
    assert.equal(again.count(), 0, "a harvest clears");
    source.stop();
    source.stop();
    assert.equal(hwpt.tracking, false);
  }
  assert.equal(sys.openFds, 0);
});
