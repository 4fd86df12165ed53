/**
 * A VFIO device fd: info, regions (read, write, mmap), PCI config space, reset.
 *
 * @module
 */

import { hex } from "../sys/address.ts";
import { MAP_SHARED, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import { ResourceBusyError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP } from "./constants.ts";
import { VfioStateError } from "./errors.ts";
import { RegionMapping } from "./region_mapping.ts";
import {
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
} from "./ioctls.ts";
import {
  decodeDeviceInfo,
  decodeIrqInfo,
  decodeRegionInfo,
  type DeviceInfo,
  encodeDeviceInfoRequest,
  encodeIrqInfoRequest,
  encodeRegionInfoRequest,
  type IrqInfo,
  REGION_INFO_SIZE,
  type RegionInfo,
} from "./uapi/device_info.ts";

/**
 * A VFIO device, opened with {@linkcode VfioGroup.openDevice}.
 *
 * @example Read the edu device's ID register
 * ```ts ignore
 * using device = group.openDevice("0000:00:03.0");
 * using bar0 = device.mmapRegion(0);
 * console.log(bar0.readU32(0).toString(16)); // "10000ed"
 * ```
 */
export class VfioDevice implements Disposable {
  #sys: Syscalls;
  #fd: number;
  #name: string;
  #onClose: () => void;
  #regions = new Map<number, RegionInfo>();
  #mappings = new Set<RegionMapping>();

  /**
   * Wraps a device fd (groups do this).
   *
   * @param sys The syscall boundary.
   * @param fd The device fd, now owned by this object.
   * @param name The device name.
   * @param onClose Called once the fd is closed.
   */
  constructor(sys: Syscalls, fd: number, name: string, onClose: () => void = () => {}) {
    this.#sys = sys;
    this.#fd = fd;
    this.#name = name;
    this.#onClose = onClose;
  }

  /** The raw device fd. */
  get unsafeFd(): number {
    return this.#fd;
  }

  /**
   * The syscall boundary the device was opened through, for objects layered
   * on its fd (such as `VfioDeviceMigration`).
   */
  get syscalls(): Syscalls {
    return this.#sys;
  }

  /** The device name. */
  get name(): string {
    return this.#name;
  }

  /** Whether the device is closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  #check(what: string): number {
    if (this.#fd < 0) throw new VfioStateError(`Cannot ${what}: device ${this.#name} is closed`);
    return this.#fd;
  }

  /**
   * Reads `VFIO_DEVICE_GET_INFO`.
   *
   * @returns Flags, region and IRQ counts.
   * @throws {IoctlError} If the kernel refuses.
   */
  info(): DeviceInfo {
    const buf = encodeDeviceInfoRequest();
    this.#sys.ioctl(this.#check("read device info"), VFIO_DEVICE_GET_INFO, buf);
    return decodeDeviceInfo(buf);
  }

  /**
   * Reads `VFIO_DEVICE_GET_REGION_INFO`, with its caps (re-querying with the
   * `argsz` the kernel asks for).
   *
   * @param index The region index.
   * @returns The region info.
   * @throws {IoctlError} `EINVAL` for an index past the last region.
   */
  regionInfo(index: number): RegionInfo {
    const fd = this.#check("read region info");
    let argsz = REGION_INFO_SIZE;
    for (let attempt = 0; attempt < 4; attempt++) {
      const buf = encodeRegionInfoRequest(index, argsz);
      this.#sys.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, buf);
      const want = new DataView(buf.buffer).getUint32(0, true);
      if (want <= argsz) {
        const info = decodeRegionInfo(buf.subarray(0, argsz));
        this.#regions.set(index, info);
        return info;
      }
      argsz = want;
    }
    throw new VfioStateError(`Cannot read region ${index} info: argsz kept growing`);
  }

  /**
   * Reads `VFIO_DEVICE_GET_IRQ_INFO`.
   *
   * @param index The IRQ index.
   * @returns The IRQ info.
   * @throws {IoctlError} If the kernel refuses.
   */
  irqInfo(index: number): IrqInfo {
    const buf = encodeIrqInfoRequest(index);
    this.#sys.ioctl(this.#check("read IRQ info"), VFIO_DEVICE_GET_IRQ_INFO, buf);
    return decodeIrqInfo(buf);
  }

  #region(index: number, offset: bigint, length: bigint, what: string): RegionInfo {
    const info = this.#regions.get(index) ?? this.regionInfo(index);
    if (offset < 0n || offset + length > info.size) {
      throw new RangeError(
        `Cannot ${what} region ${index} at ${hex(offset)}+${length}: the region is ${
          hex(info.size)
        } bytes`,
      );
    }
    return info;
  }

  /**
   * Reads bytes from a region (`pread` at the region's offset).
   *
   * @param index The region index.
   * @param offset The offset in the region.
   * @param buf Where the bytes go; its length is how many are read.
   * @returns `buf`.
   * @throws {RangeError} Past the region's end.
   * @throws {SyscallError} If the read fails or comes up short.
   */
  readRegion(index: number, offset: bigint, buf: Uint8Array): Uint8Array {
    const fd = this.#check("read a region");
    const info = this.#region(index, offset, BigInt(buf.byteLength), "read");
    const n = this.#sys.pread(fd, buf, info.offset + offset);
    if (n !== buf.byteLength) {
      throw new RangeError(`Cannot read region ${index}: short read (${n} of ${buf.byteLength})`);
    }
    return buf;
  }

  /**
   * Writes bytes to a region (`pwrite` at the region's offset).
   *
   * @param index The region index.
   * @param offset The offset in the region.
   * @param bytes The bytes.
   * @throws {RangeError} Past the region's end.
   * @throws {SyscallError} If the write fails or comes up short.
   */
  writeRegion(index: number, offset: bigint, bytes: Uint8Array): void {
    const fd = this.#check("write a region");
    const info = this.#region(index, offset, BigInt(bytes.byteLength), "write");
    const n = this.#sys.pwrite(fd, bytes, info.offset + offset);
    if (n !== bytes.byteLength) {
      throw new RangeError(
        `Cannot write region ${index}: short write (${n} of ${bytes.byteLength})`,
      );
    }
  }

  /**
   * Maps a region into this process.
   *
   * @param index The region index; the region must have `VFIO_REGION_INFO_FLAG_MMAP`.
   * @returns The mapping; dispose it to unmap.
   * @throws {RangeError} If the region cannot be mmap'd.
   * @throws {SyscallError} If `mmap` fails.
   */
  mmapRegion(index: number): RegionMapping {
    const fd = this.#check("map a region");
    const info = this.#regions.get(index) ?? this.regionInfo(index);
    if ((info.flags & VFIO_REGION_INFO_FLAG_MMAP) === 0 || info.size === 0n) {
      throw new RangeError(`Cannot map region ${index}: the region does not support mmap`);
    }
    const addr = this.#sys.mmap(info.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, info.offset);
    const mapping = new RegionMapping({ index, addr, size: info.size }, () => {
      this.#mappings.delete(mapping);
      this.#sys.munmap(addr, info.size);
    });
    this.#mappings.add(mapping);
    return mapping;
  }

  /**
   * Reads PCI config space (region 7).
   *
   * @param offset The config offset.
   * @param size 1, 2 or 4 bytes.
   * @returns The little-endian value.
   * @throws {RangeError} Past the config space.
   */
  readConfig(offset: number, size: 1 | 2 | 4): number {
    const buf = this.readRegion(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(offset), new Uint8Array(size));
    const v = new DataView(buf.buffer);
    return size === 1 ? v.getUint8(0) : size === 2 ? v.getUint16(0, true) : v.getUint32(0, true);
  }

  /**
   * Writes PCI config space (region 7).
   *
   * @param offset The config offset.
   * @param size 1, 2 or 4 bytes.
   * @param value The value, written little-endian.
   * @throws {RangeError} Past the config space.
   */
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    const buf = new Uint8Array(size);
    const v = new DataView(buf.buffer);
    if (size === 1) v.setUint8(0, value);
    else if (size === 2) v.setUint16(0, value, true);
    else v.setUint32(0, value, true);
    this.writeRegion(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(offset), buf);
  }

  /**
   * Resets the device (`VFIO_DEVICE_RESET`).
   *
   * @throws {IoctlError} If the device cannot be reset.
   */
  reset(): void {
    this.#sys.ioctlValue(this.#check("reset"), VFIO_DEVICE_RESET, 0n);
  }

  /**
   * Closes the device fd. Idempotent. While a region mapping from
   * {@linkcode VfioDevice.mmapRegion} is still mapped it refuses and changes
   * nothing: unmap it first (`using` in declaration order does).
   *
   * @throws {ResourceBusyError} Naming the mapped regions.
   * @throws {SyscallError} From `close` (the fd is released anyway).
   */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#mappings.size > 0) {
      throw new ResourceBusyError(
        `device ${this.#name}`,
        [...this.#mappings].map((m) => `the mapping of region ${m.index}`),
        { order: "unmap it first" },
      );
    }
    const fd = this.#fd;
    this.#fd = -1;
    try {
      this.#sys.close(fd);
    } finally {
      this.#onClose();
    }
  }

  /** Closes the device (see {@linkcode VfioDevice.close}). */
  [Symbol.dispose](): void {
    this.close();
  }
}
