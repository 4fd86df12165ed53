/**
 * One guest RAM region: where it sits in guest-physical space and where its
 * memory is mapped in this process.
 *
 * @module
 */

import type { GuestAddress, HostAddress } from "../sys/address.ts";
import { hex } from "../sys/address.ts";
import type { MemoryBacking } from "./_backing.ts";

/**
 * An immutable description of a mapped region, as returned by
 * `GuestMemory.regions`. The host mapping lives until the owning
 * `GuestMemory` is closed.
 *
 * @example List the regions
 * ```ts ignore
 * for (const r of memory.regions) console.log(r.toString());
 * ```
 */
export class GuestRegion {
  /** Position in `GuestMemory.regions` (sorted by GPA). */
  readonly index: number;
  /** The name (shown in errors and, for memfd backings, in /proc/self/maps). */
  readonly name: string;
  /** The first guest-physical address. */
  readonly gpa: GuestAddress;
  /** Bytes. */
  readonly size: bigint;
  /** Where the region is mapped in this process. */
  readonly hostAddress: HostAddress;
  /** The backing kind. */
  readonly backing: MemoryBacking;
  /** 4 KiB pages, the unit of dirty bitmaps. */
  readonly pages: number;
  #fd: number;

  /**
   * Describes a region (made by `GuestMemory`; not usually called directly).
   *
   * @param init The region's fields; `fd` is the memfd or -1.
   */
  constructor(init: {
    index: number;
    name: string;
    gpa: GuestAddress;
    size: bigint;
    hostAddress: HostAddress;
    backing: MemoryBacking;
    fd: number;
  }) {
    this.index = init.index;
    this.name = init.name;
    this.gpa = init.gpa;
    this.size = init.size;
    this.hostAddress = init.hostAddress;
    this.backing = init.backing;
    this.pages = Number(init.size / 4096n);
    this.#fd = init.fd;
  }

  /**
   * The exclusive end GPA (may be 2^64 for a region ending the address space,
   * so it is a plain `bigint`).
   *
   * @returns `gpa + size`.
   */
  get end(): bigint {
    return this.gpa + this.size;
  }

  /**
   * The memfd behind a `"memfd"` or `"hugetlb-memfd"` region, for sharing
   * with another process (`/proc/PID/fd/N`). Do not close it.
   *
   * @returns The fd, or -1 for anonymous backings.
   */
  get unsafeFd(): number {
    return this.#fd;
  }

  /**
   * Whether `gpa` lies in the region.
   *
   * @param gpa A guest-physical address.
   * @returns `true` if `gpa` is in `[gpa, end)`.
   */
  contains(gpa: bigint): boolean {
    return gpa >= this.gpa && gpa < this.gpa + this.size;
  }

  /**
   * A label for messages: `region 0 "ram0" [0x0, 0x100000)`.
   *
   * @returns The label.
   */
  toString(): string {
    return `region ${this.index} "${this.name}" [${hex(this.gpa)}, ${hex(this.end)})`;
  }
}
