// The pintest mdev (tests/kernel/modules/pintest/pintest.c), loaded by the
// harness in the custom-6.12-viommu boot: an emulated VFIO device that pins
// and DMA-writes guest pages on request, like an mdev vendor driver.
import type { VfioDevice } from "../../../vfio/device.ts";

const PARENT = "/sys/class/mdev_bus/pintest";
const TYPE = `${PARENT}/mdev_supported_types/pintest-1`;

/** pintest's registers in region 0 (see pintest.c). */
export const PINTEST = {
  PIN: 0x00n,
  DMA_WRITE: 0x08n,
  DATA: 0x10n,
  UNPIN: 0x18n,
  DMA_READ: 0x20n,
  PINNED: 0x28n,
  UNMAPPED: 0x30n,
} as const;

/** A pintest mdev instance; disposing it removes the mdev. */
export interface PintestMdev extends Disposable {
  /** The mdev's UUID: its VFIO device name. */
  readonly uuid: string;
  /** Its IOMMU group (an emulated-IOMMU group of its own). */
  readonly group: number;
}

/** Creates a pintest mdev (writes a fresh UUID to the type's `create`). */
export function createPintest(): PintestMdev {
  const uuid = crypto.randomUUID();
  Deno.writeTextFileSync(`${TYPE}/create`, uuid);
  const link = Deno.readLinkSync(`/sys/bus/mdev/devices/${uuid}/iommu_group`);
  const group = Number(link.split("/").pop());
  let live = true;
  return {
    uuid,
    group,
    [Symbol.dispose]() {
      if (!live) return;
      live = false;
      Deno.writeTextFileSync(`/sys/bus/mdev/devices/${uuid}/remove`, "1");
    },
  };
}

function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

/** Drives an opened pintest device through its region, as a test's "device". */
export class Pintest {
  #dev: VfioDevice;
  constructor(dev: VfioDevice) {
    this.#dev = dev;
  }
  /** vfio_pin_pages() of the page at `iova`. */
  pin(iova: bigint): void {
    this.#dev.writeRegion(0, PINTEST.PIN, u64(iova));
  }
  /** vfio_unpin_pages() of the page at `iova`. */
  unpin(iova: bigint): void {
    this.#dev.writeRegion(0, PINTEST.UNPIN, u64(iova));
  }
  /** vfio_dma_rw() writing `data` (8 bytes) to `iova`. */
  dmaWrite(iova: bigint, data: bigint): void {
    this.#dev.writeRegion(0, PINTEST.DATA, u64(data));
    this.#dev.writeRegion(0, PINTEST.DMA_WRITE, u64(iova));
  }
  #read(reg: bigint): bigint {
    return new DataView(this.#dev.readRegion(0, reg, new Uint8Array(8)).buffer).getBigUint64(
      0,
      true,
    );
  }
  /** Pages pinned now. */
  get pinned(): number {
    return Number(this.#read(PINTEST.PINNED));
  }
  /** Pages the device unpinned because their IOVA was unmapped. */
  get unmapped(): number {
    return Number(this.#read(PINTEST.UNMAPPED));
  }
}
