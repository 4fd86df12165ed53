/**
 * What the fake kernel's host side shares: the fd table and mappings (with
 * the VFIO world), libc for the host's answers, and the kernel features the
 * options model.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { SyscallError } from "../../sys/errors.ts";
import { LibcSyscalls } from "../../sys/libc.ts";
import type { FdTable, HostFile } from "./fds.ts";
import { HugePool } from "./hugetlb.ts";
import type { FakeKernelOptions } from "./options.ts";
import { SoftDirtyModel, type WatchedMapping } from "./soft_dirty.ts";
import { fail } from "./user_memory.ts";

/** A mapping the fake made: what `liveMappings` counts. */
export interface FakeMapping extends WatchedMapping {
  /** Huge pages reserved from the modelled pool (0 otherwise). */
  readonly hugePages: number;
}

/** `MAP_HUGE_SHIFT`: the huge page size bits of `mmap` and `memfd_create` flags. */
export const HUGE_SIZE_BITS = 0x3f << 26;

/**
 * Runs a libc call, turning its `SyscallError` into the handler's errno.
 *
 * @param fn The call.
 * @returns What it returns.
 * @throws {KernelError} The host's errno.
 */
export function host<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SyscallError) fail(err.errno);
    throw err;
  }
}

/** The host side's shared state. */
export class HostState {
  /** The host kernel. */
  readonly libc: LibcSyscalls = new LibcSyscalls();
  /** The fd table (shared with the VFIO world). */
  readonly fds: FdTable;
  /** The live mappings (shared with the VFIO world). */
  readonly mappings: Map<bigint, FakeMapping>;
  /** The soft-dirty bits. */
  readonly softDirty: SoftDirtyModel;
  /** Whether `PAGEMAP_SCAN` exists. */
  readonly pagemapScan: boolean;
  /** `vm.unprivileged_userfaultfd` when modelled (root may write it). */
  uffdSysctl: 0 | 1 | undefined;
  /** A seccomp filter refuses `userfaultfd(2)`. */
  readonly seccomp: boolean;
  /** The hugetlb pool when modelled. */
  readonly pool: HugePool | undefined;
  /** The modelled uid. */
  readonly uid: number | undefined;

  /**
   * Builds the state.
   *
   * @param options The fake's options.
   * @param shared The fd table and mappings of the VFIO world.
   */
  constructor(
    options: FakeKernelOptions,
    shared: { fds: FdTable; mappings: Map<bigint, FakeMapping> },
  ) {
    this.fds = shared.fds;
    this.mappings = shared.mappings;
    this.softDirty = new SoftDirtyModel(options.softDirty ?? false);
    this.pagemapScan = options.pagemapScan ?? true;
    this.uffdSysctl = options.unprivilegedUserfaultfd;
    this.seccomp = options.seccompDeniesUserfaultfd ?? false;
    this.pool = options.nrHugepages === undefined ? undefined : new HugePool(options.nrHugepages);
    this.uid = options.uid;
  }

  /**
   * Puts a host fd in the table at its real number (closing it if that fails).
   *
   * @param fd The real fd.
   * @param file What it is.
   * @returns The fd.
   * @throws {TypeError} When the number is taken.
   */
  installHost(fd: number, file: HostFile): number {
    try {
      return this.fds.installAt(fd, { kind: "host", host: file });
    } catch (e) {
      this.libc.close(fd);
      throw e;
    }
  }
}
