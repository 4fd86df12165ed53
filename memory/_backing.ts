// Maps and unmaps the host memory behind one guest region.

import { readProcFile } from "../sys/procfs.ts";
import { hex } from "../sys/address.ts";
import {
  MAP_ANONYMOUS,
  MAP_HUGETLB,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from "../sys/constants.ts";
import { ENOMEM } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { MADV_POPULATE_WRITE, memfdCreate } from "../sys/memfd.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { HugePagesUnavailableError } from "./errors.ts";

/**
 * How a region's host memory is provided:
 * - `"anonymous"`: private anonymous memory (`MAP_PRIVATE | MAP_ANONYMOUS`).
 * - `"memfd"`: a memfd mapped `MAP_SHARED`, so a worker or another process
 *   can map the same RAM (through the fd or `/proc/PID/fd/N`).
 * - `"hugetlb"`: private anonymous 2 MiB huge pages (`MAP_HUGETLB`).
 * - `"hugetlb-memfd"`: a hugetlbfs memfd (`MFD_HUGETLB`) mapped `MAP_SHARED`.
 */
export type MemoryBacking = "anonymous" | "memfd" | "hugetlb" | "hugetlb-memfd";

/**
 * How to prefault: `"populate"` maps with `MAP_POPULATE`; `"madvise"` calls
 * `madvise(MADV_POPULATE_WRITE)` after mapping (errors are reported, unlike
 * `MAP_POPULATE`, which silently stops).
 */
export type PrefaultMode = "populate" | "madvise";

/** The size of a huge page on this platform (x86_64 default). */
export const HUGE_PAGE_SIZE = 2n << 20n;

export interface Backing {
  addr: bigint;
  size: bigint;
  fd: number;
}

export function isHuge(backing: MemoryBacking): boolean {
  return backing === "hugetlb" || backing === "hugetlb-memfd";
}

function readHugeFree(sys: Syscalls): number {
  try {
    const m = /HugePages_Free:\s+(\d+)/.exec(readProcFile("/proc/meminfo", { syscalls: sys }));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

function hugePagesError(
  sys: Syscalls,
  what: string,
  size: bigint,
  cause: unknown,
): HugePagesUnavailableError {
  const needed = Number(size / HUGE_PAGE_SIZE);
  const free = readHugeFree(sys);
  let reserved = "unknown";
  try {
    reserved = readProcFile("/proc/sys/vm/nr_hugepages", { syscalls: sys }).trim();
  } catch { /* keep "unknown" */ }
  return new HugePagesUnavailableError(
    `Cannot map ${what} with 2 MiB huge pages: ${needed} are needed, ${
      free < 0 ? "an unknown number" : free
    } are free (/proc/sys/vm/nr_hugepages is ${reserved}). Reserve them as root with ` +
      `\`echo N > /proc/sys/vm/nr_hugepages\` (or \`sysctl vm.nr_hugepages=N\`), N >= ${needed} ` +
      `plus the pages already in use, or use 4 KiB pages (backing "anonymous" or "memfd")`,
    { needed, free, cause },
  );
}

/** Maps one region's memory; leaves nothing behind on failure. */
export function mapBacking(
  sys: Syscalls,
  spec: {
    what: string;
    name: string;
    size: bigint;
    backing: MemoryBacking;
    prefault?: PrefaultMode;
  },
): Backing {
  const { size, backing } = spec;
  const huge = isHuge(backing);
  const prot = PROT_READ | PROT_WRITE;
  const populate = spec.prefault === "populate" ? MAP_POPULATE : 0;
  let fd = -1;
  let addr: bigint;
  try {
    if (backing === "anonymous" || backing === "hugetlb") {
      const flags = MAP_PRIVATE | MAP_ANONYMOUS | populate |
        (huge ? MAP_HUGETLB : MAP_NORESERVE);
      addr = sys.mmap(size, prot, flags, -1, 0n);
    } else {
      fd = memfdCreate(spec.name, { size, hugetlb: huge, syscalls: sys });
      addr = sys.mmap(size, prot, MAP_SHARED | populate, fd, 0n);
    }
  } catch (e) {
    if (fd >= 0) {
      try {
        sys.close(fd);
      } catch { /* report the mapping failure */ }
    }
    if (e instanceof SyscallError && e.errno === ENOMEM) {
      if (huge) throw hugePagesError(sys, spec.what, size, e);
      throw new RangeError(
        `Cannot map ${spec.what}: ${e.message}: the kernel refused that much memory or address ` +
          `space (x86_64 processes have 128 TiB; see vm.overcommit_memory and ulimit -v)`,
        { cause: e },
      );
    }
    throw e;
  }
  if (spec.prefault === "madvise") {
    try {
      sys.madvise(addr, size, MADV_POPULATE_WRITE);
    } catch (e) {
      try {
        unmapBacking(sys, { addr, size, fd });
      } catch { /* report the madvise failure */ }
      if (huge && e instanceof SyscallError && e.errno === ENOMEM) {
        throw hugePagesError(sys, spec.what, size, e);
      }
      throw e;
    }
  }
  return { addr, size, fd };
}

/** Unmaps and closes; the first error is thrown after both are tried. */
export function unmapBacking(sys: Syscalls, b: Backing): void {
  let err: unknown;
  try {
    sys.munmap(b.addr, b.size);
  } catch (e) {
    err = e;
  }
  if (b.fd >= 0) {
    try {
      sys.close(b.fd);
    } catch (e) {
      err ??= e;
    }
  }
  if (err !== undefined) throw err;
}

export function describeSize(size: bigint): string {
  if (size % (1n << 30n) === 0n) return `${size >> 30n} GiB`;
  if (size % (1n << 20n) === 0n) return `${size >> 20n} MiB`;
  if (size % 1024n === 0n) return `${size >> 10n} KiB`;
  return `${hex(size)} bytes`;
}
