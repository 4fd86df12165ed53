/**
 * The fake kernel's hugetlb pool (`vm.nr_hugepages` of 2 MiB pages), when the
 * options model one: reservations at `mmap`, `ENOMEM` when too few are free,
 * and what `/proc/meminfo` and `/proc/sys/vm/nr_hugepages` report.
 *
 * @module
 */

import { ENOMEM } from "../../sys/errno.ts";
import { fail } from "./user_memory.ts";

/** The size of a huge page (x86_64 default). */
export const HUGE_PAGE = 2n << 20n;

/** The pool. */
export class HugePool {
  #total: number;
  #used = 0;

  /**
   * Makes a pool with every page free.
   *
   * @param total `vm.nr_hugepages`.
   */
  constructor(total: number) {
    if (!Number.isSafeInteger(total) || total < 0) {
      throw new RangeError(`Cannot model ${total} huge pages: not a count`);
    }
    this.#total = total;
  }

  /** `HugePages_Total`. */
  get total(): number {
    return this.#total;
  }

  /** `HugePages_Free`. */
  get free(): number {
    return this.#total - this.#used;
  }

  /**
   * Reserves the pages of a mapping of `length` bytes (rounded up to whole
   * huge pages, as hugetlbfs does).
   *
   * @param length Bytes.
   * @returns The pages reserved.
   * @throws {KernelError} `ENOMEM` when too few are free (nothing is reserved).
   */
  reserve(length: bigint): number {
    const pages = Number((length + HUGE_PAGE - 1n) / HUGE_PAGE);
    if (pages > this.free) fail(ENOMEM);
    this.#used += pages;
    return pages;
  }

  /**
   * Returns pages to the pool.
   *
   * @param pages The count a reservation returned.
   */
  release(pages: number): void {
    this.#used -= pages;
  }

  /**
   * A root write of `vm.nr_hugepages`: the pool grows or shrinks, never below
   * the pages in use.
   *
   * @param total The value written.
   */
  resize(total: number): void {
    this.#total = Math.max(total, this.#used);
  }

  /**
   * `/proc/meminfo` with this pool's `HugePages_*` lines.
   *
   * @param host The host's `/proc/meminfo`.
   * @returns The text.
   */
  meminfo(host: string): string {
    return host
      .replace(/^HugePages_Total:\s*\d+$/m, `HugePages_Total:   ${this.#total}`)
      .replace(/^HugePages_Free:\s*\d+$/m, `HugePages_Free:    ${this.free}`)
      .replace(/^HugePages_Rsvd:\s*\d+$/m, "HugePages_Rsvd:        0")
      .replace(/^HugePages_Surp:\s*\d+$/m, "HugePages_Surp:        0");
  }
}
