// kernel-profiles: custom-6.12-viommu
// QEMU's edu device through its VFIO cdev, bound to iommufd and attached
// behind the emulated VT-d of the 6.12 test kernel: real DMA through an IOAS,
// and the refusal of dirty tracking by an IOMMU that has no dirty bits.
import assert from "node:assert/strict";
import { iova } from "../../../sys/address.ts";
import { EOPNOTSUPP } from "../../../sys/errno.ts";
import { IoctlError } from "../../../sys/errors.ts";
import {
  DirtyTrackingUnavailableError,
  Iommufd,
  VfioCdevDevice,
  vfioCdevPath,
} from "../../../vfio/mod.ts";
import { IOMMU_HW_INFO_TYPE_INTEL_VTD } from "../../../vfio/uapi/mod.ts";
import { anonMemory } from "../../anon_memory.ts";
import { EDU, groupAndDevice, waitDma } from "../_group.ts";
import { bootProfile } from "../env.ts";

const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const BASE = 0x100000n;

function eduCdev(): VfioCdevDevice {
  bootProfile("custom-6.12-viommu");
  return VfioCdevDevice.open(vfioCdevPath(groupAndDevice().device));
}

/** edu copies 2 KiB from BASE to its buffer and back to BASE + 0x2000; returns the target. */
function eduRoundTrip(dev: VfioCdevDevice, ram: { bytes: Uint8Array }): Uint8Array {
  dev.writeConfig(
    PCI_COMMAND,
    2,
    dev.readConfig(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER,
  );
  using regs = dev.mmapRegion(0);
  const cmd = () => regs.readU32(EDU.DMA_CMD);
  const run = (src: bigint, dst: bigint, toRam: boolean) => {
    regs.writeU64(EDU.DMA_SRC, src);
    regs.writeU64(EDU.DMA_DST, dst);
    regs.writeU64(EDU.DMA_COUNT, 2048n);
    regs.writeU32(EDU.DMA_CMD, EDU.CMD_START | (toRam ? EDU.CMD_TO_RAM : 0));
    waitDma(cmd);
  };
  run(BASE, EDU.DMA_BUFFER, false);
  run(EDU.DMA_BUFFER, BASE + 0x2000n, true);
  return ram.bytes.subarray(0x2000, 0x2000 + 2048);
}

Deno.test("VfioCdevDevice binds edu to iommufd, attaches it to an IOAS, and edu DMA goes through", () => {
  using iommufd = Iommufd.open();
  using ioas = iommufd.allocIoas();
  using ram = anonMemory(0x4000n);
  using dev = eduCdev();
  const devId = dev.bind(iommufd);
  assert.ok(devId > 0);
  const hwptId = dev.attach(ioas);
  assert.notEqual(hwptId, ioas.id, "attaching to an IOAS gives the device an automatic HWPT");
  assert.equal(dev.attachedPtId, hwptId);
  using _m = ioas.map(iova(BASE), { vaddr: ram.vaddr, size: ram.size });
  const src = ram.bytes.subarray(0, 2048);
  for (let i = 0; i < src.length; i++) src[i] = (i * 13 + 1) & 0xff;
  ram.bytes.fill(0x55, 0x2000, 0x2800);
  assert.deepEqual(eduRoundTrip(dev, ram), src, "DMA through the IOAS");
  // Detached, the device's DMA is blocked: the target keeps its bytes.
  dev.detach();
  ram.bytes.fill(0x66, 0x2000, 0x2800);
  const blocked = eduRoundTrip(dev, ram);
  assert.ok(blocked.every((b) => b === 0x66), "DMA blocked while detached");
  dev.attach(ioas);
  assert.deepEqual(eduRoundTrip(dev, ram), src, "DMA again once re-attached");
});

Deno.test("Iommufd.hwInfo() on edu names VT-d without dirty tracking (no SSADS in QEMU's VT-d)", () => {
  using iommufd = Iommufd.open();
  using dev = eduCdev();
  const info = iommufd.hwInfo(dev.bind(iommufd));
  assert.equal(info.dataType, IOMMU_HW_INFO_TYPE_INTEL_VTD);
  assert.equal(info.dirtyTracking, false);
  assert.ok(info.vtd, "the VT-d registers");
  assert.equal((info.vtd.ecapReg >> 45n) & 1n, 0n, "ecap SLADS (bit 45) is 0");
});

Deno.test("Iommufd.allocHwpt({ dirtyTracking }) for edu: device-side dirty tracking unavailable", () => {
  using iommufd = Iommufd.open();
  using ioas = iommufd.allocIoas();
  using ram = anonMemory(0x4000n);
  using dev = eduCdev();
  const devId = dev.bind(iommufd);
  assert.throws(
    () => iommufd.allocHwpt({ devId, ioas, dirtyTracking: true }),
    (e: unknown) => {
      assert.ok(e instanceof DirtyTrackingUnavailableError, String(e));
      assert.equal(
        e.message,
        `Device-side dirty tracking unavailable: the IOMMU behind device ${devId} cannot track ` +
          "dirty pages (IOMMU_HWPT_ALLOC with IOMMU_HWPT_ALLOC_DIRTY_TRACKING: EOPNOTSUPP)",
      );
      assert.ok(e.cause instanceof IoctlError && e.cause.errno === EOPNOTSUPP);
      return true;
    },
  );
  // The fallback: a plain HWPT, and DMA still works through it.
  const hwpt = iommufd.allocHwpt({ devId, ioas });
  try {
    assert.equal(dev.attach(hwpt), hwpt.id);
    using _m = ioas.map(iova(BASE), { vaddr: ram.vaddr, size: ram.size });
    const src = ram.bytes.subarray(0, 2048);
    for (let i = 0; i < src.length; i++) src[i] = (i * 5 + 9) & 0xff;
    assert.deepEqual(eduRoundTrip(dev, ram), src);
    dev.detach();
  } finally {
    hwpt.close();
  }
});
