/**
 * QEMU's `edu` PCI device (hw/misc/edu.c) as far as the fake needs it: its
 * config space and the side effects of register writes on BAR0.
 *
 * Register writes arriving through `pwrite` on the device fd take effect
 * (liveness, factorial, interrupts, DMA); writes through an mmap of BAR0 only
 * store bytes, since the fake cannot trap them.
 *
 * @module
 */

/** PCI vendor id of edu. */
export const EDU_VENDOR_ID = 0x1234;
/** PCI device id of edu. */
export const EDU_DEVICE_ID = 0x11e8;
/** What the id register (BAR0 0x00) reads. */
export const EDU_ID = 0x010000ed;
/** Device address of edu's DMA buffer. */
export const EDU_DMA_BUFFER = 0x40000n;
/** Size of edu's DMA buffer. */
export const EDU_DMA_BUFFER_SIZE = 4096;
/** edu's DMA mask: 28 bits. */
export const EDU_DMA_MASK = (1n << 28n) - 1n;
/** PCI_COMMAND bit: bus master enable. */
export const PCI_COMMAND_MASTER = 0x4;

/** Random access to a region's backing bytes. */
export interface RegionIo {
  /**
   * Reads bytes.
   *
   * @param pos Offset in the region.
   * @param length Bytes.
   * @returns The bytes.
   */
  read(pos: number, length: number): Uint8Array;
  /**
   * Writes bytes.
   *
   * @param pos Offset in the region.
   * @param bytes The bytes.
   */
  write(pos: number, bytes: Uint8Array): void;
}

/** DMA through the container's IOMMU, as the device sees it. */
export interface DmaPort {
  /**
   * Device reads RAM.
   *
   * @param iova The IOVA.
   * @param length Bytes.
   * @returns The bytes, or null when the IOMMU blocks the access.
   */
  read(iova: bigint, length: number): Uint8Array | null;
  /**
   * Device writes RAM.
   *
   * @param iova The IOVA.
   * @param bytes The bytes.
   * @returns False when the IOMMU blocks the access.
   */
  write(iova: bigint, bytes: Uint8Array): boolean;
}

/**
 * The config space edu shows through vfio-pci (256 bytes, conventional PCI).
 *
 * @returns The initial bytes.
 */
export function eduConfigSpace(): Uint8Array {
  const c = new Uint8Array(256);
  const v = new DataView(c.buffer);
  v.setUint16(0x00, EDU_VENDOR_ID, true);
  v.setUint16(0x02, EDU_DEVICE_ID, true);
  v.setUint16(0x06, 0x0010, true); // status: capabilities list
  c[0x08] = 0x10; // revision
  c[0x0a] = 0xff; // class PCI_CLASS_OTHERS (0x00ff)
  v.setUint16(0x2c, 0x1af4, true); // subsystem vendor
  v.setUint16(0x2e, 0x1100, true); // subsystem
  c[0x34] = 0x40; // capabilities pointer
  c[0x3d] = 1; // interrupt pin INTA
  c[0x40] = 0x05; // MSI capability, last in the list
  v.setUint16(0x42, 0x0080, true); // MSI: 64-bit, one vector
  return c;
}

/** Config space bytes a write may change: command and interrupt line. */
export const CONFIG_WRITE_MASK: ReadonlyMap<number, number> = new Map([
  [0x04, 0x07], // I/O, memory, bus master
  [0x05, 0x04], // INTx disable
  [0x3c, 0xff], // interrupt line
]);

function factorial(n: number): number {
  let r = 1n;
  for (let i = 2n; i <= BigInt(n); i++) r = (r * i) & 0xffff_ffffn;
  return Number(r);
}

/**
 * Applies one register write of `size` bytes (4 or 8) at `addr` of BAR0,
 * following `edu_mmio_write`.
 *
 * @param bar BAR0's bytes.
 * @param addr Register offset.
 * @param bytes The written bytes (4 or 8).
 * @param device The DMA buffer, bus master state and IOMMU port.
 */
export function eduWrite(
  bar: RegionIo,
  addr: number,
  bytes: Uint8Array,
  device: { buffer: Uint8Array; busMaster: boolean; dma: DmaPort | null },
): void {
  const size = bytes.byteLength;
  if ((addr < 0x80 && size !== 4) || (addr >= 0x80 && size !== 4 && size !== 8)) return;
  const val = size === 8
    ? new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)
    : BigInt(new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true));
  const put32 = (at: number, x: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, x >>> 0, true);
    bar.write(at, b);
  };
  const get32 = (at: number) => new DataView(bar.read(at, 4).buffer).getUint32(0, true);
  const get64 = (at: number) => new DataView(bar.read(at, 8).buffer).getBigUint64(0, true);
  const raise = (bits: number) => put32(0x24, get32(0x24) | bits);
  switch (addr) {
    case 0x04:
      put32(0x04, ~Number(val));
      break;
    case 0x08:
      put32(0x08, factorial(Number(val)));
      if (get32(0x20) & 0x80) raise(0x1);
      break;
    case 0x20:
      put32(0x20, Number(val) & 0x80);
      break;
    case 0x60:
      raise(Number(val));
      break;
    case 0x64:
      put32(0x24, get32(0x24) & ~Number(val));
      break;
    case 0x80:
    case 0x88:
    case 0x90: {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, val, true);
      bar.write(addr, b);
      break;
    }
    case 0x98: {
      if ((val & 1n) === 0n || (get32(0x98) & 1) !== 0) return;
      eduDma(get64(0x80), get64(0x88), get64(0x90), Number(val), device);
      put32(0x98, Number(val) & ~1);
      if (val & 4n) raise(0x100);
      break;
    }
  }
}

function eduDma(
  src: bigint,
  dst: bigint,
  count: bigint,
  cmd: number,
  device: { buffer: Uint8Array; busMaster: boolean; dma: DmaPort | null },
): void {
  const inBuffer = (a: bigint) =>
    a >= EDU_DMA_BUFFER && a + count <= EDU_DMA_BUFFER + BigInt(EDU_DMA_BUFFER_SIZE);
  // QEMU aborts on an out-of-range buffer access; the fake ignores the command.
  // Without bus mastering or an IOMMU mapping the access goes nowhere.
  if (!device.busMaster || device.dma === null) return;
  const n = Number(count);
  if ((cmd & 2) === 0) {
    if (!inBuffer(dst)) return;
    const data = device.dma.read(src & EDU_DMA_MASK, n);
    if (data !== null) device.buffer.set(data, Number(dst - EDU_DMA_BUFFER));
  } else {
    if (!inBuffer(src)) return;
    const off = Number(src - EDU_DMA_BUFFER);
    device.dma.write(dst & EDU_DMA_MASK, device.buffer.slice(off, off + n));
  }
}
