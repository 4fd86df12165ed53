/**
 * The region layout of the fake vfio-pci device, the memfds backing its
 * regions, and DMA through the container's IOMMU.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { errno, libc } from "../../sys/_libc.ts";
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from "../../vfio/constants.ts";
import type { DmaPort, RegionIo } from "./edu.ts";
import type { Type1Iommu } from "./type1.ts";
import { copyFromUser, copyToUser, isMapped, KernelError } from "./user_memory.ts";

/** `VFIO_PCI_OFFSET_SHIFT`. */
export const REGION_SHIFT = 40n;
/** Regions of a PCI device without device-specific regions. */
export const NUM_REGIONS = 9;
/** IRQ indexes of a PCI device: INTx, MSI, MSI-X, ERR, REQ. */
export const NUM_IRQS = 5;
/** Size of edu's BAR0. */
export const BAR0_SIZE = 1n << 20n;
/** Size of conventional PCI config space. */
export const CONFIG_SIZE = 256n;
/** The config space region index. */
export const CONFIG_INDEX = 7;
/** The VGA region index (absent on edu). */
export const VGA_INDEX = 8;
/** The ROM region index (first one that cannot be mmap'd). */
export const ROM_INDEX = 6;

/**
 * The flags and size of a region of the edu device.
 *
 * @param index The region index.
 * @returns Flags and size (0 for absent regions).
 */
export function regionOf(index: number): { flags: number; size: bigint } {
  if (index === 0) {
    return {
      flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
      size: BAR0_SIZE,
    };
  }
  if (index === CONFIG_INDEX) {
    return { flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, size: CONFIG_SIZE };
  }
  return { flags: 0, size: 0n }; // BAR1-5 unimplemented, no ROM
}

/** A region's bytes in a real memfd, so mmaps and pread/pwrite agree. */
export class MemfdIo implements RegionIo {
  /** The memfd. */
  readonly fd: number;

  /**
   * Creates and sizes the memfd.
   *
   * @param name The memfd name.
   * @param size Bytes.
   * @throws {KernelError} When memfd_create or ftruncate fails.
   */
  constructor(name: string, size: bigint) {
    this.fd = libc().memfdCreate(new TextEncoder().encode(name + "\0"), 1 /* MFD_CLOEXEC */);
    if (this.fd < 0) throw new KernelError(errno());
    if (libc().ftruncate(this.fd, size) < 0) throw new KernelError(errno());
  }

  /**
   * Reads bytes.
   *
   * @param pos Offset.
   * @param length Bytes.
   * @returns The bytes.
   */
  read(pos: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    if (length > 0) libc().pread(this.fd, buf, BigInt(length), BigInt(pos));
    return buf;
  }

  /**
   * Writes bytes.
   *
   * @param pos Offset.
   * @param bytes The bytes.
   */
  write(pos: number, bytes: Uint8Array): void {
    if (bytes.byteLength > 0) libc().pwrite(this.fd, bytes, BigInt(bytes.byteLength), BigInt(pos));
  }
}

/**
 * DMA through a container's IOMMU: the mappings translate IOVAs to host
 * addresses, honouring READ/WRITE and skipping (blocking) unmapped IOVAs.
 *
 * @param iommu The IOMMU, or null/undefined when the group has none.
 * @returns The port, or null without an IOMMU.
 */
export function iommuDmaPort(iommu: Type1Iommu | null | undefined): DmaPort | null {
  if (iommu === null || iommu === undefined) return null;
  const chunks = (iova: bigint, length: number, need: number) => {
    const out: { vaddr: bigint; length: number }[] = [];
    for (let at = iova, end = iova + BigInt(length); at < end;) {
      const dma = iommu.findDma(at, 1n);
      if (dma === undefined || dma.vaddrInvalid || (dma.prot & need) === 0) return null;
      const stop = end < dma.iova + dma.size ? end : dma.iova + dma.size;
      const vaddr = dma.vaddr + (at - dma.iova);
      if (!isMapped(vaddr, stop - at)) return null;
      out.push({ vaddr, length: Number(stop - at) });
      at = stop;
    }
    return out;
  };
  return {
    read(iova, length) {
      const parts = chunks(iova, length, VFIO_DMA_MAP_FLAG_READ);
      if (parts === null) return null;
      const out = new Uint8Array(length);
      let at = 0;
      for (const p of parts) {
        out.set(copyFromUser(p.vaddr, p.length), (at += p.length) - p.length);
      }
      return out;
    },
    write(iova, bytes) {
      const parts = chunks(iova, bytes.byteLength, VFIO_DMA_MAP_FLAG_WRITE);
      if (parts === null) return false;
      let at = 0;
      for (const p of parts) copyToUser(p.vaddr, bytes.subarray(at, at += p.length));
      return true;
    },
  };
}
