/**
 * `FakeKernel`: a faithful fake of the Linux VFIO type1 stack at the syscall
 * boundary, for tests that need no root, no IOMMU and no device.
 *
 * It follows drivers/vfio/{container,group}.c, vfio_iommu_type1.c and
 * vfio-pci as of Linux 6.1 and 6.12, and is held to them by the
 * faithfulness scenarios that run the same steps against the real kernel in
 * the QEMU guest: ioctls are dispatched by number and fd type, user memory
 * named in structs (bitmaps, DMA targets) is read and written for real, and
 * anonymous mmaps and device BAR mmaps are real mappings.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { EBADF } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { addressOf } from "../sys/host_memory.ts";
import type { DirtyScope } from "../sys/dirty_scope.ts";
import type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";
import { kernelName } from "./fake/names.ts";
import type { FakeKernelOptions } from "./fake/options.ts";
import { type FailNextOptions, type FakeCall, FaultPlan } from "./fake/recorder.ts";
import type { Type1Iommu } from "./fake/type1.ts";
import { pinPages, unpinPages } from "./fake/type1_pins.ts";
import { addressArg, bufferArg, fail, KernelError, type UserArg } from "./fake/user_memory.ts";
import { FakeWorld } from "./fake/world.ts";

export type { FailNextOptions, FakeCall } from "./fake/recorder.ts";
export type {
  FakeDeviceOptions,
  FakeGroupOptions,
  FakeKernelOptions,
  FakeMigrationCap,
} from "./fake/options.ts";
export { type DeviceFeatureHandler, type FeatureContext, NO_FEATURES } from "./fake/device.ts";
export {
  type FailArcOptions,
  FakeMigrationDevice,
  type FakeMigrationDeviceOptions,
} from "./fake/migration_device.ts";
export type { FakeDataFile } from "./fake/fds.ts";
export { KernelError, type UserArg } from "./fake/user_memory.ts";
export { FIRST_FAKE_FD } from "./fake/fds.ts";
export type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";
export type { IovaRange } from "../vfio/uapi/iommu_info.ts";

export type { DirtyScope } from "../sys/dirty_scope.ts";

/**
 * A fake VFIO kernel implementing {@linkcode Syscalls}.
 *
 * Default world: one viable group 26 holding one edu device `"0000:00:03.0"`,
 * a type1 IOMMU with page sizes `0x40201000`, the two IOVA ranges QEMU's VT-d
 * reports, 65535 DMA entries and type1 dirty tracking. Deno's sanitizers
 * cannot see fake fds, so check {@linkcode FakeKernel.openFds},
 * {@linkcode FakeKernel.liveMappings} and {@linkcode FakeKernel.dmaMappings}
 * at the end of a test.
 *
 * @example Inject a failure
 * ```ts ignore
 * import { FakeKernel } from "./fake_kernel.ts";
 * import { EINVAL } from "../sys/errno.ts";
 * const kernel = new FakeKernel().failNext("VFIO_IOMMU_MAP_DMA", EINVAL);
 * const fd = kernel.open("/dev/vfio/vfio", 2);
 * kernel.close(fd);
 * console.log(kernel.openFds); // 0
 * ```
 */
export class FakeKernel implements Syscalls {
  #world: FakeWorld;
  #faults = new FaultPlan();
  #calls: FakeCall[] = [];

  /**
   * Creates a fake kernel.
   *
   * @param options The world to fake; every field is optional.
   */
  constructor(options: FakeKernelOptions = {}) {
    this.#world = new FakeWorld(options);
  }

  // Runs a call: an injected failure first (no side effect), then the model;
  // a KernelError becomes the boundary's error type. Every call is logged.
  #run<T>(
    call: { syscall: string; name?: string; fd?: number },
    names: readonly string[],
    toError: (errno: number) => SyscallError,
    body: () => T,
  ): T {
    const injected = this.#faults.take(names);
    try {
      if (injected !== undefined) fail(injected);
      const result = body();
      this.#calls.push(call);
      return result;
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      this.#calls.push({ ...call, errno: err.errno });
      throw toError(err.errno);
    }
  }

  #sys<T>(syscall: string, fd: number | undefined, body: () => T): T {
    const call = fd === undefined ? { syscall } : { syscall, fd };
    return this.#run(call, [syscall], (e) => new SyscallError(syscall, e), body);
  }

  /**
   * Opens `/dev/vfio/vfio` (a new container) or `/dev/vfio/<group>`.
   *
   * @param path The path.
   * @param _flags Ignored.
   * @returns A fake fd (≥ 1000).
   * @throws {SyscallError} `EACCES` for denied paths, `EBUSY` for a group already open, else `ENOENT`.
   */
  open(path: string, _flags: number): number {
    const toError = (e: number) => new SyscallError("open", e, { path });
    return this.#run(
      { syscall: "open", name: path },
      ["open"],
      toError,
      () => this.#world.open(path),
    );
  }

  /**
   * Closes a fake fd, with the kernel's release side effects (a group leaving
   * its container; the last group releasing the IOMMU and its mappings).
   *
   * @param fd The fd.
   * @throws {SyscallError} `EBADF` when the fd is not an open fake fd.
   */
  close(fd: number): void {
    // Linux releases the fd even when close(2) reports an error (EIO, EINTR):
    // an injected close failure other than EBADF still closes, as the kernel would.
    let released = false;
    try {
      this.#sys("close", fd, () => {
        released = true;
        this.#world.close(fd);
      });
    } catch (e) {
      const badFd = e instanceof SyscallError && e.errno === EBADF;
      if (!released && !badFd && this.#world.fds.get(fd) !== undefined) this.#world.close(fd);
      throw e;
    }
  }

  #ioctl(fd: number, request: IoctlRequest, arg: UserArg, value: () => bigint): number {
    const code = Number(request.code & 0xffff_ffffn); // the kernel's `unsigned int cmd`
    const entry = this.#world.fds.get(fd);
    const resolved = entry === undefined ? undefined : kernelName(entry.kind, code);
    const names = resolved === undefined ? [request.name] : [request.name, resolved];
    const call = { syscall: "ioctl", name: request.name, fd };
    const toError = (e: number) => new IoctlError(request.name, e);
    return this.#run(call, names, toError, () => this.#world.ioctl(entry, code, arg, value));
  }

  /**
   * Issues an ioctl whose argument points at `arg`; the fake reads and writes
   * `arg` as the kernel would the user struct (past its end is `EFAULT`).
   *
   * @param fd The fd.
   * @param request The request; dispatched by number and fd type, never by name.
   * @param arg The struct bytes.
   * @returns The return value.
   * @throws {IoctlError} Named after `request.name`, with the errno.
   */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number {
    return this.#ioctl(fd, request, bufferArg(arg), () => addressOf(arg));
  }

  /**
   * Issues an ioctl whose argument is an integer; for struct ioctls the
   * integer is a pointer into real memory, as with the real kernel.
   *
   * @param fd The fd.
   * @param request The request.
   * @param value The argument.
   * @returns The return value.
   * @throws {IoctlError} Named after `request.name`, with the errno.
   */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number {
    return this.#ioctl(fd, request, addressArg(value), () => value);
  }

  /**
   * Maps memory: anonymous (`fd` -1) and real fds (< 1000) through libc; a
   * fake device fd maps the region's memfd (`MAP_SHARED` required).
   *
   * @param length Bytes.
   * @param prot `PROT_*`.
   * @param flags `MAP_*`.
   * @param fd -1, a real fd, or a fake device fd.
   * @param offset The offset.
   * @returns The host address.
   * @throws {SyscallError} With the errno.
   */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    return this.#sys("mmap", fd, () => this.#world.mmap(length, prot, flags, fd, offset));
  }

  /**
   * Unmaps memory through libc and forgets the mappings starting in the range.
   *
   * @param addr The address.
   * @param length Bytes.
   * @throws {SyscallError} With the errno.
   */
  munmap(addr: bigint, length: bigint): void {
    this.#sys("munmap", undefined, () => this.#world.munmap(addr, length));
  }

  /**
   * Reads a device region (`offset = index << 40 | pos`).
   *
   * @param fd A device fd.
   * @param buf Destination.
   * @param offset The offset.
   * @returns Bytes read (short at the region end).
   * @throws {SyscallError} `EINVAL` outside a region, `EBADF` for a closed fd.
   */
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#sys("pread", fd, () => this.#world.rw(false, fd, buf, offset));
  }

  /**
   * Writes a device region; BAR0 writes drive the edu registers.
   *
   * @param fd A device fd.
   * @param buf The bytes.
   * @param offset The offset.
   * @returns Bytes written.
   * @throws {SyscallError} `EINVAL` outside a region, `EBADF` for a closed fd.
   */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#sys("pwrite", fd, () => this.#world.rw(true, fd, buf, offset));
  }

  /**
   * Reads at the file position: a migration data fd's stream (0 at end of
   * stream, `ENOMSG` on a drained pre-copy stream), or a device region at the
   * fd's position.
   *
   * @param fd A data fd opened for reading, or a device fd.
   * @param buf Destination.
   * @returns Bytes read.
   * @throws {SyscallError} `EBADF` for a closed fd or a data fd opened for
   *   writing, `EINVAL` for container and group fds, or the data file's errno.
   */
  read(fd: number, buf: Uint8Array): number {
    return this.#sys("read", fd, () => this.#world.stream(false, fd, buf));
  }

  /**
   * Writes at the file position: a `RESUMING` data fd's stream, or a device
   * region at the fd's position.
   *
   * @param fd A data fd opened for writing, or a device fd.
   * @param buf The bytes.
   * @returns Bytes written.
   * @throws {SyscallError} `EBADF` for a closed fd or a data fd opened for
   *   reading, `EINVAL` for container and group fds, or the data file's errno.
   */
  write(fd: number, buf: Uint8Array): number {
    return this.#sys("write", fd, () => this.#world.stream(true, fd, buf));
  }

  /**
   * Makes the next matching call(s) fail with `errno`, without side effects.
   *
   * @param name An ioctl name (`"VFIO_IOMMU_MAP_DMA"`, matched against both
   *   the caller's name and the kernel's name for the number on that fd type)
   *   or a syscall name (`"open"`, `"close"`, `"mmap"`, `"munmap"`, `"pread"`, `"pwrite"`,
   *   `"read"`, `"write"`).
   * @param errno The errno.
   * @param options `times`: how many matching calls fail (default 1).
   * @returns This kernel, for chaining.
   * @throws {RangeError} When `times` is not a positive integer.
   */
  failNext(name: string, errno: number, options: FailNextOptions = {}): this {
    this.#faults.add(name, errno, options);
    return this;
  }

  /** Open fake fds. */
  get openFds(): number {
    return this.#world.fds.size;
  }

  /**
   * Describes the open fake fds, in fd order.
   *
   * @returns Lines like `"container 1000"`, `"group 26"`, `"device 0000:00:03.0"`.
   */
  openFdDescriptions(): string[] {
    return this.#world.fds.describe();
  }

  /** Mappings made through {@linkcode FakeKernel.mmap} and not yet unmapped. */
  get liveMappings(): number {
    return this.#world.mappings.size;
  }

  /** IOVA mappings (`struct vfio_dma`) across all containers. */
  get dmaMappings(): number {
    return this.#world.containers.reduce((n, c) => n + (c.iommu?.dmas.length ?? 0), 0);
  }

  /** The call log, oldest first. */
  get calls(): readonly FakeCall[] {
    return this.#calls;
  }

  /** Empties the call log. */
  clearCalls(): void {
    this.#calls = [];
  }

  #iommuOf(groupId: number): Type1Iommu {
    const iommu = this.#world.groups.get(groupId)?.container?.iommu;
    if (iommu === null || iommu === undefined) {
      throw new TypeError(
        `Cannot pin pages for group ${groupId}: not in a container with an IOMMU`,
      );
    }
    return iommu;
  }

  /**
   * Pins pages on behalf of a group's vendor driver (`vfio_pin_pages`): the
   * group joins the pinned dirty scope and the pages are dirty while pinned.
   *
   * @param groupId The group.
   * @param iova First IOVA (4 KiB aligned).
   * @param size Bytes (4 KiB aligned).
   * @throws {TypeError} When the group has no container IOMMU, or the IOMMU is type1 v1.
   * @throws {RangeError} When misaligned or not wholly mapped (nothing is pinned).
   */
  pin(groupId: number, iova: bigint, size: bigint): void {
    pinPages(this.#iommuOf(groupId), groupId, iova, size);
  }

  /**
   * Unpins pages (`vfio_unpin_pages`); they stay dirty until the next read.
   *
   * @param groupId The group.
   * @param iova First IOVA.
   * @param size Bytes.
   * @throws {TypeError} When the group has no container IOMMU, or the IOMMU is type1 v1.
   * @throws {RangeError} When misaligned or not wholly mapped.
   */
  unpin(groupId: number, iova: bigint, size: bigint): void {
    unpinPages(this.#iommuOf(groupId), groupId, iova, size);
  }

  /**
   * The dirty scope of a container: `"all-mapped"` while any attached group
   * has never pinned pages, else `"precise"` (type1's pinned-page scope).
   *
   * @param containerFd An open container fd whose IOMMU is set.
   * @returns The scope.
   * @throws {TypeError} When the fd is not such a container.
   */
  dirtyScope(containerFd: number): DirtyScope {
    const entry = this.#world.fds.get(containerFd);
    if (entry?.kind !== "container" || entry.container.iommu === null) {
      throw new TypeError(
        `Cannot read the dirty scope of fd ${containerFd}: not a container with an IOMMU`,
      );
    }
    return entry.container.iommu.numNonPinnedGroups > 0 ? "all-mapped" : "precise";
  }
}
