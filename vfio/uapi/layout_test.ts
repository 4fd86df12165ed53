// Pins every ioctl number, struct size and field offset this project encodes,
// first against the literal values of linux/vfio.h (x86_64), then against the
// system header itself, compiled with the system C compiler.
import assert from "node:assert/strict";
import * as ioctls from "../ioctls.ts";
import * as C from "../constants.ts";
import { CAP_HEADER_SIZE } from "./cap_chain.ts";
import {
  CAP_DMA_AVAIL_SIZE,
  CAP_IOVA_RANGE_HEADER_SIZE,
  CAP_MIGRATION_SIZE,
  encodeIommuInfoCaps,
  IOMMU_INFO_MINSZ,
  IOMMU_INFO_SIZE,
  IOVA_RANGE_SIZE,
} from "./iommu_info.ts";
import {
  decodeDmaUnmap,
  DMA_MAP_SIZE,
  DMA_UNMAP_BITMAP_SIZE,
  DMA_UNMAP_SIZE,
  encodeDmaMap,
  encodeDmaUnmap,
  VFIO_BITMAP_SIZE,
} from "./dma.ts";
import {
  decodeDirtyPages,
  DIRTY_BITMAP_GET_ARGSZ,
  DIRTY_BITMAP_GET_SIZE,
  DIRTY_BITMAP_SIZE,
  encodeDirtyPages,
} from "./dirty_pages.ts";
import { GROUP_STATUS_SIZE } from "./group_status.ts";
import {
  DEVICE_INFO_SIZE,
  encodeRegionInfoRequest,
  IRQ_INFO_SIZE,
  REGION_INFO_SIZE,
} from "./device_info.ts";
import {
  DEVICE_FEATURE_SIZE,
  DMA_LOGGING_CONTROL_SIZE,
  DMA_LOGGING_RANGE_SIZE,
  DMA_LOGGING_REPORT_SIZE,
  encodeDeviceFeature,
  encodeDmaLoggingControl,
  encodeDmaLoggingReport,
  encodeMigState,
  FEATURE_MIG_DATA_SIZE_SIZE,
  FEATURE_MIG_STATE_SIZE,
  FEATURE_MIGRATION_SIZE,
  PRECOPY_INFO_SIZE,
} from "./device_feature.ts";

const IOCTLS: Record<string, number> = {
  VFIO_GET_API_VERSION: 0x3b64,
  VFIO_CHECK_EXTENSION: 0x3b65,
  VFIO_SET_IOMMU: 0x3b66,
  VFIO_GROUP_GET_STATUS: 0x3b67,
  VFIO_GROUP_SET_CONTAINER: 0x3b68,
  VFIO_GROUP_UNSET_CONTAINER: 0x3b69,
  VFIO_GROUP_GET_DEVICE_FD: 0x3b6a,
  VFIO_DEVICE_GET_INFO: 0x3b6b,
  VFIO_DEVICE_GET_REGION_INFO: 0x3b6c,
  VFIO_DEVICE_GET_IRQ_INFO: 0x3b6d,
  VFIO_DEVICE_SET_IRQS: 0x3b6e,
  VFIO_DEVICE_RESET: 0x3b6f,
  VFIO_IOMMU_GET_INFO: 0x3b70,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: 0x3b70,
  VFIO_IOMMU_MAP_DMA: 0x3b71,
  VFIO_DEVICE_PCI_HOT_RESET: 0x3b71,
  VFIO_IOMMU_UNMAP_DMA: 0x3b72,
  VFIO_IOMMU_DIRTY_PAGES: 0x3b75,
  VFIO_DEVICE_FEATURE: 0x3b75,
  VFIO_MIG_GET_PRECOPY_INFO: 0x3b79,
};

Deno.test("ioctls pin every request number and name", () => {
  for (const [name, code] of Object.entries(IOCTLS)) {
    const req = (ioctls as unknown as Record<string, { name: string; code: bigint }>)[name];
    assert.equal(req.name, name);
    assert.equal(req.code, BigInt(code), name);
  }
  assert.equal(ioctls.VFIO_GET_API_VERSION.code, 15204n);
});

Deno.test("constants pin linux/vfio.h values", () => {
  assert.deepEqual(
    [C.VFIO_TYPE1_IOMMU, C.VFIO_TYPE1v2_IOMMU, C.VFIO_DMA_CC_IOMMU, C.VFIO_NOIOMMU_IOMMU],
    [1, 3, 4, 8],
  );
  assert.deepEqual([C.VFIO_UNMAP_ALL, C.VFIO_UPDATE_VADDR], [9, 10]);
  assert.deepEqual(
    [
      C.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
      C.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
      C.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
    ],
    [1, 2, 3],
  );
  assert.deepEqual(
    [
      C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
      C.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
      C.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
    ],
    [1, 2, 4],
  );
  assert.deepEqual(
    [C.VFIO_DEVICE_FEATURE_GET, C.VFIO_DEVICE_FEATURE_SET, C.VFIO_DEVICE_FEATURE_PROBE],
    [0x10000, 0x20000, 0x40000],
  );
  assert.equal(C.VFIO_DEVICE_STATE_PRE_COPY_P2P, 7);
  assert.equal(C.DIRTY_BITMAP_SIZE_MAX, 268435456n);
});

Deno.test("struct sizes match linux/vfio.h on x86_64", () => {
  const sizes: [string, number, number][] = [
    ["vfio_info_cap_header", CAP_HEADER_SIZE, 8],
    ["vfio_group_status", GROUP_STATUS_SIZE, 8],
    ["vfio_device_info (6.1)", DEVICE_INFO_SIZE, 20],
    ["vfio_region_info", REGION_INFO_SIZE, 32],
    ["vfio_irq_info", IRQ_INFO_SIZE, 16],
    ["vfio_iommu_type1_info", IOMMU_INFO_SIZE, 24],
    ["vfio_iommu_type1_info minsz", IOMMU_INFO_MINSZ, 16],
    ["vfio_iova_range", IOVA_RANGE_SIZE, 16],
    ["vfio_iommu_type1_info_cap_iova_range", CAP_IOVA_RANGE_HEADER_SIZE, 16],
    ["vfio_iommu_type1_info_cap_migration", CAP_MIGRATION_SIZE, 32],
    ["vfio_iommu_type1_info_dma_avail", CAP_DMA_AVAIL_SIZE, 12],
    ["vfio_iommu_type1_dma_map", DMA_MAP_SIZE, 32],
    ["vfio_iommu_type1_dma_unmap", DMA_UNMAP_SIZE, 24],
    ["vfio_bitmap", VFIO_BITMAP_SIZE, 24],
    ["dma_unmap + vfio_bitmap", DMA_UNMAP_BITMAP_SIZE, 48],
    ["vfio_iommu_type1_dirty_bitmap", DIRTY_BITMAP_SIZE, 8],
    ["vfio_iommu_type1_dirty_bitmap_get", DIRTY_BITMAP_GET_SIZE, 40],
    ["GET_BITMAP argsz", DIRTY_BITMAP_GET_ARGSZ, 48],
    ["vfio_device_feature", DEVICE_FEATURE_SIZE, 8],
    ["vfio_device_feature_migration", FEATURE_MIGRATION_SIZE, 8],
    ["vfio_device_feature_mig_state", FEATURE_MIG_STATE_SIZE, 8],
    ["vfio_device_feature_mig_data_size", FEATURE_MIG_DATA_SIZE_SIZE, 8],
    ["vfio_precopy_info", PRECOPY_INFO_SIZE, 24],
    ["vfio_device_feature_dma_logging_control", DMA_LOGGING_CONTROL_SIZE, 24],
    ["vfio_device_feature_dma_logging_range", DMA_LOGGING_RANGE_SIZE, 16],
    ["vfio_device_feature_dma_logging_report", DMA_LOGGING_REPORT_SIZE, 32],
  ];
  for (const [name, got, want] of sizes) assert.equal(got, want, name);
});

function at(buf: Uint8Array, offset: number, width: 4 | 8): bigint {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return width === 4 ? BigInt(v.getUint32(offset, true)) : v.getBigUint64(offset, true);
}

Deno.test("encodeDmaMap() places argsz, flags, vaddr, iova, size at 0/4/8/16/24", () => {
  const b = encodeDmaMap({ flags: 3, vaddr: 0x1111n, iova: 0x2222n, size: 0x3333n });
  assert.deepEqual(
    [at(b, 0, 4), at(b, 4, 4), at(b, 8, 8), at(b, 16, 8), at(b, 24, 8)],
    [32n, 3n, 0x1111n, 0x2222n, 0x3333n],
  );
});

Deno.test("encodeDmaUnmap() places the vfio_bitmap at 24 with argsz 48", () => {
  const b = encodeDmaUnmap({
    flags: 1,
    iova: 0x1000n,
    size: 0x2000n,
    bitmap: { pgsize: 4096n, size: 8n, data: 0x7000n },
  });
  assert.deepEqual(
    [at(b, 0, 4), at(b, 4, 4), at(b, 8, 8), at(b, 16, 8), at(b, 24, 8), at(b, 32, 8), at(b, 40, 8)],
    [48n, 1n, 0x1000n, 0x2000n, 4096n, 8n, 0x7000n],
  );
  assert.equal(decodeDmaUnmap(b).bitmap?.data, 0x7000n);
});

Deno.test("encodeDirtyPages() places the get struct at 8 and the bitmap at 24", () => {
  const b = encodeDirtyPages({
    flags: 4,
    get: { iova: 0x10n, size: 0x20n, bitmap: { pgsize: 0x30n, size: 0x40n, data: 0x50n } },
  });
  assert.deepEqual(
    [at(b, 0, 4), at(b, 4, 4), at(b, 8, 8), at(b, 16, 8), at(b, 24, 8), at(b, 32, 8), at(b, 40, 8)],
    [48n, 4n, 0x10n, 0x20n, 0x30n, 0x40n, 0x50n],
  );
  assert.equal(decodeDirtyPages(b).get?.bitmap.pgsize, 0x30n);
  assert.equal(encodeDirtyPages({ flags: 1 }).byteLength, 8);
});

Deno.test("encodeIommuInfoCaps() lays caps out as type1 does (@24, @56, @68, argsz 116)", () => {
  const caps = encodeIommuInfoCaps([
    {
      kind: "migration",
      cap: { flags: 0, pgsizeBitmap: 0x1000n, maxDirtyBitmapSize: 0x10000000n },
    },
    { kind: "dmaAvail", avail: 65535 },
    {
      kind: "iovaRanges",
      ranges: [{ start: 0n, end: 0xfedfffffn }, { start: 0xfef00000n, end: 0x7fffffffffn }],
    },
  ]);
  assert.equal(IOMMU_INFO_SIZE + caps.byteLength, 116);
  const v = new DataView(caps.buffer);
  // Migration: id 2 v1, next 56; pgsize_bitmap @16, max @24 (pad @12).
  assert.deepEqual([v.getUint16(0, true), v.getUint16(2, true), v.getUint32(4, true)], [2, 1, 56]);
  assert.equal(v.getBigUint64(16, true), 0x1000n);
  assert.equal(v.getBigUint64(24, true), 0x10000000n);
  // DMA_AVAIL at 56 - 24 = 32: id 3, next 68, avail @8.
  assert.deepEqual([v.getUint16(32, true), v.getUint32(36, true), v.getUint32(40, true)], [
    3,
    68,
    65535,
  ]);
  // IOVA_RANGE at 68 - 24 = 44: id 1, next 0, nr_iovas @8, ranges @16.
  assert.deepEqual([v.getUint16(44, true), v.getUint32(48, true), v.getUint32(52, true)], [
    1,
    0,
    2,
  ]);
  assert.equal(v.getBigUint64(44 + 16 + 16 + 8, true), 0x7fffffffffn);
});

Deno.test("device codecs place fields at the header's offsets", () => {
  const r = encodeRegionInfoRequest(7);
  assert.deepEqual([at(r, 0, 4), at(r, 8, 4)], [32n, 7n]);
  const f = encodeDeviceFeature(0x10002, encodeMigState(3, -1));
  assert.deepEqual([at(f, 0, 4), at(f, 4, 4), at(f, 8, 4)], [16n, 0x10002n, 3n]);
  assert.equal(new DataView(f.buffer).getInt32(12, true), -1);
  const c = encodeDmaLoggingControl({ pageSize: 4096n, numRanges: 2, ranges: 0x99n });
  assert.deepEqual([at(c, 0, 8), at(c, 8, 4), at(c, 16, 8)], [4096n, 2n, 0x99n]);
  const rep = encodeDmaLoggingReport({ iova: 1n, length: 2n, pageSize: 3n, bitmap: 4n });
  assert.deepEqual([at(rep, 0, 8), at(rep, 8, 8), at(rep, 16, 8), at(rep, 24, 8)], [
    1n,
    2n,
    3n,
    4n,
  ]);
});

// The same facts, read from the installed linux/vfio.h (6.1) by the C compiler.
const C_PROGRAM = `#include <stdio.h>
#include <stddef.h>
#include <linux/vfio.h>
#define S(t) printf("sizeof %s %zu\\n", #t, sizeof(struct t));
#define O(t, f) printf("offsetof %s.%s %zu\\n", #t, #f, offsetof(struct t, f));
#define I(n) printf("ioctl %s %lu\\n", #n, (unsigned long)(n));
int main(void) {
  S(vfio_info_cap_header) S(vfio_group_status) S(vfio_region_info) S(vfio_irq_info)
  S(vfio_iommu_type1_info) S(vfio_iova_range) S(vfio_iommu_type1_info_cap_iova_range)
  S(vfio_iommu_type1_info_cap_migration) S(vfio_iommu_type1_info_dma_avail)
  S(vfio_iommu_type1_dma_map) S(vfio_iommu_type1_dma_unmap) S(vfio_bitmap)
  S(vfio_iommu_type1_dirty_bitmap) S(vfio_iommu_type1_dirty_bitmap_get)
  S(vfio_device_feature) S(vfio_device_feature_migration) S(vfio_device_feature_mig_state)
  S(vfio_device_feature_dma_logging_control)
  S(vfio_device_feature_dma_logging_range) S(vfio_device_feature_dma_logging_report)
  O(vfio_iommu_type1_info, cap_offset) O(vfio_iommu_type1_info, iova_pgsizes)
  O(vfio_iommu_type1_info_cap_migration, pgsize_bitmap)
  O(vfio_iommu_type1_info_cap_migration, max_dirty_bitmap_size)
  O(vfio_iommu_type1_info_cap_iova_range, iova_ranges) O(vfio_iommu_type1_info_dma_avail, avail)
  O(vfio_iommu_type1_dma_map, vaddr) O(vfio_iommu_type1_dma_map, iova) O(vfio_iommu_type1_dma_map, size)
  O(vfio_iommu_type1_dma_unmap, iova) O(vfio_iommu_type1_dma_unmap, size) O(vfio_iommu_type1_dma_unmap, data)
  O(vfio_bitmap, pgsize) O(vfio_bitmap, size) O(vfio_bitmap, data)
  O(vfio_iommu_type1_dirty_bitmap_get, bitmap) O(vfio_region_info, size) O(vfio_region_info, offset)
  O(vfio_region_info, cap_offset) O(vfio_device_feature_mig_state, data_fd)
  O(vfio_device_feature_dma_logging_control, ranges) O(vfio_device_feature_dma_logging_report, bitmap)
  I(VFIO_GET_API_VERSION) I(VFIO_CHECK_EXTENSION) I(VFIO_SET_IOMMU) I(VFIO_GROUP_GET_STATUS)
  I(VFIO_GROUP_SET_CONTAINER) I(VFIO_GROUP_UNSET_CONTAINER) I(VFIO_GROUP_GET_DEVICE_FD)
  I(VFIO_DEVICE_GET_INFO) I(VFIO_DEVICE_GET_REGION_INFO) I(VFIO_DEVICE_GET_IRQ_INFO)
  I(VFIO_DEVICE_SET_IRQS) I(VFIO_DEVICE_RESET) I(VFIO_IOMMU_GET_INFO)
  I(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO) I(VFIO_IOMMU_MAP_DMA) I(VFIO_DEVICE_PCI_HOT_RESET)
  I(VFIO_IOMMU_UNMAP_DMA) I(VFIO_IOMMU_DIRTY_PAGES) I(VFIO_DEVICE_FEATURE)
  return 0;
}
`;

const HEADER_FACTS: Record<string, number> = {
  "sizeof vfio_info_cap_header": CAP_HEADER_SIZE,
  "sizeof vfio_group_status": GROUP_STATUS_SIZE,
  "sizeof vfio_region_info": REGION_INFO_SIZE,
  "sizeof vfio_irq_info": IRQ_INFO_SIZE,
  "sizeof vfio_iommu_type1_info": IOMMU_INFO_SIZE,
  "sizeof vfio_iova_range": IOVA_RANGE_SIZE,
  "sizeof vfio_iommu_type1_info_cap_iova_range": CAP_IOVA_RANGE_HEADER_SIZE,
  "sizeof vfio_iommu_type1_info_cap_migration": CAP_MIGRATION_SIZE,
  "sizeof vfio_iommu_type1_info_dma_avail": CAP_DMA_AVAIL_SIZE,
  "sizeof vfio_iommu_type1_dma_map": DMA_MAP_SIZE,
  "sizeof vfio_iommu_type1_dma_unmap": DMA_UNMAP_SIZE,
  "sizeof vfio_bitmap": VFIO_BITMAP_SIZE,
  "sizeof vfio_iommu_type1_dirty_bitmap": DIRTY_BITMAP_SIZE,
  "sizeof vfio_iommu_type1_dirty_bitmap_get": DIRTY_BITMAP_GET_SIZE,
  "sizeof vfio_device_feature": DEVICE_FEATURE_SIZE,
  "sizeof vfio_device_feature_migration": FEATURE_MIGRATION_SIZE,
  "sizeof vfio_device_feature_mig_state": FEATURE_MIG_STATE_SIZE,
  "sizeof vfio_device_feature_dma_logging_control": DMA_LOGGING_CONTROL_SIZE,
  "sizeof vfio_device_feature_dma_logging_range": DMA_LOGGING_RANGE_SIZE,
  "sizeof vfio_device_feature_dma_logging_report": DMA_LOGGING_REPORT_SIZE,
  "offsetof vfio_iommu_type1_info.cap_offset": 16,
  "offsetof vfio_iommu_type1_info.iova_pgsizes": 8,
  "offsetof vfio_iommu_type1_info_cap_migration.pgsize_bitmap": 16,
  "offsetof vfio_iommu_type1_info_cap_migration.max_dirty_bitmap_size": 24,
  "offsetof vfio_iommu_type1_info_cap_iova_range.iova_ranges": 16,
  "offsetof vfio_iommu_type1_info_dma_avail.avail": 8,
  "offsetof vfio_iommu_type1_dma_map.vaddr": 8,
  "offsetof vfio_iommu_type1_dma_map.iova": 16,
  "offsetof vfio_iommu_type1_dma_map.size": 24,
  "offsetof vfio_iommu_type1_dma_unmap.iova": 8,
  "offsetof vfio_iommu_type1_dma_unmap.size": 16,
  "offsetof vfio_iommu_type1_dma_unmap.data": 24,
  "offsetof vfio_bitmap.pgsize": 0,
  "offsetof vfio_bitmap.size": 8,
  "offsetof vfio_bitmap.data": 16,
  "offsetof vfio_iommu_type1_dirty_bitmap_get.bitmap": 16,
  "offsetof vfio_region_info.size": 16,
  "offsetof vfio_region_info.offset": 24,
  "offsetof vfio_region_info.cap_offset": 12,
  "offsetof vfio_device_feature_mig_state.data_fd": 4,
  "offsetof vfio_device_feature_dma_logging_control.ranges": 16,
  "offsetof vfio_device_feature_dma_logging_report.bitmap": 24,
};

Deno.test("layouts match the installed linux/vfio.h compiled with cc", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-layout-" });
  try {
    await Deno.writeTextFile(`${dir}/layout.c`, C_PROGRAM);
    const cc = await new Deno.Command("cc", {
      args: ["-o", `${dir}/layout`, `${dir}/layout.c`],
      stderr: "piped",
    }).output().catch((e) => {
      throw new Error(`This test needs a C compiler (apt-get install gcc): ${e.message}`);
    });
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(`${dir}/layout`, { stdout: "piped" }).output();
    const facts = new Map<string, number>();
    for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
      const [kind, name, value] = line.split(" ");
      facts.set(`${kind} ${name}`, Number(value));
    }
    for (const [key, want] of Object.entries(HEADER_FACTS)) {
      assert.equal(facts.get(key), want, key);
    }
    // vfio_precopy_info and VFIO_MIG_GET_PRECOPY_INFO arrived after 6.1's header;
    // they are pinned by the literal tests above.
    for (const [name, code] of Object.entries(IOCTLS)) {
      if (name === "VFIO_MIG_GET_PRECOPY_INFO") continue;
      assert.equal(facts.get(`ioctl ${name}`), code, name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
