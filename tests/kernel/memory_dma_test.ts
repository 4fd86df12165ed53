// GuestMemory mapped into the real container: edu DMAs into guest RAM and the
// bytes read back through GuestMemory (run by `deno task test:kernel`).
import assert from "node:assert/strict";
import { GuestMemory } from "../../memory/guest_memory.ts";
import { guestAddress } from "../../sys/address.ts";
import { VfioContainer } from "../../vfio/container.ts";
import { EDU, groupAndDevice, waitDma } from "./_group.ts";

const MiB = 1n << 20n;

for (const backing of ["anonymous", "memfd"] as const) {
  Deno.test(`GuestMemory.mapInto() lets edu DMA into ${backing} guest RAM`, () => {
    const { group, device } = groupAndDevice();
    using container = VfioContainer.open();
    using g = container.attachGroup(group);
    using dev = g.openDevice(device);
    dev.writeConfig(0x04, 2, dev.readConfig(0x04, 2) | 0x6); // memory decode + bus master
    using regs = dev.mmapRegion(0);
    // Two regions with a hole between them, mapped at IOVA = GPA + 1 MiB.
    using memory = GuestMemory.create([
      { gpa: guestAddress(0n), size: 4n * MiB },
      { gpa: guestAddress(8n * MiB), size: 4n * MiB },
    ], { backing });
    using lease = memory.mapInto(container, { iovaBase: MiB });
    assert.equal(container.mappings.length, 2);
    const src = guestAddress(0x2000n);
    const dst = guestAddress(8n * MiB + 0x3000n); // in the second region
    const pattern = new Uint8Array(2048).map((_, i) => (i * 13 + 5) & 0xff);
    memory.write(src, pattern);
    const dma = (from: bigint, to: bigint, toRam: boolean) => {
      regs.writeU64(EDU.DMA_SRC, from);
      regs.writeU64(EDU.DMA_DST, to);
      regs.writeU64(EDU.DMA_COUNT, BigInt(pattern.length));
      regs.writeU32(EDU.DMA_CMD, EDU.CMD_START | (toRam ? EDU.CMD_TO_RAM : 0));
      waitDma(() => regs.readU32(EDU.DMA_CMD));
    };
    dma(MiB + src, EDU.DMA_BUFFER, false); // guest RAM -> device, through the IOMMU
    dma(EDU.DMA_BUFFER, MiB + dst, true); // device -> guest RAM
    assert.deepEqual(
      memory.read(dst, pattern.length),
      pattern,
      "the DMA landed where GuestMemory reads",
    );
    assert.equal(memory.readU32(guestAddress(dst + 4096n)), 0, "and nowhere else");
    lease.unmap();
    assert.equal(container.mappings.length, 0);
  });
}
