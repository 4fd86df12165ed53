// Pins every iommufd and VFIO cdev struct size, field offset, ioctl number
// and constant the codecs use, against the literal values of Linux 6.12's
// linux/iommufd.h and linux/vfio.h (x86_64). The same table is compared with
// the 6.12 headers compiled by cc in the 6.12 test guest
// (tests/kernel/iommufd/uapi_layout_test.ts): this host's headers predate
// iommufd.
import assert from "node:assert/strict";
import * as C from "../constants.ts";
import * as I from "../ioctls.ts";
import { IOMMUFD_LAYOUT as L } from "./_layout.ts";
import * as H from "./hwpt.ts";
import * as A from "./ioas.ts";
import * as V from "./vfio_cdev.ts";

function u32At(buf: Uint8Array, at: number): number {
  return new DataView(buf.buffer, buf.byteOffset).getUint32(at, true);
}

function u64At(buf: Uint8Array, at: number): bigint {
  return new DataView(buf.buffer, buf.byteOffset).getBigUint64(at, true);
}

Deno.test("iommufd ioctl numbers and constants match linux/iommufd.h (6.12)", () => {
  for (const [key, value] of Object.entries(L)) {
    const [kind, name] = key.split(" ");
    if (kind === "ioctl") {
      const req = (I as unknown as Record<string, { name: string; code: bigint }>)[name];
      assert.equal(req.code, BigInt(value), key);
      assert.equal(req.name, name, key);
    } else if (kind === "const") {
      assert.equal((C as unknown as Record<string, number>)[name], value, key);
    }
  }
});

Deno.test("iommufd codecs put every field at the 6.12 offset and fill size", () => {
  const destroy = A.encodeDestroy(7);
  assert.equal(destroy.byteLength, L["sizeof iommu_destroy"]);
  assert.equal(u32At(destroy, 0), 8);
  assert.equal(u32At(destroy, L["offsetof iommu_destroy.id"]), 7);
  const alloc = A.encodeIoasAlloc();
  assert.equal(alloc.byteLength, L["sizeof iommu_ioas_alloc"]);
  new DataView(alloc.buffer).setUint32(L["offsetof iommu_ioas_alloc.out_ioas_id"], 9, true);
  assert.equal(A.decodeIoasAlloc(alloc), 9);
  const map = A.encodeIoasMap({
    flags: 7,
    ioasId: 2,
    userVa: 0x7f00n,
    length: 0x1000n,
    iova: 0x2000n,
  });
  assert.equal(map.byteLength, L["sizeof iommu_ioas_map"]);
  assert.equal(u32At(map, 0), L["sizeof iommu_ioas_map"]);
  assert.equal(u32At(map, L["offsetof iommu_ioas_map.flags"]), 7);
  assert.equal(u32At(map, L["offsetof iommu_ioas_map.ioas_id"]), 2);
  assert.equal(u64At(map, L["offsetof iommu_ioas_map.user_va"]), 0x7f00n);
  assert.equal(u64At(map, L["offsetof iommu_ioas_map.length"]), 0x1000n);
  assert.equal(u64At(map, L["offsetof iommu_ioas_map.iova"]), 0x2000n);
  const unmap = A.encodeIoasUnmap({ ioasId: 3, iova: 0x4000n, length: 0x5000n });
  assert.equal(unmap.byteLength, L["sizeof iommu_ioas_unmap"]);
  assert.equal(u32At(unmap, L["offsetof iommu_ioas_unmap.ioas_id"]), 3);
  assert.equal(u64At(unmap, L["offsetof iommu_ioas_unmap.iova"]), 0x4000n);
  assert.equal(u64At(unmap, L["offsetof iommu_ioas_unmap.length"]), 0x5000n);
  assert.equal(A.decodeIoasUnmapLength(unmap), 0x5000n);
  const info = H.encodeHwInfo({ devId: 5, dataLen: 64, dataUptr: 0x1234n });
  assert.equal(info.byteLength, L["sizeof iommu_hw_info"]);
  assert.equal(u32At(info, L["offsetof iommu_hw_info.dev_id"]), 5);
  assert.equal(u32At(info, L["offsetof iommu_hw_info.data_len"]), 64);
  assert.equal(u64At(info, L["offsetof iommu_hw_info.data_uptr"]), 0x1234n);
  const iv = new DataView(info.buffer);
  iv.setUint32(L["offsetof iommu_hw_info.out_data_type"], 1, true);
  iv.setUint8(L["offsetof iommu_hw_info.out_max_pasid_log2"], 20);
  iv.setBigUint64(L["offsetof iommu_hw_info.out_capabilities"], 1n, true);
  assert.deepEqual(H.decodeHwInfo(info), {
    dataLen: 64,
    dataType: 1,
    maxPasidLog2: 20,
    capabilities: 1n,
  });
  const vtd = new Uint8Array(L["sizeof iommu_hw_info_vtd"]);
  new DataView(vtd.buffer).setBigUint64(
    L["offsetof iommu_hw_info_vtd.cap_reg"],
    0xd2008c222f0686n,
    true,
  );
  new DataView(vtd.buffer).setBigUint64(
    L["offsetof iommu_hw_info_vtd.ecap_reg"],
    0x480080f00f4an,
    true,
  );
  assert.deepEqual(H.decodeHwInfoVtd(vtd), {
    flags: 0,
    capReg: 0xd2008c222f0686n,
    ecapReg: 0x480080f00f4an,
  });
  const hwpt = H.encodeHwptAlloc({ flags: 2, devId: 1, ptId: 3, dataType: 0 });
  assert.equal(hwpt.byteLength, L["sizeof iommu_hwpt_alloc"]);
  assert.equal(u32At(hwpt, 0), L["sizeof iommu_hwpt_alloc"]);
  assert.equal(u32At(hwpt, L["offsetof iommu_hwpt_alloc.flags"]), 2);
  assert.equal(u32At(hwpt, L["offsetof iommu_hwpt_alloc.dev_id"]), 1);
  assert.equal(u32At(hwpt, L["offsetof iommu_hwpt_alloc.pt_id"]), 3);
  new DataView(hwpt.buffer).setUint32(L["offsetof iommu_hwpt_alloc.out_hwpt_id"], 11, true);
  assert.equal(H.decodeHwptAllocId(hwpt), 11);
  const set = H.encodeSetDirtyTracking({ hwptId: 4, flags: 1 });
  assert.equal(set.byteLength, L["sizeof iommu_hwpt_set_dirty_tracking"]);
  assert.equal(u32At(set, L["offsetof iommu_hwpt_set_dirty_tracking.flags"]), 1);
  assert.equal(u32At(set, L["offsetof iommu_hwpt_set_dirty_tracking.hwpt_id"]), 4);
  const get = {
    hwptId: 4,
    flags: 1,
    iova: 1n << 24n,
    length: 0x10000n,
    pageSize: 0x1000n,
    data: 0xabcd000n,
  };
  const gb = H.encodeGetDirtyBitmap(get);
  assert.equal(gb.byteLength, L["sizeof iommu_hwpt_get_dirty_bitmap"]);
  assert.equal(u32At(gb, L["offsetof iommu_hwpt_get_dirty_bitmap.hwpt_id"]), 4);
  assert.equal(u32At(gb, L["offsetof iommu_hwpt_get_dirty_bitmap.flags"]), 1);
  assert.equal(u64At(gb, L["offsetof iommu_hwpt_get_dirty_bitmap.iova"]), 1n << 24n);
  assert.equal(u64At(gb, L["offsetof iommu_hwpt_get_dirty_bitmap.length"]), 0x10000n);
  assert.equal(u64At(gb, L["offsetof iommu_hwpt_get_dirty_bitmap.page_size"]), 0x1000n);
  assert.equal(u64At(gb, L["offsetof iommu_hwpt_get_dirty_bitmap.data"]), 0xabcd000n);
  assert.deepEqual(H.decodeGetDirtyBitmap(gb), get);
  const bind = V.encodeBindIommufd(5);
  assert.equal(bind.byteLength, L["sizeof vfio_device_bind_iommufd"]);
  assert.equal(u32At(bind, 0), L["sizeof vfio_device_bind_iommufd"]);
  assert.equal(u32At(bind, L["offsetof vfio_device_bind_iommufd.iommufd"]), 5);
  new DataView(bind.buffer).setUint32(L["offsetof vfio_device_bind_iommufd.out_devid"], 6, true);
  assert.equal(V.decodeBindDevId(bind), 6);
  const attach = V.encodeAttachIommufdPt(8);
  assert.equal(attach.byteLength, L["sizeof vfio_device_attach_iommufd_pt"]);
  assert.equal(u32At(attach, L["offsetof vfio_device_attach_iommufd_pt.pt_id"]), 8);
  assert.equal(V.decodeAttachPtId(attach), 8);
  assert.equal(V.encodeDetachIommufdPt().byteLength, L["sizeof vfio_device_detach_iommufd_pt"]);
});
