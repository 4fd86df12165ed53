/**
 * The fake kernel's host files: what `open(2)` of `/proc`, `/sys` and
 * `/dev/userfaultfd` gives, and the calls on those fds. Host files are the
 * host's own, at their real fd numbers; modelled ones (see
 * `proc_files.ts`) are the fake's. A pagemap read gets the modelled
 * soft-dirty bits; `PAGEMAP_SCAN` is `ENOTTY` when the options say the
 * kernel lacks it; a userfaultfd made through `/dev/userfaultfd` joins the
 * table.
 *
 * Every method reports failure by throwing {@linkcode KernelError}.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { EINVAL, ENOTDIR, ENOTTY, ESPIPE } from "../../sys/errno.ts";
import { PAGEMAP_PATH, PAGEMAP_SCAN } from "../../sys/pagemap.ts";
import type { IoctlRequest } from "../../sys/syscalls.ts";
import { USERFAULTFD_IOC_NEW } from "../../sys/userfaultfd.ts";
import type { FdEntry } from "./fds.ts";
import { HUGE_PAGE } from "./hugetlb.ts";
import { host, type HostState } from "./host_state.ts";
import { modelFile, modelRead } from "./proc_files.ts";
import { fail } from "./user_memory.ts";

/** Host paths the fake opens on the host kernel; any other path is the fake's own. */
const HOST_PREFIXES = ["/proc/", "/sys/"];
const DEV_USERFAULTFD = "/dev/userfaultfd";

/** The host files of the fake kernel. */
export class FakeHost {
  #s: HostState;

  /**
   * Builds the host files' side.
   *
   * @param state The host side's state.
   */
  constructor(state: HostState) {
    this.#s = state;
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
    const model = modelFile(path, this.#s);
    if (model !== undefined) return this.#s.fds.install({ kind: "model", model });
    const fd = host(() => this.#s.libc.open(path, flags));
    const what = path === PAGEMAP_PATH
      ? "pagemap"
      : path === DEV_USERFAULTFD
      ? "/dev/userfaultfd"
      : "file";
    return this.#s.installHost(fd, { what, label: path });
  }

  /**
   * `close(2)` of a host or model file.
   *
   * @param fd The fd.
   * @param entry Its entry (already removed from the table).
   * @throws {KernelError} The host's errno (the fd is released anyway).
   */
  close(fd: number, entry: FdEntry): void {
    if (entry.kind === "host") host(() => this.#s.libc.close(fd));
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
    return host(() => this.#s.libc.read(fd, buf));
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
    return host(() => this.#s.libc.write(fd, buf));
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
    const n = host(() => this.#s.libc.pread(fd, buf, offset));
    if (entry.kind === "host" && entry.host.what === "pagemap") {
      this.#s.softDirty.overlay(
        (offset / 8n) * 4096n,
        buf.subarray(0, n),
        this.#s.mappings.values(),
      );
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
    return host(() => this.#s.libc.pwrite(fd, buf, offset));
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
    if (file.what === "pagemap" && request.code === PAGEMAP_SCAN.code && !this.#s.pagemapScan) {
      fail(ENOTTY);
    }
    const ret = host(() =>
      typeof arg === "bigint"
        ? this.#s.libc.ioctlValue(fd, request, arg)
        : this.#s.libc.ioctl(fd, request, arg)
    );
    if (file.what === "/dev/userfaultfd" && request.code === USERFAULTFD_IOC_NEW.code) {
      return this.#s.installHost(ret, { what: "userfaultfd", label: "via /dev/userfaultfd" });
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
    if (entry?.kind === "host") return host(() => this.#s.libc.lseek(fd, offset, whence));
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
    host(() => this.#s.libc.ftruncate(fd, length));
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
    return host(() => this.#s.libc.getdents64(fd, buf));
  }
}
