/**
 * The fake kernel's host side: the files it opens on the host kernel for the
 * caller (memfds, userfaultfds, `/proc/self/pagemap`, other `/proc` and
 * `/sys` files), the `/proc` files it models, and the memory calls. Memory
 * and fds are real (the host kernel does the work); the fake records the
 * calls, injects failures, and models what the options describe: the
 * hugetlb pool, soft-dirty bits, `PAGEMAP_SCAN`'s presence and userfaultfd's
 * permission check.
 *
 * Every method reports failure by throwing {@linkcode KernelError}.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { MAP_HUGETLB } from "../../sys/constants.ts";
import { EINVAL, ENODEV, ENOTDIR, ENOTTY, EPERM, ESPIPE } from "../../sys/errno.ts";
import { SyscallError } from "../../sys/errors.ts";
import { LibcSyscalls } from "../../sys/libc.ts";
import { MFD_HUGETLB } from "../../sys/memfd.ts";
import { PAGEMAP_PATH, PAGEMAP_SCAN } from "../../sys/pagemap.ts";
import type { IoctlRequest } from "../../sys/syscalls.ts";
import { UFFD_USER_MODE_ONLY, USERFAULTFD_IOC_NEW } from "../../sys/userfaultfd.ts";
import type { FdEntry, FdTable, HostFile, ModelFile } from "./fds.ts";
import { HUGE_PAGE, HugePool } from "./hugetlb.ts";
import type { FakeKernelOptions } from "./options.ts";
import { SoftDirtyModel, type WatchedMapping } from "./soft_dirty.ts";
import { fail } from "./user_memory.ts";

/** A mapping the fake made: what `liveMappings` counts. */
export interface FakeMapping extends WatchedMapping {
  /** Huge pages reserved from the modelled pool (0 otherwise). */
  readonly hugePages: number;
}

/** Host paths the fake opens on the host kernel; any other path is the fake's own. */
const HOST_PREFIXES = ["/proc/", "/sys/"];
const DEV_USERFAULTFD = "/dev/userfaultfd";
const CLEAR_REFS = "/proc/self/clear_refs";
const NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages";
const MEMINFO = "/proc/meminfo";
const UNPRIVILEGED_USERFAULTFD = "/proc/sys/vm/unprivileged_userfaultfd";
/** `MAP_HUGE_SHIFT`: the huge page size bits of `mmap` and `memfd_create` flags. */
const HUGE_SIZE_BITS = 0x3f << 26;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs a libc call, turning its `SyscallError` into the handler's errno. */
function host<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SyscallError) fail(err.errno);
    throw err;
  }
}

/** The host side of the fake kernel. */
export class FakeHost {
  #libc = new LibcSyscalls();
  #fds: FdTable;
  #mappings: Map<bigint, FakeMapping>;
  #softDirty: SoftDirtyModel;
  #pagemapScan: boolean;
  #uffdSysctl: 0 | 1 | undefined;
  #seccomp: boolean;
  #pool: HugePool | undefined;
  #uid: number | undefined;

  /**
   * Builds the host side.
   *
   * @param options The fake's options.
   * @param state The fd table and the mappings, shared with the VFIO world.
   */
  constructor(
    options: FakeKernelOptions,
    state: { fds: FdTable; mappings: Map<bigint, FakeMapping> },
  ) {
    this.#fds = state.fds;
    this.#mappings = state.mappings;
    this.#softDirty = new SoftDirtyModel(options.softDirty ?? false);
    this.#pagemapScan = options.pagemapScan ?? true;
    this.#uffdSysctl = options.unprivilegedUserfaultfd;
    this.#seccomp = options.seccompDeniesUserfaultfd ?? false;
    this.#pool = options.nrHugepages === undefined ? undefined : new HugePool(options.nrHugepages);
    this.#uid = options.uid;
  }

  /**
   * Whether a path is opened on the host (or modelled) rather than in the
   * fake's VFIO world.
   *
   * @param path The path.
   * @returns True for `/proc`, `/sys` and `/dev/userfaultfd`.
   */
  handles(path: string): boolean {
    return path === DEV_USERFAULTFD || HOST_PREFIXES.some((p) => path.startsWith(p));
  }

  /**
   * `open(2)` of a host path: a modelled file, or the host's.
   *
   * @param path The path.
   * @param flags `open(2)` flags.
   * @returns The fd.
   * @throws {KernelError} The errno.
   */
  open(path: string, flags: number): number {
    const model = this.#model(path);
    if (model !== undefined) return this.#fds.install({ kind: "model", model });
    const fd = host(() => this.#libc.open(path, flags));
    const what = path === PAGEMAP_PATH
      ? "pagemap"
      : path === DEV_USERFAULTFD
      ? "/dev/userfaultfd"
      : "file";
    return this.#installHost(fd, { what, label: path });
  }

  #installHost(fd: number, file: HostFile): number {
    try {
      return this.#fds.installAt(fd, { kind: "host", host: file });
    } catch (e) {
      this.#libc.close(fd);
      throw e;
    }
  }

  #model(path: string): ModelFile | undefined {
    const file = (text: string, write?: (bytes: Uint8Array) => number): ModelFile => ({
      path,
      contents: encoder.encode(text),
      pos: 0,
      ...(write ? { write } : {}),
    });
    if (path === CLEAR_REFS) return file("", (bytes) => this.#clearRefs(bytes));
    const pool = this.#pool;
    if (pool !== undefined && path === NR_HUGEPAGES) {
      return file(`${pool.total}\n`, (bytes) => {
        pool.resize(parseCount(bytes));
        return bytes.byteLength;
      });
    }
    if (pool !== undefined && path === MEMINFO) {
      return file(pool.meminfo(decoder.decode(readHost(this.#libc, MEMINFO))));
    }
    if (this.#uffdSysctl !== undefined && path === UNPRIVILEGED_USERFAULTFD) {
      return file(`${this.#uffdSysctl}\n`, (bytes) => {
        const v = parseCount(bytes);
        if (v !== 0 && v !== 1) fail(EINVAL);
        this.#uffdSysctl = v;
        return bytes.byteLength;
      });
    }
    return undefined;
  }

  // clear_refs_write(): kstrtoint, CLEAR_REFS_ALL (1) to CLEAR_REFS_MM_HIWATER_RSS (5).
  #clearRefs(bytes: Uint8Array): number {
    const v = parseCount(bytes);
    if (v < 1 || v > 5) fail(EINVAL);
    if (v === 4) this.#softDirty.clear(this.#mappings.values());
    return bytes.byteLength;
  }

  /**
   * `close(2)` of a host or model file.
   *
   * @param fd The fd.
   * @param entry Its entry (already removed from the table).
   * @throws {KernelError} The host's errno (the fd is released anyway).
   */
  close(fd: number, entry: FdEntry): void {
    if (entry.kind === "host") host(() => this.#libc.close(fd));
  }

  /**
   * `read(2)`.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param buf Where the bytes go.
   * @returns Bytes read.
   * @throws {KernelError} The errno.
   */
  read(fd: number, entry: FdEntry, buf: Uint8Array): number {
    if (entry.kind === "model") {
      if (entry.model.write !== undefined && entry.model.contents.byteLength === 0) fail(EINVAL);
      const n = modelRead(entry.model, buf, entry.model.pos);
      entry.model.pos += n;
      return n;
    }
    return host(() => this.#libc.read(fd, buf));
  }

  /**
   * `write(2)`.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param buf The bytes.
   * @returns Bytes written.
   * @throws {KernelError} The errno.
   */
  write(fd: number, entry: FdEntry, buf: Uint8Array): number {
    if (entry.kind === "model") {
      if (entry.model.write === undefined) fail(EINVAL); // no write op (vfs_write: FMODE_CAN_WRITE)
      return entry.model.write(buf);
    }
    return host(() => this.#libc.write(fd, buf));
  }

  /**
   * `pread(2)`; a pagemap read gets the modelled soft-dirty bits.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param buf Where the bytes go.
   * @param offset The offset.
   * @returns Bytes read.
   * @throws {KernelError} The errno.
   */
  pread(fd: number, entry: FdEntry, buf: Uint8Array, offset: bigint): number {
    if (entry.kind === "model") return modelRead(entry.model, buf, Number(offset));
    const n = host(() => this.#libc.pread(fd, buf, offset));
    if (entry.kind === "host" && entry.host.what === "pagemap") {
      this.#softDirty.overlay((offset / 8n) * 4096n, buf.subarray(0, n), this.#mappings.values());
    }
    return n;
  }

  /**
   * `pwrite(2)`.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param buf The bytes.
   * @param offset The offset.
   * @returns Bytes written.
   * @throws {KernelError} The errno.
   */
  pwrite(fd: number, entry: FdEntry, buf: Uint8Array, offset: bigint): number {
    if (entry.kind === "model") return this.write(fd, entry, buf);
    return host(() => this.#libc.pwrite(fd, buf, offset));
  }

  /**
   * `ioctl(2)` on a host file: `PAGEMAP_SCAN` as the options say, a new
   * userfaultfd from `/dev/userfaultfd` installed in the table; the rest as
   * the host answers. Model files have no ioctls (`ENOTTY`).
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param request The request.
   * @param arg The struct bytes, or the integer argument.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  ioctl(fd: number, entry: FdEntry, request: IoctlRequest, arg: Uint8Array | bigint): number {
    if (entry.kind !== "host") return fail(ENOTTY);
    const file = entry.host;
    if (file.what === "pagemap" && request.code === PAGEMAP_SCAN.code && !this.#pagemapScan) {
      fail(ENOTTY);
    }
    const ret = host(() =>
      typeof arg === "bigint"
        ? this.#libc.ioctlValue(fd, request, arg)
        : this.#libc.ioctl(fd, request, arg)
    );
    if (file.what === "/dev/userfaultfd" && request.code === USERFAULTFD_IOC_NEW.code) {
      return this.#installHost(ret, { what: "userfaultfd", label: "via /dev/userfaultfd" });
    }
    return ret;
  }

  /**
   * `lseek(2)`.
   *
   * @param fd The fd.
   * @param entry Its entry (VFIO files: `ESPIPE`).
   * @param offset The offset.
   * @param whence `SEEK_*`.
   * @returns The new offset.
   * @throws {KernelError} The errno.
   */
  lseek(fd: number, entry: FdEntry | undefined, offset: bigint, whence: number): bigint {
    if (entry?.kind === "host") return host(() => this.#libc.lseek(fd, offset, whence));
    if (entry?.kind !== "model") return fail(ESPIPE);
    const m = entry.model;
    const base = whence === 0 ? 0 : whence === 1 ? m.pos : whence === 2 ? m.contents.length : -1;
    const to = base + Number(offset);
    if (base < 0 || to < 0) fail(EINVAL);
    m.pos = to;
    return BigInt(to);
  }

  /**
   * `ftruncate(2)`: a hugetlb memfd of the modelled pool takes whole huge pages.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param length Bytes.
   * @throws {KernelError} The errno.
   */
  ftruncate(fd: number, entry: FdEntry | undefined, length: bigint): void {
    if (entry?.kind !== "host") return fail(EINVAL);
    if (entry.host.hugetlb && length % HUGE_PAGE !== 0n) fail(EINVAL);
    host(() => this.#libc.ftruncate(fd, length));
  }

  /**
   * `getdents64(2)`.
   *
   * @param fd The fd.
   * @param entry Its entry.
   * @param buf Where the records go.
   * @returns Bytes written.
   * @throws {KernelError} The errno.
   */
  getdents64(fd: number, entry: FdEntry | undefined, buf: Uint8Array): number {
    if (entry?.kind !== "host") return fail(ENOTDIR);
    return host(() => this.#libc.getdents64(fd, buf));
  }

  /**
   * `memfd_create(2)`; with the pool modelled, an `MFD_HUGETLB` memfd is a
   * plain memfd whose mappings reserve huge pages from the pool.
   *
   * @param name The name.
   * @param flags `MFD_*`.
   * @returns The fd.
   * @throws {KernelError} The errno.
   */
  memfdCreate(name: string, flags: number): number {
    const hugetlb = this.#pool !== undefined && (flags & MFD_HUGETLB) !== 0;
    const real = hugetlb ? flags & ~(MFD_HUGETLB | HUGE_SIZE_BITS) : flags;
    const fd = host(() => this.#libc.memfdCreate(name, real));
    return this.#installHost(fd, { what: "memfd", label: name, ...(hugetlb ? { hugetlb } : {}) });
  }

  /**
   * `mmap(2)` of anonymous memory (`entry` undefined) or a host file.
   *
   * @param entry The fd's entry, or undefined for `fd` -1.
   * @param call The `mmap` arguments.
   * @returns The address and the mapping to record.
   * @throws {KernelError} The errno (`ENOMEM` when the pool is short).
   */
  mmap(
    entry: FdEntry | undefined,
    call: { length: bigint; prot: number; flags: number; fd: number; offset: bigint },
  ): { addr: bigint; mapping: FakeMapping } {
    if (entry !== undefined && entry.kind !== "host") return fail(ENODEV);
    const pool = this.#pool;
    const huge = entry === undefined
      ? (call.flags & MAP_HUGETLB) !== 0
      : entry.host.hugetlb === true;
    let flags = call.flags;
    let hugePages = 0;
    if (huge && pool !== undefined) {
      hugePages = pool.reserve(call.length);
      flags &= ~(MAP_HUGETLB | HUGE_SIZE_BITS);
    }
    try {
      const addr = host(() => this.#libc.mmap(call.length, call.prot, flags, call.fd, call.offset));
      return {
        addr,
        mapping: { start: addr, length: call.length, kind: huge ? "hugetlb" : "ram", hugePages },
      };
    } catch (e) {
      pool?.release(hugePages);
      throw e;
    }
  }

  /**
   * A mapping the fake made is gone.
   *
   * @param mapping The mapping.
   */
  unmapped(mapping: FakeMapping): void {
    if (mapping.hugePages > 0) this.#pool?.release(mapping.hugePages);
    this.#softDirty.forget(mapping.start);
  }

  /**
   * `madvise(2)`, through the host.
   *
   * @param addr The address.
   * @param length Bytes.
   * @param advice `MADV_*`.
   * @throws {KernelError} The errno.
   */
  madvise(addr: bigint, length: bigint, advice: number): void {
    host(() => this.#libc.madvise(addr, length, advice));
  }

  /**
   * `mprotect(2)`, through the host.
   *
   * @param addr The address.
   * @param length Bytes.
   * @param prot `PROT_*`.
   * @throws {KernelError} The errno.
   */
  mprotect(addr: bigint, length: bigint, prot: number): void {
    host(() => this.#libc.mprotect(addr, length, prot));
  }

  /**
   * `userfaultfd(2)`: the modelled permission check, then the host's call.
   *
   * @param flags The flags.
   * @returns The fd.
   * @throws {KernelError} `EPERM` when refused, or the host's errno.
   */
  userfaultfd(flags: number): number {
    if (this.#seccomp) fail(EPERM);
    if (this.#uffdSysctl === 0 && (flags & UFFD_USER_MODE_ONLY) === 0) fail(EPERM);
    const fd = host(() => this.#libc.userfaultfd(flags));
    return this.#installHost(fd, { what: "userfaultfd", label: "via userfaultfd(2)" });
  }

  /**
   * `getuid(2)`.
   *
   * @returns The modelled uid, or the host's.
   */
  getuid(): number {
    return this.#uid ?? this.#libc.getuid();
  }

  /**
   * `prctl(2)`, through the host.
   *
   * @param option The option.
   * @param arg2 Its argument.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  prctl(option: number, arg2: bigint): number {
    return host(() => this.#libc.prctl(option, arg2));
  }
}

function parseCount(bytes: Uint8Array): number {
  const text = decoder.decode(bytes).trim();
  if (!/^\d+$/.test(text)) fail(EINVAL);
  return Number(text);
}

function modelRead(m: ModelFile, buf: Uint8Array, at: number): number {
  const part = m.contents.subarray(Math.min(at, m.contents.length), at + buf.byteLength);
  buf.set(part);
  return part.byteLength;
}

function readHost(sys: LibcSyscalls, path: string): Uint8Array {
  const fd = host(() => sys.open(path, 0));
  try {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const buf = new Uint8Array(16384);
      const n = host(() => sys.read(fd, buf));
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
    }
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } finally {
    sys.close(fd);
  }
}
