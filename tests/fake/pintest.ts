/**
 * A fake of the `pintest` test mdev (`tests/kernel/modules/pintest/pintest.c`):
 * an emulated-IOMMU VFIO device with one 4 KiB region of 64-bit registers
 * that pins pages (`vfio_pin_pages`), DMA-writes and reads them
 * (`vfio_dma_rw`) and unpins them on request, and lets go of pinned pages
 * when their IOVA is unmapped (`dma_unmap`) or the device is closed. Its
 * answers are held to the real module by the pinned-scope faithfulness rows
 * (`tests/faithfulness_pinned_scenario.ts`).
 *
 * @module
 */

import { EEXIST, EFAULT, EINVAL, ENOENT, ENOSPC, ENOTTY, EPERM } from "../../sys/errno.ts";
import { VFIO_DMA_MAP_FLAG_WRITE } from "../../vfio/constants.ts";
import {
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
} from "../../vfio/ioctls.ts";
import { FakeDevice, type FeatureContext } from "./device.ts";
import type { FakeGroup } from "./group.ts";
import { PAGE_SIZE, type Type1Iommu } from "./type1.ts";
import { copyFromUser, copyToUser, fail, isMapped, u32, type UserArg } from "./user_memory.ts";

/** pintest's region size. */
export const PINTEST_REGION_SIZE = 0x1000;
/** The most pages one pintest device pins. */
export const PINTEST_MAX_PINS = 256;
const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
const REG = { PIN: 0x00, DMA_WRITE: 0x08, DATA: 0x10, UNPIN: 0x18, DMA_READ: 0x20 } as const;
const REG_PINNED = 0x28;
const REG_UNMAPPED = 0x30;

/** The fake pintest device; its group is an emulated IOMMU group. */
export class FakePintestDevice extends FakeDevice {
  #opens = 0;
  #pins: bigint[] = [];
  #data = 0n;
  #unmapped = 0n;
  #iommu: Type1Iommu | null = null;
  #notify = (iova: bigint, size: bigint) => this.#dmaUnmap(iova, size);

  /**
   * Creates the device.
   *
   * @param name The mdev UUID.
   * @param group Its (emulated) group.
   */
  constructor(name: string, group: FakeGroup) {
    super(name, group);
  }

  /** Opens a device fd; the first registers the `dma_unmap` callback. */
  override open(): void {
    if (this.#opens++ > 0) return;
    this.#iommu = this.group.container?.iommu ?? null;
    this.#iommu?.unmapNotifiers.add(this.#notify);
  }

  /** Closes a device fd; the last one unpins everything (`close_device`). */
  override close(): void {
    if (--this.#opens > 0) return;
    this.#reset();
    this.#iommu?.unmapNotifiers.delete(this.#notify);
    this.#iommu = null;
  }

  #reset(): void {
    for (const iova of [...this.#pins]) this.#drop(iova);
    this.#data = 0n;
  }

  #drop(iova: bigint): void {
    this.#pins.splice(this.#pins.indexOf(iova), 1);
    const dma = this.#iommu?.findDma(iova, PAGE_SIZE);
    if (dma === undefined) return;
    const refs = dma.pins.get(iova) ?? 0;
    if (refs <= 1) dma.pins.delete(iova);
    else dma.pins.set(iova, refs - 1);
  }

  #dmaUnmap(iova: bigint, size: bigint): void {
    for (const page of [...this.#pins]) {
      if (page >= iova && page - iova < size) {
        this.#drop(page);
        this.#unmapped++;
      }
    }
  }

  /**
   * pintest's ioctl: device info (platform, one region, no IRQs), region 0's
   * info, reset; everything else as the module answers it.
   *
   * @param code The request number.
   * @param arg The user argument.
   * @param _context Unused (no features).
   * @returns 0.
   * @throws {KernelError} `EINVAL` for short argsz or other regions and IRQs, `ENOTTY` otherwise.
   */
  override ioctl(code: number, arg: UserArg, _context: FeatureContext): number {
    switch (code) {
      case Number(VFIO_DEVICE_GET_INFO.code): {
        const head = arg.read(0, 16);
        if (u32(head, 0) < 16) fail(EINVAL);
        const v = new DataView(head.buffer);
        v.setUint32(4, VFIO_DEVICE_FLAGS_PLATFORM, true);
        v.setUint32(8, 1, true);
        v.setUint32(12, 0, true);
        arg.write(0, head);
        return 0;
      }
      case Number(VFIO_DEVICE_GET_REGION_INFO.code): {
        const info = arg.read(0, 32);
        const v = new DataView(info.buffer);
        if (v.getUint32(0, true) < 32 || v.getUint32(8, true) !== 0) fail(EINVAL);
        v.setUint32(4, 3, true); // READ | WRITE
        v.setUint32(12, 0, true);
        v.setBigUint64(16, BigInt(PINTEST_REGION_SIZE), true);
        v.setBigUint64(24, 0n, true);
        arg.write(0, info);
        return 0;
      }
      case Number(VFIO_DEVICE_GET_IRQ_INFO.code):
        return fail(EINVAL);
      case Number(VFIO_DEVICE_RESET.code):
        this.#reset();
        return 0;
      default:
        return fail(ENOTTY);
    }
  }

  #check(count: number, offset: bigint): number {
    if (count !== 8 || offset < 0n || offset % 8n !== 0n || offset >= PINTEST_REGION_SIZE) {
      fail(EINVAL);
    }
    return Number(offset);
  }

  /**
   * Reads a register (8 bytes at an 8-byte aligned offset).
   *
   * @param buf Destination (8 bytes).
   * @param offset The register.
   * @returns 8.
   * @throws {KernelError} `EINVAL` for another size or offset.
   */
  override pread(buf: Uint8Array, offset: bigint): number {
    const at = this.#check(buf.byteLength, offset);
    const value = at === REG.DATA
      ? this.#data
      : at === REG_PINNED
      ? BigInt(this.#pins.length)
      : at === REG_UNMAPPED
      ? this.#unmapped
      : 0n;
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, value, true);
    return 8;
  }

  /**
   * Writes a register; PIN, DMA_WRITE, UNPIN and DMA_READ act at once.
   *
   * @param buf The 8 bytes.
   * @param offset The register.
   * @returns 8.
   * @throws {KernelError} The errno pintest returns (`EINVAL` unmapped or
   *   unaligned, `EEXIST` pinned twice, `ENOENT` unpinning what is not pinned).
   */
  override pwrite(buf: Uint8Array, offset: bigint): number {
    const at = this.#check(buf.byteLength, offset);
    const value = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    switch (at) {
      case REG.PIN:
        this.#pin(value);
        break;
      case REG.DMA_WRITE:
        this.#dmaRw(value, true);
        break;
      case REG.DATA:
        this.#data = value;
        break;
      case REG.UNPIN: {
        const page = value & ~(PAGE_SIZE - 1n);
        if (!this.#pins.includes(page)) fail(ENOENT);
        this.#drop(page);
        break;
      }
      case REG.DMA_READ:
        this.#dmaRw(value, false);
        break;
      default:
        fail(EINVAL);
    }
    return 8;
  }

  /** `mmap`: pintest has no mmap op. */
  override mmap(): bigint {
    return fail(EINVAL);
  }

  // vfio_pin_pages → vfio_iommu_type1_pin_pages.
  #pin(iova: bigint): void {
    if ((iova & (PAGE_SIZE - 1n)) !== 0n) fail(EINVAL);
    if (this.#pins.includes(iova)) fail(EEXIST);
    if (this.#pins.length === PINTEST_MAX_PINS) fail(ENOSPC);
    const iommu = this.#iommu;
    const dma = iommu?.findDma(iova, PAGE_SIZE);
    if (iommu === null || dma === undefined || dma.vaddrInvalid) fail(EINVAL);
    if (!isMapped(dma.vaddr + (iova - dma.iova), PAGE_SIZE)) fail(EFAULT);
    dma.pins.set(iova, (dma.pins.get(iova) ?? 0) + 1);
    if (iommu.tracking) dma.bitmap?.set((iova - dma.iova) >> iommu.pgshift, 1n);
    iommu.groups.get(this.group.id)!.pinnedScope = true;
    this.#pins.push(iova);
  }

  // vfio_dma_rw → vfio_iommu_type1_dma_rw_chunk, 8 bytes of DATA.
  #dmaRw(iova: bigint, write: boolean): void {
    const iommu = this.#iommu;
    const dma = iommu?.findDma(iova, 1n);
    if (iommu === null || dma === undefined || iova + 8n > dma.iova + dma.size) fail(EINVAL);
    if (write && (dma.prot & VFIO_DMA_MAP_FLAG_WRITE) === 0) fail(EPERM);
    const vaddr = dma.vaddr + (iova - dma.iova);
    if (!isMapped(vaddr, 8n)) fail(EFAULT);
    if (write) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, this.#data, true);
      copyToUser(vaddr, bytes);
      if (iommu.tracking) dma.bitmap?.set((iova - dma.iova) >> iommu.pgshift, 1n);
    } else {
      this.#data = new DataView(copyFromUser(vaddr, 8).buffer).getBigUint64(0, true);
    }
  }
}
