// The edu device doing real DMA through the emulated IOMMU into memory mapped
// with VfioContainer.mapDma().
import assert from "node:assert/strict";
import { hostAddress, iova } from "../../sys/address.ts";
import { VfioContainer } from "../../vfio/container.ts";
import { VFIO_DEVICE_FLAGS_PCI, VFIO_REGION_INFO_FLAG_MMAP } from "../../vfio/constants.ts";
import { anonMemory } from "../anon_memory.ts";
import { EDU, groupAndDevice, waitDma } from "./_group.ts";

const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;

Deno.test("VfioDevice reads edu's ID and liveness registers through mmap'd BAR0", () => {
  const { group, device } = groupAndDevice();
  using container = VfioContainer.open();
  using g = container.attachGroup(group);
  using dev = g.openDevice(device);
  const info = dev.info();
  assert.ok(info.flags & VFIO_DEVICE_FLAGS_PCI);
  assert.equal(info.numRegions, 9);
  const bar0 = dev.regionInfo(0);
  assert.equal(bar0.size, 0x100000n);
  assert.ok(bar0.flags & VFIO_REGION_INFO_FLAG_MMAP);
  using regs = dev.mmapRegion(0);
  assert.equal(regs.readU32(EDU.ID), EDU.ID_VALUE);
  for (const v of [0x12345678, 0, 0xdeadbeef]) {
    regs.writeU32(EDU.LIVENESS, v);
    assert.equal(regs.readU32(EDU.LIVENESS), ~v >>> 0);
  }
  // The same register through pread on the region.
  const id = new DataView(dev.readRegion(0, 0n, new Uint8Array(4)).buffer).getUint32(0, true);
  assert.equal(id, EDU.ID_VALUE);
  assert.equal(dev.readConfig(0, 2), 0x1234);
  assert.equal(dev.readConfig(2, 2), 0x11e8);
});

Deno.test("edu DMA copies guest RAM to the device and back to another page", () => {
  const { group, device } = groupAndDevice();
  using container = VfioContainer.open();
  using g = container.attachGroup(group);
  using dev = g.openDevice(device);
  dev.writeConfig(
    PCI_COMMAND,
    2,
    dev.readConfig(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER,
  );
  assert.ok(dev.readConfig(PCI_COMMAND, 2) & PCI_COMMAND_MASTER, "bus mastering on");
  using regs = dev.mmapRegion(0);
  using ram = anonMemory(0x4000n);
  const base = 0x100000n;
  using _dma = container.mapDma(iova(base), { vaddr: ram.vaddr, size: ram.size });
  const src = ram.bytes.subarray(0, 2048);
  const dst = ram.bytes.subarray(0x2000, 0x2000 + 2048);
  for (let i = 0; i < src.length; i++) src[i] = (i * 7 + 3) & 0xff;
  dst.fill(0xaa);
  const cmd = () => regs.readU32(EDU.DMA_CMD);
  // RAM -> device buffer (below 4096 bytes: QEMU 7.2 aborts a full-page transfer).
  regs.writeU64(EDU.DMA_SRC, base);
  regs.writeU64(EDU.DMA_DST, EDU.DMA_BUFFER);
  regs.writeU64(EDU.DMA_COUNT, BigInt(src.length));
  regs.writeU32(EDU.DMA_CMD, EDU.CMD_START);
  waitDma(cmd);
  // Device buffer -> another page.
  regs.writeU64(EDU.DMA_SRC, EDU.DMA_BUFFER);
  regs.writeU64(EDU.DMA_DST, base + 0x2000n);
  regs.writeU64(EDU.DMA_COUNT, BigInt(dst.length));
  regs.writeU32(EDU.DMA_CMD, EDU.CMD_START | EDU.CMD_TO_RAM);
  waitDma(cmd);
  assert.deepEqual(dst, src);
});

Deno.test("edu DMA to an unmapped IOVA leaves memory untouched", () => {
  const { group, device } = groupAndDevice();
  using container = VfioContainer.open();
  using g = container.attachGroup(group);
  using dev = g.openDevice(device);
  dev.writeConfig(
    PCI_COMMAND,
    2,
    dev.readConfig(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER,
  );
  using regs = dev.mmapRegion(0);
  const cmd = () => regs.readU32(EDU.DMA_CMD);
  using ram = anonMemory(0x2000n);
  ram.bytes.fill(0xc3, 0, 0x1000);
  ram.bytes.fill(0x5a, 0x1000);
  const dma = (src: bigint, dst: bigint, toRam: boolean) => {
    regs.writeU64(EDU.DMA_SRC, src);
    regs.writeU64(EDU.DMA_DST, dst);
    regs.writeU64(EDU.DMA_COUNT, 1024n);
    regs.writeU32(EDU.DMA_CMD, EDU.CMD_START | (toRam ? EDU.CMD_TO_RAM : 0));
    waitDma(cmd);
  };
  const target = ram.bytes.subarray(0x1000, 0x1400);
  // Fill the device buffer with 0xc3 from page 0, then prove a mapped target receives it.
  const mapping = container.mapDma(iova(0x300000n), {
    vaddr: hostAddress(ram.vaddr),
    size: ram.size,
  });
  dma(0x300000n, EDU.DMA_BUFFER, false);
  dma(EDU.DMA_BUFFER, 0x301000n, true);
  assert.ok(target.every((b) => b === 0xc3), "a mapped target receives the DMA");
  // Unmap: the host memory stays, the IOVA does not; the IOMMU must block the write.
  target.fill(0x5a);
  mapping.unmap();
  dma(EDU.DMA_BUFFER, 0x301000n, true);
  assert.ok(ram.bytes.subarray(0x1000).every((b) => b === 0x5a), "the IOMMU blocked the write");
});
