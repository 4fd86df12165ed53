/**
 * The fake kernel's soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`), for the pages
 * of the mappings it made.
 *
 * The kernel's rules, as in fs/proc/task_mmu.c: a new VMA is `VM_SOFTDIRTY`,
 * so pagemap reports every page of it soft-dirty until a `clear_refs` write
 * of `4` clears the VMA flag and every pte's bit; afterwards a page is
 * soft-dirty exactly when it was written since. hugetlb VMAs are skipped by
 * `clear_refs`, so their pages stay soft-dirty.
 *
 * The writes are found with the host's userfaultfd async write-protect: the
 * clear registers each mapping with one userfaultfd of the fake's own
 * (`UFFDIO_REGISTER_MODE_WP`) and write-protects it; a pagemap read asks
 * `PAGEMAP_SCAN` which pages were written since. The model's fds are the
 * fake kernel's internals (not in its fd table); they are closed when the
 * last watched mapping is unmapped.
 *
 * Requires `--allow-ffi` and a host with `UFFD_FEATURE_WP_ASYNC` and
 * `PAGEMAP_SCAN` (Linux 6.7).
 *
 * @module
 */

import { LibcSyscalls } from "../../sys/libc.ts";
import { PAGE_IS_WRITTEN, PagemapScanner, PM_SOFT_DIRTY_BIT } from "../../sys/pagemap.ts";
import {
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFDIO_REGISTER_MODE_WP,
  Userfaultfd,
} from "../../sys/userfaultfd.ts";

/** One mapping the fake made, as the soft-dirty model sees it. */
export interface WatchedMapping {
  /** The first host address. */
  readonly start: bigint;
  /** Bytes. */
  readonly length: bigint;
  /** `ram` (anonymous or memfd), `hugetlb`, or `device` (a BAR: not modelled). */
  readonly kind: "ram" | "hugetlb" | "device";
}

const PAGE = 4096n;
const SOFT_DIRTY_HIGH = 1 << (PM_SOFT_DIRTY_BIT - 32);

/** The soft-dirty bits of the fake's mappings. */
export class SoftDirtyModel {
  #libc = new LibcSyscalls();
  #enabled: boolean;
  #uffd: Userfaultfd | undefined;
  #scanner: PagemapScanner | undefined;
  /** Mappings cleared at least once (registered with the model's userfaultfd), by start. */
  #cleared = new Set<bigint>();

  /**
   * Makes the model.
   *
   * @param enabled Whether the kernel has soft-dirty at all.
   */
  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  /**
   * `clear_refs` `4`: clears the bits of every `ram` mapping.
   *
   * @param mappings The fake's live mappings.
   * @throws {TypeError} When the host cannot model the bits (no async
   *   write-protect), or a range is registered with another userfaultfd.
   */
  clear(mappings: Iterable<WatchedMapping>): void {
    if (!this.#enabled) return;
    for (const m of mappings) {
      if (m.kind !== "ram") continue;
      const range = { start: m.start, len: m.length };
      try {
        const uffd = this.#open();
        if (!this.#cleared.has(m.start)) {
          uffd.register(range, UFFDIO_REGISTER_MODE_WP);
          this.#cleared.add(m.start);
        }
        uffd.writeProtect(range, true);
      } catch (e) {
        throw new TypeError(
          `Cannot model soft-dirty bits for the mapping at 0x${m.start.toString(16)}: ${e} ` +
            "(the fake needs the host's userfaultfd async write-protect, and a range no " +
            "other userfaultfd has registered)",
          { cause: e },
        );
      }
    }
  }

  /**
   * Sets bit 55 of pagemap entries as the model says.
   *
   * @param first The host address of the first entry's page.
   * @param entries The entries read from the host's pagemap (8 bytes each).
   * @param mappings The fake's live mappings.
   */
  overlay(first: bigint, entries: Uint8Array, mappings: Iterable<WatchedMapping>): void {
    const n = Math.floor(entries.byteLength / 8);
    if (n === 0) return;
    const v = new DataView(entries.buffer, entries.byteOffset, n * 8);
    const set = (page: number, dirty: boolean) => {
      const at = page * 8 + 4;
      const high = v.getUint32(at, true);
      v.setUint32(at, dirty ? (high | SOFT_DIRTY_HIGH) >>> 0 : high & ~SOFT_DIRTY_HIGH, true);
    };
    if (!this.#enabled) {
      for (let i = 0; i < n; i++) set(i, false);
      return;
    }
    const end = first + BigInt(n) * PAGE;
    for (const m of mappings) {
      const from = m.start > first ? m.start : first;
      const mEnd = m.start + m.length;
      const to = mEnd < end ? mEnd : end;
      if (from >= to || m.kind === "device") continue;
      const a = Number((from - first) / PAGE);
      const b = Number((to - first) / PAGE);
      const always = m.kind === "hugetlb" || !this.#cleared.has(m.start);
      for (let i = a; i < b; i++) set(i, always);
      if (always) continue;
      const base = Number(first);
      this.#scanner!.scan(from, to, {
        flags: 0,
        categoryMask: PAGE_IS_WRITTEN,
        returnMask: PAGE_IS_WRITTEN,
      }, (s, e) => {
        for (let p = (s - base) / 4096; p < (e - base) / 4096; p++) set(p, true);
      });
    }
  }

  /**
   * A mapping is gone (`munmap`): the kernel dropped its registration.
   *
   * @param start The mapping's first address.
   */
  forget(start: bigint): void {
    if (!this.#cleared.delete(start) || this.#cleared.size > 0) return;
    const uffd = this.#uffd;
    const scanner = this.#scanner;
    this.#uffd = undefined;
    this.#scanner = undefined;
    try {
      scanner?.close();
    } finally {
      uffd?.close();
    }
  }

  #open(): Userfaultfd {
    if (this.#uffd !== undefined) return this.#uffd;
    const uffd = Userfaultfd.open({ syscalls: this.#libc });
    try {
      uffd.api(
        UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
      );
      this.#scanner = new PagemapScanner({ syscalls: this.#libc });
    } catch (e) {
      uffd.close();
      throw e;
    }
    this.#uffd = uffd;
    return uffd;
  }
}
