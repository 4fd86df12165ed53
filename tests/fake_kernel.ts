/**
 * `FakeKernel`: a faithful fake of the Linux kernel at the syscall boundary,
 * for tests that need no root, no IOMMU and no device, and that must not
 * depend on what the host kernel was built with.
 *
 * For VFIO it follows drivers/vfio/{container,group}.c, vfio_iommu_type1.c
 * and vfio-pci as of Linux 6.1 and 6.12, and is held to them by the
 * faithfulness scenarios that run the same steps against the real kernel in
 * the QEMU guest: ioctls are dispatched by number and fd type, user memory
 * named in structs (bitmaps, DMA targets) is read and written for real, and
 * anonymous mmaps and device BAR mmaps are real mappings.
 *
 * For guest RAM and CPU dirty tracking, the memory calls (`mmap`,
 * `memfd_create`, `madvise`, `lseek`), userfaultfd and its ioctls, and the
 * files under `/proc` and `/sys` go to the host kernel, so the memory is real;
 * the fake records them, fails them on request (`failNext`, `deniedPaths`),
 * counts their fds and mappings, and models what its options describe
 * (soft-dirty bits, `PAGEMAP_SCAN`, userfaultfd's permission check, the
 * hugetlb pool): see `tests/fake/options.ts`.
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
import { FakeBoundary } from "./fake/boundary.ts";
import { FakeHostCalls } from "./fake/host_calls.ts";
import { kernelName } from "./fake/names.ts";
import type { FakeKernelOptions } from "./fake/options.ts";
import type { FailNextOptions, FakeCall } from "./fake/recorder.ts";
import type { Type1Iommu } from "./fake/type1.ts";
import { pinPages, unpinPages } from "./fake/type1_pins.ts";
import { addressArg, bufferArg, type UserArg } from "./fake/user_memory.ts";
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
export {
  FakeDmaLoggingDevice,
  type FakeDmaLoggingDeviceOptions,
} from "./fake/dma_logging_device.ts";
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
export class FakeKernel extends FakeHostCalls implements Syscalls {
  #b: FakeBoundary;
  #world: FakeWorld;

  /**
   * Creates a fake kernel.
   *
   * @param options The world to fake; every field is optional.
   */
  constructor(options: FakeKernelOptions = {}) {
    const boundary = new FakeBoundary(new FakeWorld(options));
    super(boundary);
    this.#b = boundary;
    this.#world = boundary.world;
  }

  #sys<T>(syscall: string, fd: number | undefined, body: () => T): T {
    return this.#b.sys(syscall, fd, body);
  }

  /**
   * Opens `/dev/vfio/vfio` (a new container), `/dev/vfio/<group>`, or a host
   * path: `/proc/self/clear_refs` and the files the options model are the
   * fake's; other `/proc` and `/sys` files and `/dev/userfaultfd` are opened
   * on the host and keep their real fd numbers. Fails under `"open"` or
   * `"open <path>"`.
   *
   * @param path The path.
   * @param flags `open(2)` flags (for host paths).
   * @returns The fd: a fake one (≥ 1000) or a host one.
   * @throws {SyscallError} `EACCES` for denied paths, `EBUSY` for a group
   *   already open, `ENOENT` for other paths, or the host's errno.
   */
  open(path: string, flags: number): number {
    const toError = (e: number) => new SyscallError("open", e, { path });
    return this.#b.run(
      { syscall: "open", name: path },
      ["open", `open ${path}`],
      toError,
      () => this.#world.open(path, flags),
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

  #ioctl(
    fd: number,
    request: IoctlRequest,
    arg: { user: UserArg; value: () => bigint; raw: Uint8Array | bigint },
  ): number {
    const code = Number(request.code & 0xffff_ffffn); // the kernel's `unsigned int cmd`
    const entry = this.#world.fds.get(fd);
    const resolved = entry === undefined ? undefined : kernelName(entry.kind, code);
    const names = resolved === undefined ? [request.name] : [request.name, resolved];
    const call = { syscall: "ioctl", name: request.name, fd };
    const toError = (e: number) => new IoctlError(request.name, e);
    return this.#b.run(
      call,
      names,
      toError,
      () =>
        entry?.kind === "host" || entry?.kind === "model"
          ? this.#world.hostIoctl(fd, entry, request, arg.raw)
          : this.#world.ioctl(entry, code, arg.user, arg.value),
    );
  }

  /**
   * Issues an ioctl whose argument points at `arg`; the fake reads and writes
   * `arg` as the kernel would the user struct (past its end is `EFAULT`).
   * On host files (pagemap, userfaultfd) the host answers, except for what
   * the options model (`PAGEMAP_SCAN` without `pagemapScan`).
   *
   * @param fd The fd.
   * @param request The request; dispatched by number and fd type, never by name.
   * @param arg The struct bytes.
   * @returns The return value.
   * @throws {IoctlError} Named after `request.name`, with the errno.
   */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number {
    return this.#ioctl(fd, request, {
      user: bufferArg(arg),
      value: () => addressOf(arg),
      raw: arg,
    });
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
    return this.#ioctl(fd, request, { user: addressArg(value), value: () => value, raw: value });
  }

  /**
   * Maps memory: anonymous (`fd` -1), memfds and other host fds through the
   * host (huge pages from the modelled pool when `nrHugepages` is set); a
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
   * Reads a device region (`offset = index << 40 | pos`), or a host or
   * modelled file (pagemap entries carry the modelled soft-dirty bit).
   *
   * @param fd A device fd, or a host or model file.
   * @param buf Destination.
   * @param offset The offset.
   * @returns Bytes read (short at the region end).
   * @throws {SyscallError} `EINVAL` outside a region, `EBADF` for a closed fd.
   */
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#sys("pread", fd, () => this.#world.rw(false, fd, buf, offset));
  }

  /**
   * Writes a device region (BAR0 writes drive the edu registers), or a host
   * or modelled file.
   *
   * @param fd A device fd, or a host or model file.
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
   * @param name An ioctl name (`"VFIO_IOMMU_MAP_DMA"`, `"PAGEMAP_SCAN"`,
   *   `"UFFDIO_API"`; matched against both the caller's name and the kernel's
   *   name for the number on that fd type), a syscall name (`"open"`,
   *   `"close"`, `"mmap"`, `"munmap"`, `"pread"`, `"pwrite"`, `"read"`,
   *   `"write"`, `"lseek"`, `"ftruncate"`, `"getdents64"`, `"memfd_create"`,
   *   `"madvise"`, `"mprotect"`, `"userfaultfd"`, `"prctl"`), or a syscall on
   *   one host file, `"<syscall> <path>"` (`"open /proc/self/pagemap"`,
   *   `"pread /proc/self/pagemap"`, `"write /proc/self/clear_refs"`).
   * @param errno The errno.
   * @param options `times`: how many matching calls fail (default 1).
   * @returns This kernel, for chaining.
   * @throws {RangeError} When `times` is not a positive integer.
   */
  failNext(name: string, errno: number, options: FailNextOptions = {}): this {
    this.#b.failNext(name, errno, options);
    return this;
  }

  /** Open fds the fake handed out: VFIO files, and host files, memfds and userfaultfds. */
  get openFds(): number {
    return this.#world.fds.size;
  }

  /**
   * Describes the open fake fds, in fd order.
   *
   * @returns Lines like `"container 1000"`, `"group 26"`, `"device 0000:00:03.0"`,
   *   `"memfd ram0"`, `"file /proc/self/pagemap"`.
   */
  openFdDescriptions(): string[] {
    return this.#world.fds.describe();
  }

  /** Mappings made through {@linkcode FakeKernel.mmap} (any kind) and not yet unmapped. */
  get liveMappings(): number {
    return this.#world.mappings.size;
  }

  /** IOVA mappings (`struct vfio_dma`) across all containers. */
  get dmaMappings(): number {
    return this.#world.containers.reduce((n, c) => n + (c.iommu?.dmas.length ?? 0), 0);
  }

  /** The call log, oldest first. */
  get calls(): readonly FakeCall[] {
    return this.#b.calls;
  }

  /** Empties the call log. */
  clearCalls(): void {
    this.#b.clearCalls();
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
