/**
 * The fake kernel's state and syscall semantics, without the test-support
 * layer: groups, containers, the fd table, the mmaps made through it, and
 * the host side (host files, memfds, userfaultfds, modelled `/proc` files).
 * Every method reports failure by throwing {@linkcode KernelError}.
 *
 * @module
 */

import { EACCES, EBADF, EBUSY, EINVAL, ENODEV, ENOENT, ENOTTY, ESPIPE } from "../../sys/errno.ts";
import type { IoctlRequest } from "../../sys/syscalls.ts";
import { SyscallError } from "../../sys/errors.ts";
import { LibcSyscalls } from "../../sys/libc.ts";
import { FakeContainer } from "./container.ts";
import { FakeDevice, type FeatureContext } from "./device.ts";
import { FakePintestDevice } from "./pintest.ts";
import { type FdEntry, FdTable, FIRST_FAKE_FD } from "./fds.ts";
import { FakeGroup, type GroupHost } from "./group.ts";
import { FakeHost } from "./host.ts";
import { FakeHostMemory } from "./host_memory.ts";
import { type FakeMapping, HostState } from "./host_state.ts";
import {
  DEFAULT_GROUPS,
  type FakeKernelOptions,
  resolveType1Config,
  type Type1Config,
} from "./options.ts";
import { fail, type UserArg } from "./user_memory.ts";

function libcCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SyscallError) fail(err.errno);
    throw err;
  }
}

/** The fake kernel's state. */
export class FakeWorld {
  /** The IOMMU configuration every container shares. */
  readonly config: Type1Config;
  /** Groups by id. */
  readonly groups: Map<number, FakeGroup> = new Map();
  /** Every container ever opened (released ones hold no IOMMU). */
  readonly containers: FakeContainer[] = [];
  /** The fd table. */
  readonly fds: FdTable = new FdTable();
  /** Live mmaps by start address. */
  readonly mappings: Map<bigint, FakeMapping> = new Map();
  /** Host files and modelled `/proc` files. */
  readonly host: FakeHost;
  /** Memory and process calls through the host. */
  readonly hostMemory: FakeHostMemory;
  #denied: Set<string>;
  #libc = new LibcSyscalls();
  #host: GroupHost = {
    lookup: (fd) => {
      const e = this.fds.get(fd);
      return e === undefined ? undefined : e.kind === "container" ? e.container : "other";
    },
    installDevice: (device) => this.fds.install({ kind: "device", device }),
  };
  #features: FeatureContext = {
    installDataFd: (file) => this.fds.install({ kind: "data", file }),
  };
  // The file position of each device fd, for read(2)/write(2) (they start at 0).
  #positions = new Map<number, bigint>();

  /**
   * Builds the world from options.
   *
   * @param options The options.
   */
  constructor(options: FakeKernelOptions) {
    this.config = resolveType1Config(options);
    this.#denied = new Set(options.deniedPaths ?? []);
    const state = new HostState(options, { fds: this.fds, mappings: this.mappings });
    this.host = new FakeHost(state);
    this.hostMemory = new FakeHostMemory(state);
    for (const g of options.groups ?? DEFAULT_GROUPS) {
      const devices = g.devices ?? [{ name: "0000:00:03.0" }];
      const emulated = devices.some((d) => d.model === "pintest");
      const group = new FakeGroup(g.id, g.viable ?? true, emulated);
      for (const d of devices) {
        group.devices.push(
          d.model === "pintest"
            ? new FakePintestDevice(d.name, group)
            : new FakeDevice(d.name, group, d.features),
        );
      }
      this.groups.set(g.id, group);
    }
  }

  /**
   * `open(2)` of `/dev/vfio/vfio`, `/dev/vfio/<group>`, or a host path
   * (`/proc`, `/sys`, `/dev/userfaultfd`).
   *
   * @param path The path.
   * @param flags `open(2)` flags (used for host paths).
   * @returns The fd.
   * @throws {KernelError} EACCES, EBUSY or ENOENT, or the host's errno.
   */
  open(path: string, flags: number): number {
    if (this.#denied.has(path)) fail(EACCES);
    if (this.host.handles(path)) return this.host.open(path, flags);
    if (path === "/dev/vfio/vfio") {
      const container = new FakeContainer(this.config);
      this.containers.push(container);
      return this.fds.install({ kind: "container", container });
    }
    const m = /^\/dev\/vfio\/(\d+)$/.exec(path);
    const group = m === null ? undefined : this.groups.get(Number(m[1]));
    if (group === undefined) fail(ENOENT);
    if (group.opened) fail(EBUSY); // "Do we need multiple instances of the group open? Seems not."
    group.fdOpen = true;
    return this.fds.install({ kind: "group", group });
  }

  /**
   * `close(2)` with the release side effects.
   *
   * @param fd The fd.
   * @throws {KernelError} EBADF.
   */
  close(fd: number): void {
    const entry = this.fds.get(fd);
    if (entry === undefined) fail(EBADF);
    this.fds.delete(fd);
    this.#positions.delete(fd);
    if (entry.kind === "host" || entry.kind === "model") {
      this.host.close(fd, entry);
    } else if (entry.kind === "data") {
      entry.file.release();
    } else if (entry.kind === "group") {
      entry.group.fdOpen = false;
      entry.group.maybeRelease();
    } else if (entry.kind === "device") {
      entry.device.close();
      entry.device.group.deviceFds--;
      entry.device.group.maybeRelease();
    }
  }

  /**
   * `ioctl(2)`, dispatched by fd type and number.
   *
   * @param entry The fd's entry (undefined: EBADF).
   * @param code The request number.
   * @param arg The argument as a user pointer.
   * @param value The argument as an integer.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  ioctl(entry: FdEntry | undefined, code: number, arg: UserArg, value: () => bigint): number {
    if (entry === undefined) fail(EBADF);
    switch (entry.kind) {
      case "container":
        return entry.container.ioctl(code, arg, value());
      case "group":
        return entry.group.ioctl(code, arg, this.#host);
      case "device":
        return entry.device.ioctl(code, arg, this.#features);
      case "data":
        return entry.file.ioctl(code, arg);
      case "host":
      case "model":
        return fail(ENOTTY); // FakeKernel routes these through hostIoctl()
    }
  }

  /**
   * `ioctl(2)` on a host or model file.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param request The request (the full number goes to the host).
   * @param arg The struct bytes, or the integer argument.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  hostIoctl(fd: number, entry: FdEntry, request: IoctlRequest, arg: Uint8Array | bigint): number {
    return this.host.ioctl(fd, entry, request, arg);
  }

  /**
   * `mmap(2)`: device fds map their region's memfd; -1 and real fds go to libc.
   *
   * @param length Bytes.
   * @param prot `PROT_*`.
   * @param flags `MAP_*`.
   * @param fd The fd.
   * @param offset The offset.
   * @returns The address.
   * @throws {KernelError} The errno.
   */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    const entry = this.fds.get(fd);
    let mapping: FakeMapping;
    if (entry?.kind === "device") {
      const start = entry.device.mmap(length, prot, flags, offset);
      mapping = { start, length, kind: "device", hugePages: 0 };
    } else if (fd === -1 || entry?.kind === "host" || entry?.kind === "model") {
      mapping = this.hostMemory.mmap(entry, { length, prot, flags, fd, offset }).mapping;
    } else if (entry !== undefined) {
      return fail(ENODEV); // container, group and data files have no mmap
    } else if (fd >= FIRST_FAKE_FD) {
      return fail(EBADF);
    } else {
      // A real fd the caller opened itself.
      const start = libcCall(() => this.#libc.mmap(length, prot, flags, fd, offset));
      mapping = { start, length, kind: "ram", hugePages: 0 };
    }
    this.mappings.set(mapping.start, mapping);
    return mapping.start;
  }

  /**
   * `munmap(2)` through libc; forgets the mappings that start in the range.
   *
   * @param addr The address.
   * @param length Bytes.
   * @throws {KernelError} The errno.
   */
  munmap(addr: bigint, length: bigint): void {
    libcCall(() => this.#libc.munmap(addr, length));
    for (const [start, mapping] of [...this.mappings]) {
      if (start >= addr && start < addr + length) {
        this.mappings.delete(start);
        this.hostMemory.unmapped(mapping);
      }
    }
  }

  /**
   * `pread(2)` / `pwrite(2)` on a device fd.
   *
   * @param write Whether to write.
   * @param fd The fd.
   * @param buf The buffer.
   * @param offset The region offset.
   * @returns Bytes transferred.
   * @throws {KernelError} EBADF, ESPIPE (data fds are streams), or EINVAL
   *   (no read/write on container and group files, or outside a region).
   */
  rw(write: boolean, fd: number, buf: Uint8Array, offset: bigint): number {
    const entry = this.fds.get(fd);
    if (entry === undefined) fail(EBADF);
    if (entry.kind === "host" || entry.kind === "model") {
      return write
        ? this.host.pwrite(fd, entry, buf, offset)
        : this.host.pread(fd, entry, buf, offset);
    }
    if (entry.kind === "data") fail(ESPIPE); // stream_open: no FMODE_PREAD / FMODE_PWRITE
    if (entry.kind !== "device") fail(EINVAL);
    return write ? entry.device.pwrite(buf, offset) : entry.device.pread(buf, offset);
  }

  /**
   * `read(2)` / `write(2)` at the file position (`vfs_read` / `vfs_write`):
   * a data fd's stream ops, a device fd's region access at `f_pos` (which
   * advances), EINVAL for container and group files (no read op).
   *
   * @param write Whether to write.
   * @param fd The fd.
   * @param buf The buffer.
   * @returns Bytes transferred.
   * @throws {KernelError} EBADF (not open, or not open for that direction), EINVAL, or the file's errno.
   */
  stream(write: boolean, fd: number, buf: Uint8Array): number {
    const entry = this.fds.get(fd);
    if (entry === undefined) fail(EBADF);
    if (entry.kind === "host" || entry.kind === "model") {
      return write ? this.host.write(fd, entry, buf) : this.host.read(fd, entry, buf);
    }
    if (entry.kind === "data") {
      // vfs_read/vfs_write: FMODE_READ / FMODE_WRITE first.
      if (entry.file.mode !== (write ? "write" : "read")) fail(EBADF);
      return write ? entry.file.write(buf) : entry.file.read(buf);
    }
    if (entry.kind !== "device") fail(EINVAL);
    const pos = this.#positions.get(fd) ?? 0n;
    const n = write ? entry.device.pwrite(buf, pos) : entry.device.pread(buf, pos);
    this.#positions.set(fd, pos + BigInt(n));
    return n;
  }

  /**
   * The fd's entry, or `EBADF`.
   *
   * @param fd The fd.
   * @returns The entry.
   * @throws {KernelError} EBADF.
   */
  entry(fd: number): FdEntry {
    const entry = this.fds.get(fd);
    if (entry === undefined) fail(EBADF);
    return entry;
  }
}
