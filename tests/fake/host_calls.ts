/**
 * The fake kernel's calls beyond VFIO: file positions and sizes, directory
 * listings, memfds, memory advice, userfaultfd and the process. Each is
 * logged and can be failed with `failNext(name, errno)` under the name in
 * its description, before it reaches the model or the host.
 *
 * @module
 */

import type { FakeBoundary } from "./boundary.ts";

/** The calls `FakeKernel` adds to the VFIO ones (it extends this class). */
export class FakeHostCalls {
  #b: FakeBoundary;

  /**
   * Wraps the kernel's boundary.
   *
   * @param boundary The call log, fault plan and world.
   */
  constructor(boundary: FakeBoundary) {
    this.#b = boundary;
  }

  /**
   * `lseek(2)` (`"lseek"`): host files and memfds as the host answers,
   * modelled files by their contents, VFIO files `ESPIPE`.
   *
   * @param fd The fd.
   * @param offset The offset.
   * @param whence `SEEK_*`.
   * @returns The new offset.
   * @throws {SyscallError} With the errno (`ENXIO` past the last data).
   */
  lseek(fd: number, offset: bigint, whence: number): bigint {
    const w = this.#b.world;
    return this.#b.sys("lseek", fd, () => w.host.lseek(fd, w.entry(fd), offset, whence));
  }

  /**
   * `ftruncate(2)` (`"ftruncate"`): memfds and host files.
   *
   * @param fd The fd.
   * @param length Bytes.
   * @throws {SyscallError} With the errno.
   */
  ftruncate(fd: number, length: bigint): void {
    const w = this.#b.world;
    this.#b.sys("ftruncate", fd, () => w.host.ftruncate(fd, w.entry(fd), length));
  }

  /**
   * `getdents64(2)` (`"getdents64"`): host directories.
   *
   * @param fd A directory fd.
   * @param buf Where the records go.
   * @returns Bytes written.
   * @throws {SyscallError} With the errno.
   */
  getdents64(fd: number, buf: Uint8Array): number {
    const w = this.#b.world;
    return this.#b.sys("getdents64", fd, () => w.host.getdents64(fd, w.entry(fd), buf));
  }

  /**
   * `memfd_create(2)` (`"memfd_create"`): a real memfd at its real number,
   * counted in `openFds`.
   *
   * @param name The name.
   * @param flags `MFD_*`.
   * @returns The fd.
   * @throws {SyscallError} With the errno.
   */
  memfdCreate(name: string, flags: number): number {
    return this.#b.sys(
      "memfd_create",
      undefined,
      () => this.#b.world.hostMemory.memfdCreate(name, flags),
    );
  }

  /**
   * `madvise(2)` (`"madvise"`), through the host.
   *
   * @param addr The address.
   * @param length Bytes.
   * @param advice `MADV_*`.
   * @throws {SyscallError} With the errno.
   */
  madvise(addr: bigint, length: bigint, advice: number): void {
    this.#b.sys("madvise", undefined, () => this.#b.world.hostMemory.madvise(addr, length, advice));
  }

  /**
   * `mprotect(2)` (`"mprotect"`), through the host.
   *
   * @param addr The address.
   * @param length Bytes.
   * @param prot `PROT_*`.
   * @throws {SyscallError} With the errno.
   */
  mprotect(addr: bigint, length: bigint, prot: number): void {
    this.#b.sys("mprotect", undefined, () => this.#b.world.hostMemory.mprotect(addr, length, prot));
  }

  /**
   * `userfaultfd(2)` (`"userfaultfd"`): the modelled permission check, then a
   * real userfaultfd at its real number, counted in `openFds`. Its ioctls
   * (`"UFFDIO_API"`, `"UFFDIO_REGISTER"`, ...) go to the host.
   *
   * @param flags The flags.
   * @returns The fd.
   * @throws {SyscallError} With the errno (`EPERM` when refused).
   */
  userfaultfd(flags: number): number {
    return this.#b.sys("userfaultfd", undefined, () => this.#b.world.hostMemory.userfaultfd(flags));
  }

  /**
   * `getuid(2)` (`"getuid"`; the real call cannot fail).
   *
   * @returns The `uid` option, or the host's.
   */
  getuid(): number {
    return this.#b.sys("getuid", undefined, () => this.#b.world.hostMemory.getuid());
  }

  /**
   * `prctl(2)` (`"prctl"`), through the host.
   *
   * @param option The option.
   * @param arg2 Its argument.
   * @returns The return value.
   * @throws {SyscallError} With the errno.
   */
  prctl(option: number, arg2: bigint): number {
    return this.#b.sys("prctl", undefined, () => this.#b.world.hostMemory.prctl(option, arg2));
  }
}
