/**
 * The fake kernel's memory and process calls, through the host kernel:
 * memfds (standing in for hugetlbfs files with a modelled pool), mappings
 * (with huge pages reserved from the pool), advice, userfaultfd (after the
 * modelled permission check), the uid and `prctl`.
 *
 * Every method reports failure by throwing {@linkcode KernelError}.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { MAP_HUGETLB } from "../../sys/constants.ts";
import { ENODEV, EPERM } from "../../sys/errno.ts";
import { MFD_HUGETLB } from "../../sys/memfd.ts";
import { UFFD_USER_MODE_ONLY } from "../../sys/userfaultfd.ts";
import type { FdEntry } from "./fds.ts";
import { type FakeMapping, host, type HostState, HUGE_SIZE_BITS } from "./host_state.ts";
import { fail } from "./user_memory.ts";

/** The memory and process calls of the fake kernel. */
export class FakeHostMemory {
  #s: HostState;

  /**
   * Builds the memory side.
   *
   * @param state The host side's state.
   */
  constructor(state: HostState) {
    this.#s = state;
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
    const hugetlb = this.#s.pool !== undefined && (flags & MFD_HUGETLB) !== 0;
    const real = hugetlb ? flags & ~(MFD_HUGETLB | HUGE_SIZE_BITS) : flags;
    const fd = host(() => this.#s.libc.memfdCreate(name, real));
    return this.#s.installHost(fd, { what: "memfd", label: name, ...(hugetlb ? { hugetlb } : {}) });
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
    const pool = this.#s.pool;
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
      const addr = host(() =>
        this.#s.libc.mmap(call.length, call.prot, flags, call.fd, call.offset)
      );
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
    if (mapping.hugePages > 0) this.#s.pool?.release(mapping.hugePages);
    this.#s.softDirty.forget(mapping.start);
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
    host(() => this.#s.libc.madvise(addr, length, advice));
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
    host(() => this.#s.libc.mprotect(addr, length, prot));
  }

  /**
   * `userfaultfd(2)`: the modelled permission check, then the host's call.
   *
   * @param flags The flags.
   * @returns The fd.
   * @throws {KernelError} `EPERM` when refused, or the host's errno.
   */
  userfaultfd(flags: number): number {
    if (this.#s.seccomp) fail(EPERM);
    if (this.#s.uffdSysctl === 0 && (flags & UFFD_USER_MODE_ONLY) === 0) fail(EPERM);
    const fd = host(() => this.#s.libc.userfaultfd(flags));
    return this.#s.installHost(fd, { what: "userfaultfd", label: "via userfaultfd(2)" });
  }

  /**
   * `getuid(2)`.
   *
   * @returns The modelled uid, or the host's.
   */
  getuid(): number {
    return this.#s.uid ?? this.#s.libc.getuid();
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
    return host(() => this.#s.libc.prctl(option, arg2));
  }
}
