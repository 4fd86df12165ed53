/**
 * Guest RAM: a set of regions at guest-physical addresses, with checked
 * accessors, zero-copy views, GPA to host translation, DMA mapping and
 * write observation (for the software dirty log).
 *
 * @module
 */

import { unpopulatedRanges } from "./unpopulated.ts";
import type { GuestAddress, HostAddress } from "../sys/address.ts";
import { guestAddress, hex, hostAddress } from "../sys/address.ts";
import { ResourceBusyError } from "../sys/errors.ts";
import { hostView } from "../sys/host_memory.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import {
  type Backing,
  describeSize,
  isHuge,
  mapBacking,
  type MemoryBacking,
  type PrefaultMode,
  unmapBacking,
} from "./_backing.ts";
import { planRegions, type RegionSpec } from "./_layout.ts";
import {
  type DmaMapper,
  type GuestMemoryDmaLease,
  type MapIntoOptions,
  mapRegions,
} from "./dma.ts";
import { GuestRegion } from "./guest_region.ts";
import { checkHostCapacity } from "./host_capacity.ts";

/** Options of {@linkcode GuestMemory.create}. */
export interface GuestMemoryOptions {
  /**
   * The syscall boundary (default libc): mappings, memfds, prefaulting, the
   * `/proc` reads behind its checks and diagnostics, and, by default, the
   * dirty trackers made for this memory.
   */
  syscalls?: Syscalls;
  /** Default backing for regions that do not name one (default `"anonymous"`). */
  backing?: MemoryBacking;
  /** Prefault every region: `true` = `"populate"` (`MAP_POPULATE`), or `"madvise"`. */
  prefault?: boolean | PrefaultMode;
}

/**
 * Called after each write made through the {@linkcode GuestMemory} API (and
 * when a view is handed out) with the region index and the byte range.
 */
export type WriteObserver = (region: number, offset: number, length: number) => void;

/**
 * A structured-clonable description of mapped guest memory, to re-open it in
 * a Worker of this process with {@linkcode GuestMemory.attach}.
 */
export interface GuestMemoryDescriptor {
  /** The regions. */
  regions: {
    name: string;
    gpa: bigint;
    size: bigint;
    hostAddress: bigint;
    backing: MemoryBacking;
  }[];
}

const scratch = new DataView(new ArrayBuffer(8));
const scratchBytes = new Uint8Array(scratch.buffer);

/**
 * Guest RAM.
 *
 * Reads and writes are little-endian, bounds-checked, and may cross from one
 * region into an adjacent one (no gap); a range that touches a hole throws a
 * `RangeError` naming the GPA and the region, and nothing is written.
 *
 * Requires `--allow-ffi` (and `--allow-read` for huge-page diagnostics).
 *
 * @example Two regions, a write across their boundary
 * ```ts
 * import { GuestMemory } from "./guest_memory.ts";
 * import { guestAddress } from "../sys/address.ts";
 * using mem = GuestMemory.create([
 *   { gpa: guestAddress(0n), size: 0x10000n },
 *   { gpa: guestAddress(0x10000n), size: 0x10000n, backing: "memfd" },
 * ]);
 * mem.write(guestAddress(0xfffen), new Uint8Array([1, 2, 3, 4]));
 * console.log(mem.readU16(guestAddress(0x10000n))); // 0x0403
 * ```
 */
export class GuestMemory implements Disposable {
  #sys: Syscalls;
  #owned: boolean;
  #regions: GuestRegion[];
  #backings: Backing[];
  #starts: bigint[];
  #ends: bigint[];
  #sizes: number[];
  #u8: Uint8Array[];
  #dv: DataView[];
  #last = 0;
  #observers: WriteObserver[] = [];
  #closeHooks = new Set<() => void>();
  #dmaLeases = new Set<GuestMemoryDmaLease>();
  #closed = false;

  private constructor(sys: Syscalls, owned: boolean, regions: GuestRegion[], backings: Backing[]) {
    this.#sys = sys;
    this.#owned = owned;
    this.#regions = regions;
    this.#backings = backings;
    this.#starts = regions.map((r) => r.gpa);
    this.#ends = regions.map((r) => r.end);
    this.#sizes = regions.map((r) => Number(r.size));
    // SAFETY: each view covers exactly one live mapping; they are dropped in close().
    this.#u8 = regions.map((r) => hostView(r.hostAddress, Number(r.size)));
    this.#dv = this.#u8.map((u) => new DataView(u.buffer));
  }

  /**
   * Maps the regions. On any failure everything mapped so far is unmapped.
   *
   * @param regions The regions (any order; sorted by GPA; no overlap).
   * @param options Syscalls, default backing, prefault.
   * @returns The guest memory.
   * @throws {RangeError} For misaligned, empty or overlapping regions; for
   *   RAM to prefault beyond what the host can back now; for a mapping the
   *   kernel refuses with `ENOMEM`.
   * @throws {HugePagesUnavailableError} When huge pages are not reserved.
   * @throws {SyscallError} For other mmap/memfd failures.
   */
  static create(regions: readonly RegionSpec[], options: GuestMemoryOptions = {}): GuestMemory {
    const sys = options.syscalls ?? defaultSyscalls();
    const planned = planRegions(regions, options);
    // Prefaulting more than the host has would page it into the OOM killer.
    const populated = planned.filter((p) => p.prefault !== undefined && !isHuge(p.backing));
    if (populated.length > 0) {
      checkHostCapacity(Number(populated.reduce((n, p) => n + p.size, 0n)), {
        what: "the guest RAM to prefault",
        syscalls: sys,
      });
    }
    const backings: Backing[] = [];
    try {
      for (const p of planned) {
        backings.push(mapBacking(sys, {
          what: `region "${p.name}" (${describeSize(p.size)} at GPA ${hex(p.gpa)})`,
          name: p.name,
          size: p.size,
          backing: p.backing,
          prefault: p.prefault,
        }));
      }
    } catch (e) {
      for (const b of backings.reverse()) {
        try {
          unmapBacking(sys, b);
        } catch { /* report the mapping failure */ }
      }
      throw e;
    }
    const made = planned.map((p, i) =>
      new GuestRegion({
        index: i,
        name: p.name,
        gpa: p.gpa,
        size: p.size,
        hostAddress: hostAddress(backings[i].addr),
        backing: p.backing,
        fd: backings[i].fd,
      })
    );
    return new GuestMemory(sys, true, made, backings);
  }

  /**
   * Opens memory another `GuestMemory` of this process mapped (typically in a
   * Worker, from {@linkcode GuestMemory.describe}). It does not own the
   * mappings: `close()` only forgets them, and the owner must outlive it.
   *
   * @param descriptor From `describe()`.
   * @param options `syscalls`: the boundary for its pagemap reads and its
   *   dirty trackers (default libc).
   * @returns A non-owning guest memory.
   * @throws {RangeError} For an invalid descriptor.
   */
  static attach(
    descriptor: GuestMemoryDescriptor,
    options: { syscalls?: Syscalls } = {},
  ): GuestMemory {
    const regions = descriptor.regions.map((r, i) =>
      new GuestRegion({
        index: i,
        name: r.name,
        gpa: guestAddress(r.gpa),
        size: r.size,
        hostAddress: hostAddress(r.hostAddress),
        backing: r.backing,
        fd: -1,
      })
    );
    return new GuestMemory(options.syscalls ?? defaultSyscalls(), false, regions, []);
  }

  /**
   * A description to pass to a Worker (`postMessage`) for {@linkcode GuestMemory.attach}.
   *
   * @returns The descriptor.
   */
  describe(): GuestMemoryDescriptor {
    return {
      regions: this.#regions.map((r) => ({
        name: r.name,
        gpa: r.gpa as bigint,
        size: r.size,
        hostAddress: r.hostAddress as bigint,
        backing: r.backing,
      })),
    };
  }

  /**
   * The syscall boundary this memory was made with; the dirty trackers made
   * for it use the same one by default.
   *
   * @returns The boundary.
   */
  get syscalls(): Syscalls {
    return this.#sys;
  }

  /**
   * The regions, sorted by GPA (empty once closed).
   *
   * @returns The regions.
   */
  get regions(): readonly GuestRegion[] {
    return this.#regions;
  }

  /**
   * Whether `close()` has run.
   *
   * @returns `true` once closed.
   */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Total bytes over all regions.
   *
   * @returns The sum of the region sizes.
   */
  get size(): bigint {
    return this.#regions.reduce((s, r) => s + r.size, 0n);
  }

  /**
   * The region containing a GPA.
   *
   * @param gpa The address.
   * @returns The region, or `undefined` in a hole.
   */
  findRegion(gpa: GuestAddress): GuestRegion | undefined {
    const i = this.#find(gpa);
    return i < 0 ? undefined : this.#regions[i];
  }

  #find(gpa: bigint): number {
    const l = this.#last;
    if (gpa >= this.#starts[l] && gpa < this.#ends[l]) return l;
    const s = this.#starts;
    for (let i = 0; i < s.length; i++) {
      if (gpa >= s[i] && gpa < this.#ends[i]) {
        this.#last = i;
        return i;
      }
    }
    return -1;
  }

  #holeMessage(action: string, gpa: bigint, length: number): string {
    if (this.#closed) return `Cannot ${action} at GPA ${hex(gpa)}: the guest memory is closed`;
    const rs = this.#regions;
    const below = rs.findLast((r) => r.end <= gpa);
    const above = rs.find((r) => r.gpa > gpa);
    const where = below && above
      ? `it lies in the hole between ${below} and ${above}`
      : below
      ? `it lies beyond the last region, ${below}`
      : above
      ? `it lies below the first region, ${above}`
      : "there are no regions";
    return `Cannot ${action} ${length} bytes at GPA ${hex(gpa)}: ${where}`;
  }

  /**
   * Splits `[gpa, gpa + length)` into per-region pieces, validating all of it
   * before anything is touched.
   */
  #pieces(action: string, gpa: bigint, length: number): number[] {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`Cannot ${action} ${length} bytes at GPA ${hex(gpa)}: bad length`);
    }
    let i = this.#find(gpa);
    if (i < 0) throw new RangeError(this.#holeMessage(action, gpa, length));
    const out: number[] = [];
    let off = Number(gpa - this.#starts[i]);
    let left = length;
    for (;;) {
      const n = Math.min(left, this.#sizes[i] - off);
      out.push(i, off, n);
      left -= n;
      if (left === 0) return out;
      const next = i + 1;
      if (next >= this.#regions.length || this.#starts[next] !== this.#ends[i]) {
        throw new RangeError(
          `Cannot ${action} ${length} bytes at GPA ${hex(gpa)}: the range [${hex(gpa)}, ${
            hex(gpa + BigInt(length))
          }) crosses the end of ${this.#regions[i]} into a hole`,
        );
      }
      i = next;
      off = 0;
    }
  }

  #notify(i: number, off: number, n: number): void {
    for (const o of this.#observers) o(i, off, n);
  }

  /**
   * Copies bytes out of guest memory.
   *
   * @param gpa The first address.
   * @param into Where the bytes go (its length is the count).
   * @throws {RangeError} If any byte lies in a hole or the memory is closed.
   */
  readInto(gpa: GuestAddress, into: Uint8Array): void {
    const p = this.#pieces("read", gpa, into.length);
    let done = 0;
    for (let k = 0; k < p.length; k += 3) {
      const u = this.#u8[p[k]];
      into.set(u.subarray(p[k + 1], p[k + 1] + p[k + 2]), done);
      done += p[k + 2];
    }
  }

  /**
   * Reads bytes into a new array.
   *
   * @param gpa The first address.
   * @param length Bytes.
   * @returns A copy of the bytes.
   * @throws {RangeError} If any byte lies in a hole or the memory is closed.
   */
  read(gpa: GuestAddress, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(gpa, out);
    return out;
  }

  /**
   * Writes bytes; all or nothing with respect to bounds.
   *
   * @param gpa The first address.
   * @param data The bytes.
   * @throws {RangeError} If any byte lies in a hole or the memory is closed.
   */
  write(gpa: GuestAddress, data: Uint8Array): void {
    const p = this.#pieces("write", gpa, data.length);
    let done = 0;
    for (let k = 0; k < p.length; k += 3) {
      const n = p[k + 2];
      this.#u8[p[k]].set(data.subarray(done, done + n), p[k + 1]);
      done += n;
      if (this.#observers.length !== 0) this.#notify(p[k], p[k + 1], n);
    }
  }

  /**
   * Fills a range with one byte value.
   *
   * @param gpa The first address.
   * @param options `length` in bytes and the byte `value` (default 0).
   * @throws {RangeError} If any byte lies in a hole or the memory is closed.
   */
  fill(gpa: GuestAddress, options: { length: number; value?: number }): void {
    const p = this.#pieces("fill", gpa, options.length);
    for (let k = 0; k < p.length; k += 3) {
      this.#u8[p[k]].fill(options.value ?? 0, p[k + 1], p[k + 1] + p[k + 2]);
      if (this.#observers.length !== 0) this.#notify(p[k], p[k + 1], p[k + 2]);
    }
  }

  /** Offset of a scalar inside one region, or -1 when it needs the slow path. */
  #scalar(gpa: bigint, size: number): number {
    const i = this.#find(gpa);
    if (i < 0) return -1;
    const off = Number(gpa - this.#starts[i]);
    return off + size <= this.#sizes[i] ? off : -1;
  }

  #slowRead(gpa: bigint, size: number): DataView {
    this.readInto(gpa as GuestAddress, scratchBytes.subarray(0, size));
    return scratch;
  }

  /**
   * Reads a u8.
   *
   * @param gpa The address.
   * @returns The value.
   * @throws {RangeError} In a hole or once closed.
   */
  readU8(gpa: GuestAddress): number {
    const off = this.#scalar(gpa, 1);
    return off < 0 ? this.#slowRead(gpa, 1).getUint8(0) : this.#u8[this.#last][off];
  }

  /**
   * Reads a little-endian u16.
   *
   * @param gpa The address.
   * @returns The value.
   * @throws {RangeError} If any byte is in a hole, or once closed.
   */
  readU16(gpa: GuestAddress): number {
    const off = this.#scalar(gpa, 2);
    return off < 0
      ? this.#slowRead(gpa, 2).getUint16(0, true)
      : this.#dv[this.#last].getUint16(off, true);
  }

  /**
   * Reads a little-endian u32.
   *
   * @param gpa The address.
   * @returns The value.
   * @throws {RangeError} If any byte is in a hole, or once closed.
   */
  readU32(gpa: GuestAddress): number {
    const off = this.#scalar(gpa, 4);
    return off < 0
      ? this.#slowRead(gpa, 4).getUint32(0, true)
      : this.#dv[this.#last].getUint32(off, true);
  }

  /**
   * Reads a little-endian u64.
   *
   * @param gpa The address.
   * @returns The value.
   * @throws {RangeError} If any byte is in a hole, or once closed.
   */
  readU64(gpa: GuestAddress): bigint {
    const off = this.#scalar(gpa, 8);
    return off < 0
      ? this.#slowRead(gpa, 8).getBigUint64(0, true)
      : this.#dv[this.#last].getBigUint64(off, true);
  }

  #scalarWrite(gpa: bigint, size: number, set: (dv: DataView, off: number) => void): void {
    const off = this.#scalar(gpa, size);
    if (off < 0) {
      set(scratch, 0);
      this.write(gpa as GuestAddress, scratchBytes.slice(0, size));
      return;
    }
    const i = this.#last;
    set(this.#dv[i], off);
    if (this.#observers.length !== 0) this.#notify(i, off, size);
  }

  /**
   * Writes a u8.
   *
   * @param gpa The address.
   * @param value The value (taken modulo 2^8).
   * @throws {RangeError} In a hole or once closed.
   */
  writeU8(gpa: GuestAddress, value: number): void {
    this.#scalarWrite(gpa, 1, (dv, o) => dv.setUint8(o, value));
  }

  /**
   * Writes a little-endian u16.
   *
   * @param gpa The address.
   * @param value The value (taken modulo 2^16).
   * @throws {RangeError} If any byte is in a hole, or once closed.
   */
  writeU16(gpa: GuestAddress, value: number): void {
    this.#scalarWrite(gpa, 2, (dv, o) => dv.setUint16(o, value, true));
  }

  /**
   * Writes a little-endian u32.
   *
   * @param gpa The address.
   * @param value The value (taken modulo 2^32).
   * @throws {RangeError} If any byte is in a hole, or once closed.
   */
  writeU32(gpa: GuestAddress, value: number): void {
    this.#scalarWrite(gpa, 4, (dv, o) => dv.setUint32(o, value, true));
  }

  /**
   * Writes a little-endian u64.
   *
   * @param gpa The address.
   * @param value The value (taken modulo 2^64).
   * @throws {RangeError} If any byte is in a hole, or once closed.
   */
  writeU64(gpa: GuestAddress, value: bigint): void {
    this.#scalarWrite(gpa, 8, (dv, o) => dv.setBigUint64(o, value, true));
  }

  /**
   * A zero-copy view of a range inside one region. Valid until `close()`:
   * using it afterwards touches unmapped memory.
   *
   * Writes through a view bypass the API, so for the software dirty log a
   * view counts as a write of its whole range when it is handed out (a
   * documented false positive); writes made through a view kept past the
   * next harvest are not seen by that log.
   *
   * @param gpa The first address.
   * @param length Bytes.
   * @returns The view.
   * @throws {RangeError} In a hole, across two regions, or once closed.
   */
  view(gpa: GuestAddress, length: number): Uint8Array {
    const v = this.readView(gpa, length);
    if (this.#observers.length !== 0 && length !== 0) {
      const i = this.#find(gpa);
      this.#notify(i, Number(gpa - this.#starts[i]), length);
    }
    return v;
  }

  /**
   * A zero-copy view for reading: like {@linkcode GuestMemory.view} but not
   * counted as a write by the software dirty log, so the caller must not write
   * through it.
   *
   * @param gpa The first address.
   * @param length Bytes.
   * @returns The view.
   * @throws {RangeError} In a hole, across two regions, or once closed.
   */
  readView(gpa: GuestAddress, length: number): Uint8Array {
    const p = this.#pieces("view", gpa, length);
    if (p.length > 3) {
      throw new RangeError(
        `Cannot view ${length} bytes at GPA ${hex(gpa)}: the range spans ${
          this.#regions[p[0]]
        } and ${
          this.#regions[p[3]]
        }; a view must lie in one region (use read() to copy across regions)`,
      );
    }
    return this.#u8[p[0]].subarray(p[1], p[1] + p[2]);
  }

  /**
   * The pages of `[gpa, gpa + length)` that hold no memory yet (never
   * written): they read as zero, and a reader that skips them neither faults
   * nor, on memfd, allocates them. See `unpopulated.ts` for how each backing
   * answers; huge-page regions report none.
   *
   * @param gpa The first address (page-aligned).
   * @param length Bytes (whole pages), inside one region.
   * @returns `[offset, length]` byte ranges from `gpa`, ascending, page-aligned.
   * @throws {RangeError} In a hole, across two regions, unaligned, or once closed.
   * @throws {SyscallError} If the kernel cannot be asked.
   */
  unpopulatedRanges(gpa: GuestAddress, length: number): [number, number][] {
    const p = this.#pieces("look for unpopulated pages in", gpa, length);
    if (p.length > 3) {
      throw new RangeError(
        `Cannot look for unpopulated pages at GPA ${hex(gpa)}: the range spans two regions`,
      );
    }
    return unpopulatedRanges(this.#regions[p[0]], { offset: p[1], length: p[2] }, {
      syscalls: this.#sys,
    });
  }

  /**
   * Translates a GPA to the host address of the same byte, for DMA setup.
   *
   * @param gpa The address.
   * @param length Bytes that must be contiguous in one region (default 1).
   * @returns The host address.
   * @throws {RangeError} In a hole, across two regions, or once closed.
   */
  translate(gpa: GuestAddress, length = 1): HostAddress {
    const p = this.#pieces("translate", gpa, length);
    if (p.length > 3) {
      throw new RangeError(
        `Cannot translate ${length} bytes at GPA ${hex(gpa)}: the range spans ${
          this.#regions[p[0]]
        } and ${this.#regions[p[3]]}, which are not contiguous in host memory`,
      );
    }
    return hostAddress(this.#regions[p[0]].hostAddress + BigInt(p[1]));
  }

  /**
   * Maps every region into a VFIO container (IOVA = `iovaBase` + GPA). If a
   * region fails, the ones already mapped are unmapped. Until the lease is
   * unmapped, `close()` refuses: the device could still write the RAM.
   *
   * @param container Anything with `mapDma()` (a `VfioContainer`).
   * @param options `iovaBase` (default 0) and `readonly`.
   * @returns One lease that unmaps all (idempotent; `using` works).
   * @throws {Error} Whatever `mapDma()` threw for the failing region.
   */
  mapInto(container: DmaMapper, options: MapIntoOptions = {}): GuestMemoryDmaLease {
    if (this.#closed) throw new TypeError("Cannot map guest memory for DMA: it is closed");
    for (const l of this.#dmaLeases) if (!l.mapped) this.#dmaLeases.delete(l);
    const lease = mapRegions(this.#regions, container, options);
    this.#dmaLeases.add(lease);
    return lease;
  }

  /**
   * Calls `observer` after every write made through this object (see
   * {@linkcode WriteObserver}).
   *
   * @param observer The observer.
   * @returns A disposable that removes it.
   */
  observeWrites(observer: WriteObserver): Disposable {
    this.#observers = [...this.#observers, observer];
    return {
      [Symbol.dispose]: () => {
        this.#observers = this.#observers.filter((o) => o !== observer);
      },
    };
  }

  /**
   * Runs `hook` at the start of `close()`, before anything is unmapped (dirty
   * trackers use it to stop).
   *
   * @param hook The hook; if it throws, the rest still runs and the memory
   *   is still unmapped, and `close()` throws that error afterwards.
   * @returns A disposable that removes it.
   */
  onClose(hook: () => void): Disposable {
    this.#closeHooks.add(hook);
    return { [Symbol.dispose]: () => void this.#closeHooks.delete(hook) };
  }

  /**
   * Unmaps every region and closes memfds (idempotent). Views handed out
   * before must not be used afterwards. Dirty trackers of this memory stop
   * first. While a DMA lease from {@linkcode GuestMemory.mapInto} is still
   * mapped it refuses and changes nothing: unmap the lease first (`using`
   * in declaration order does). A lease whose unmap the kernel refused no
   * longer holds it back (the IOMMU keeps those pages pinned until its
   * container releases them).
   *
   * @throws {ResourceBusyError} While a DMA lease is mapped, naming it.
   * @throws {SyscallError} The first munmap/close failure, after trying all.
   */
  close(): void {
    if (this.#closed) return;
    const live = [...this.#dmaLeases].filter((l) => l.mapped && !l.unmapRefused);
    if (live.length > 0) {
      throw new ResourceBusyError(
        `guest memory (${this.#regions.length} regions, ${describeSize(this.size)})`,
        live.map((l) =>
          `the DMA lease of ${l.leases.length} regions at iova ${hex(l.leases[0].iova)}`
        ),
        { order: "unmap it first: a device could still write this RAM" },
      );
    }
    this.#closed = true;
    let first: unknown;
    for (const hook of [...this.#closeHooks]) {
      try {
        hook();
      } catch (e) {
        first ??= e;
      }
    }
    this.#closeHooks.clear();
    this.#observers = [];
    const backings = this.#backings;
    this.#regions = [];
    this.#backings = [];
    this.#starts = [];
    this.#ends = [];
    this.#sizes = [];
    this.#u8 = [];
    this.#dv = [];
    if (!this.#owned) {
      if (first !== undefined) throw first;
      return;
    }
    for (const b of backings.reverse()) {
      try {
        unmapBacking(this.#sys, b);
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }

  /** Same as {@linkcode GuestMemory.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
