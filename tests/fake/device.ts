/**
 * A fake vfio-pci device modelled on QEMU's edu: device info, regions, IRQs,
 * reset, `VFIO_DEVICE_FEATURE`, and `pread` / `pwrite` / `mmap` on region
 * offsets (`index << 40`). BAR0 and config space are backed by real memfds,
 * so an mmap of BAR0 and `pread`/`pwrite` see the same bytes.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { errno, libc } from "../../sys/_libc.ts";
import { MAP_FAILED, MAP_SHARED } from "../../sys/constants.ts";
import { EINVAL, ENOTTY } from "../../sys/errno.ts";
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_REGION_INFO_FLAG_MMAP,
} from "../../vfio/constants.ts";
import {
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
} from "../../vfio/ioctls.ts";
import {
  BAR0_SIZE,
  CONFIG_INDEX,
  CONFIG_SIZE,
  iommuDmaPort,
  MemfdIo,
  NUM_IRQS,
  NUM_REGIONS,
  REGION_SHIFT,
  regionOf,
  ROM_INDEX,
  VGA_INDEX,
} from "./device_regions.ts";
import {
  CONFIG_WRITE_MASK,
  EDU_DMA_BUFFER_SIZE,
  EDU_ID,
  eduConfigSpace,
  eduWrite,
  PCI_COMMAND_MASTER,
} from "./edu.ts";
import type { FakeDataFile } from "./fds.ts";
import type { FakeGroup } from "./group.ts";
import { fail, u32, type UserArg } from "./user_memory.ts";

/** What the kernel lends a feature handler: installing the fd of a new file. */
export interface FeatureContext {
  /**
   * Installs a migration data file at the lowest free fd (`get_unused_fd` +
   * `fd_install`); the fd counts in `openFds` until the user closes it.
   *
   * @param file The file.
   * @returns The new fd.
   */
  installDataFd(file: FakeDataFile): number;
}

/**
 * The extension point for `VFIO_DEVICE_FEATURE` (a fake migration-v2 device
 * plugs in here). Called after the generic header checks of
 * `vfio_ioctl_device_feature`.
 */
export interface DeviceFeatureHandler {
  /**
   * Handles one feature request.
   *
   * @param device The device, by name.
   * @param flags The request flags (feature number and GET/SET/PROBE).
   * @param payload The user argument, offset 8 being the payload.
   * @param payloadSize `argsz - 8`.
   * @param context Installs data fds (`MIG_DEVICE_STATE` arcs that open a session).
   * @returns The ioctl return value.
   * @throws {KernelError} The errno (ENOTTY for features without driver ops).
   */
  feature(
    device: { readonly name: string },
    flags: number,
    payload: UserArg,
    payloadSize: number,
    context: FeatureContext,
  ): number;
  /**
   * The device was reset: its first fd opened (`open_device`) or
   * `VFIO_DEVICE_RESET` succeeded. A migration driver returns to `RUNNING`.
   *
   * @param device The device, by name.
   */
  reset?(device: { readonly name: string }): void;
  /**
   * The device's last fd closed (`close_device`): a migration driver ends its
   * data transfer sessions.
   *
   * @param device The device, by name.
   */
  release?(device: { readonly name: string }): void;
}

/** vfio-pci without `mig_ops` / `log_ops`: every feature is ENOTTY. */
export const NO_FEATURES: DeviceFeatureHandler = { feature: () => fail(ENOTTY) };

/** One device of a group. */
export class FakeDevice {
  /** The device name. */
  readonly name: string;
  /** The group holding the device. */
  readonly group: FakeGroup;
  /** The `VFIO_DEVICE_FEATURE` handler. */
  readonly features: DeviceFeatureHandler;
  #openCount = 0;
  #bar0: MemfdIo | null = null;
  #config: MemfdIo | null = null;
  #buffer = new Uint8Array(EDU_DMA_BUFFER_SIZE);

  /**
   * Creates the device.
   *
   * @param name The device name.
   * @param group The group.
   * @param features The feature handler.
   */
  constructor(name: string, group: FakeGroup, features: DeviceFeatureHandler = NO_FEATURES) {
    this.name = name;
    this.group = group;
    this.features = features;
  }

  /** Opens one more device fd; the first open resets the device (as vfio-pci's enable does). */
  open(): void {
    if (this.#openCount++ > 0) return;
    this.#bar0 = new MemfdIo(`fake-vfio-${this.name}-bar0`, BAR0_SIZE);
    this.#config = new MemfdIo(`fake-vfio-${this.name}-config`, CONFIG_SIZE);
    this.#config.write(0, eduConfigSpace());
    const id = new Uint8Array(4);
    new DataView(id.buffer).setUint32(0, EDU_ID, true);
    this.#bar0.write(0, id);
    this.#buffer.fill(0);
    this.features.reset?.(this);
  }

  /** Closes one device fd; the last close frees the memfds (live mmaps keep their own reference). */
  close(): void {
    if (--this.#openCount > 0) return;
    for (const io of [this.#bar0, this.#config]) if (io !== null) libc().close(io.fd);
    this.#bar0 = this.#config = null;
    this.features.release?.(this);
  }

  #io(index: number): MemfdIo {
    const io = index === 0 ? this.#bar0 : index === CONFIG_INDEX ? this.#config : null;
    if (io === null) fail(EINVAL);
    return io;
  }

  /**
   * `vfio_device_fops_unl_ioctl` → `vfio_pci_core_ioctl`.
   *
   * @param code The request number.
   * @param arg The user argument.
   * @param context What feature handlers may ask of the kernel.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  ioctl(code: number, arg: UserArg, context: FeatureContext): number {
    switch (code) {
      case Number(VFIO_DEVICE_GET_INFO.code): {
        const head = arg.read(0, 16);
        if (u32(head, 0) < 16) fail(EINVAL);
        const v = new DataView(head.buffer);
        v.setUint32(4, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, true);
        v.setUint32(8, NUM_REGIONS, true);
        v.setUint32(12, NUM_IRQS, true);
        arg.write(0, head);
        return 0;
      }
      case Number(VFIO_DEVICE_GET_REGION_INFO.code): {
        const info = arg.read(0, 32);
        const v = new DataView(info.buffer);
        const index = v.getUint32(8, true);
        // No VGA on edu: the VGA index is EINVAL like an out-of-range one.
        if (v.getUint32(0, true) < 32 || index >= NUM_REGIONS || index === VGA_INDEX) fail(EINVAL);
        const region = regionOf(index);
        v.setUint32(4, region.flags, true);
        v.setBigUint64(16, region.size, true);
        v.setBigUint64(24, BigInt(index) << REGION_SHIFT, true);
        arg.write(0, info);
        return 0;
      }
      case Number(VFIO_DEVICE_GET_IRQ_INFO.code): {
        const info = arg.read(0, 16);
        const v = new DataView(info.buffer);
        const index = v.getUint32(8, true);
        // ERR (3) exists only on PCIe devices; edu is conventional PCI.
        if (v.getUint32(0, true) < 16 || index >= NUM_IRQS || index === 3) fail(EINVAL);
        v.setUint32(4, 1 | (index === 0 ? 2 | 4 : 8), true); // EVENTFD | MASKABLE|AUTOMASKED or NORESIZE
        v.setUint32(12, [1, 1, 0, 0, 1][index], true); // INTx pin A, one MSI vector, no MSI-X, REQ
        arg.write(0, info);
        return 0;
      }
      case Number(VFIO_DEVICE_SET_IRQS.code):
        return this.#setIrqs(arg);
      case Number(VFIO_DEVICE_RESET.code):
        // Doc-directed simplification: the reset clears the command register.
        this.#io(CONFIG_INDEX).write(4, new Uint8Array(2));
        this.features.reset?.(this);
        return 0;
      case Number(VFIO_DEVICE_FEATURE.code):
        return this.#feature(arg, context);
      default:
        return fail(ENOTTY);
    }
  }

  // vfio_set_irqs_validate_and_prepare; the action itself is accepted unmodelled.
  #setIrqs(arg: UserArg): number {
    const hdr = arg.read(0, 20);
    const [argsz, flags, index, start, count] = [0, 4, 8, 12, 16].map((o) => u32(hdr, o));
    if (argsz < 20 || index >= NUM_IRQS) fail(EINVAL);
    const size = { 1: 0, 2: 1, 4: 4 }[flags & 7];
    if (size === undefined) fail(EINVAL);
    if (size > 0 && argsz - 20 < count * size) fail(EINVAL);
    const irqs = index === 3 ? 0 : [1, 1, 0, 0, 1][index];
    if (start >= irqs || start + count > irqs) fail(EINVAL);
    return 0;
  }

  // vfio_ioctl_device_feature: header checks, then the driver's handler.
  #feature(arg: UserArg, context: FeatureContext): number {
    const head = arg.read(0, 8);
    const argsz = u32(head, 0);
    const flags = u32(head, 4);
    const known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET |
      VFIO_DEVICE_FEATURE_PROBE;
    if (argsz < 8 || (flags & ~known) !== 0) fail(EINVAL);
    const getSet = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;
    if (!(flags & VFIO_DEVICE_FEATURE_PROBE) && (flags & getSet) === getSet) fail(EINVAL);
    return this.features.feature(this, flags, arg, argsz - 8, context);
  }

  #locate(offset: bigint, count: number): { index: number; pos: number; count: number } {
    const index = Number(offset >> REGION_SHIFT);
    const pos = offset & ((1n << REGION_SHIFT) - 1n);
    if (index >= NUM_REGIONS || index === VGA_INDEX) fail(EINVAL);
    const size = regionOf(index).size;
    if (pos >= size) fail(EINVAL);
    return { index, pos: Number(pos), count: Math.min(count, Number(size - pos)) };
  }

  /**
   * `pread` on the device fd.
   *
   * @param buf Destination.
   * @param offset Region offset (`index << 40 | pos`).
   * @returns Bytes read (short at the region end).
   * @throws {KernelError} `EINVAL` outside a region.
   */
  pread(buf: Uint8Array, offset: bigint): number {
    const { index, pos, count } = this.#locate(offset, buf.byteLength);
    buf.set(this.#io(index).read(pos, count));
    return count;
  }

  /**
   * `pwrite` on the device fd; BAR0 accesses are split into 8/4/2/1-byte
   * aligned chunks as `vfio_pci_core_do_io_rw` does, each an edu register write.
   *
   * @param buf The bytes.
   * @param offset Region offset.
   * @returns Bytes written.
   * @throws {KernelError} `EINVAL` outside a region.
   */
  pwrite(buf: Uint8Array, offset: bigint): number {
    const { index, pos, count } = this.#locate(offset, buf.byteLength);
    const io = this.#io(index);
    if (index === CONFIG_INDEX) {
      const cur = io.read(pos, count);
      for (let i = 0; i < count; i++) {
        const mask = CONFIG_WRITE_MASK.get(pos + i) ?? 0;
        cur[i] = (cur[i] & ~mask) | (buf[i] & mask);
      }
      io.write(pos, cur);
      return count;
    }
    const busMaster = (this.#io(CONFIG_INDEX).read(4, 1)[0] & PCI_COMMAND_MASTER) !== 0;
    const device = {
      buffer: this.#buffer,
      busMaster,
      dma: iommuDmaPort(this.group.container?.iommu),
    };
    for (let done = 0; done < count;) {
      const at = pos + done;
      const left = count - done;
      const n = left >= 8 && at % 8 === 0
        ? 8
        : left >= 4 && at % 4 === 0
        ? 4
        : left >= 2 && at % 2 === 0
        ? 2
        : 1;
      eduWrite(io, at, buf.subarray(done, done + n), device);
      done += n;
    }
    return count;
  }

  /**
   * `mmap` of a region through the device fd (`vfio_pci_core_mmap`): a real
   * `MAP_SHARED` mapping of the region's memfd.
   *
   * @param length Bytes.
   * @param prot `PROT_*`.
   * @param flags `MAP_*` (must include `MAP_SHARED`).
   * @param offset Region offset.
   * @returns The host address.
   * @throws {KernelError} `EINVAL` for a region that cannot be mmap'd or a range past its end.
   */
  mmap(length: bigint, prot: number, flags: number, offset: bigint): bigint {
    const index = Number(offset >> REGION_SHIFT);
    const pos = offset & ((1n << REGION_SHIFT) - 1n);
    if ((flags & MAP_SHARED) === 0 || index >= ROM_INDEX) fail(EINVAL);
    const region = regionOf(index);
    if ((region.flags & VFIO_REGION_INFO_FLAG_MMAP) === 0) fail(EINVAL);
    if (pos + length > ((region.size + 0xfffn) & ~0xfffn)) fail(EINVAL);
    const addr = libc().mmap(0n, length, prot, flags, this.#io(index).fd, pos);
    if (addr === MAP_FAILED) fail(errno());
    return addr;
  }
}
