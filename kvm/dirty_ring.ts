/**
 * KVM's dirty ring as a dirty source: each vCPU pushes the pages it dirties
 * into its own mapped ring (`KVM_CAP_DIRTY_LOG_RING`, or `_ACQ_REL`); a
 * harvest collects the entries the kernel marked dirty, marks them harvested
 * and asks `KVM_RESET_DIRTY_RINGS` to re-protect those pages. A vCPU whose
 * ring fills up exits with `KVM_EXIT_DIRTY_RING_FULL`: its ring is harvested
 * then (into a pending bitmap for the next harvest) and it resumes.
 *
 * @module
 */

import { orBitsAt, popcount32 } from "../sys/bits.ts";
import { hostView } from "../sys/host_memory.ts";
import { VM_INTERNALS, type VmInternals } from "./_vm_internals.ts";
import {
  checkBitmaps,
  coverAll,
  type KvmDirtySource,
  type KvmHarvest,
  type PageBitmap,
} from "./dirty_source.ts";
import { KVM_DIRTY_GFN_F_DIRTY, KVM_DIRTY_GFN_F_RESET } from "./uapi/constants.ts";
import { KVM_RESET_DIRTY_RINGS } from "./uapi/ioctls.ts";
import { KVM_DIRTY_GFN_SIZE } from "./uapi/memory.ts";
import type { Vcpu } from "./vcpu.ts";
import type { Vm } from "./vm.ts";

const WORDS_PER_ENTRY = KVM_DIRTY_GFN_SIZE / 4;
const EMPTY_FULL_EXITS_LIMIT = 64;

interface Ring {
  i32: Int32Array;
  u32: Uint32Array;
  entries: number;
  next: number;
}

/**
 * The dirty rings of a VM made with `dirtyRingBytes`. One per VM; it handles
 * the VM's full-ring exits from creation on.
 *
 * @example Pages the guest wrote
 * ```ts ignore
 * using vm = kvm.createVm({ dirtyRingBytes: 65536 });
 * using ring = new KvmDirtyRing(vm);
 * ring.start();
 * // ... the guest runs ...
 * const bitmaps = vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n)));
 * console.log(ring.harvestInto(bitmaps).dirtyPages, ring.fullExits);
 * ```
 */
export class KvmDirtyRing implements KvmDirtySource, Disposable {
  /** `kvm-dirty-ring`. */
  readonly name = "kvm-dirty-ring";
  /** KVM reports the pages the guest wrote. */
  readonly scope = "precise" as const;
  /** Harvests are safe while vCPUs run. */
  readonly concurrentSafe = true as const;
  #vm: VmInternals;
  #vmObject: Vm;
  #rings = new Map<Vcpu, Ring>();
  #pending = new Map<number, Uint32Array>();
  #active = false;
  #fullExits = 0;
  #entriesHarvested = 0;
  #resets = 0;
  #closed = false;
  #emptyFullExits = 0;

  /**
   * Takes over a VM's dirty rings.
   *
   * @param vm A VM made with `dirtyRingBytes`.
   * @throws {TypeError} When the VM has no dirty ring, or already has a `KvmDirtyRing`.
   */
  constructor(vm: Vm) {
    const inner = VM_INTERNALS.get(vm);
    if (inner === undefined) throw new TypeError("Cannot harvest dirty rings: not a Vm");
    if (vm.dirtyRing.bytes === 0) {
      throw new TypeError("Cannot harvest dirty rings: the VM was made without dirtyRingBytes");
    }
    this.#vm = inner;
    this.#vmObject = vm;
    inner.setRingHandler((vcpu) => this.#ringFull(vcpu));
  }

  /**
   * Entries per vCPU ring.
   *
   * @returns The count.
   */
  get entries(): number {
    return this.#vmObject.dirtyRing.bytes / KVM_DIRTY_GFN_SIZE;
  }

  /**
   * `KVM_EXIT_DIRTY_RING_FULL` exits handled so far.
   *
   * @returns The count.
   */
  get fullExits(): number {
    return this.#fullExits;
  }

  /**
   * Ring entries collected and `KVM_RESET_DIRTY_RINGS` calls so far.
   *
   * @returns The counts.
   */
  get stats(): { readonly entries: number; readonly resets: number } {
    return { entries: this.#entriesHarvested, resets: this.#resets };
  }

  /**
   * Whether logging is on.
   *
   * @returns `true` between `start()` and `stop()`.
   */
  get active(): boolean {
    return this.#active;
  }

  /**
   * Turns on logging for every slot (the rings start filling).
   *
   * @throws {IoctlError} When KVM refuses.
   */
  start(): void {
    if (this.#active) return;
    this.#vmObject.setDirtyLogging(true);
    this.#active = true;
  }

  #ring(vcpu: Vcpu): Ring | undefined {
    let r = this.#rings.get(vcpu);
    if (r !== undefined) return r;
    const mapping = vcpu.unsafeDirtyRing;
    if (mapping === undefined) return undefined;
    // SAFETY: the ring stays mapped until the vCPU is closed; views of a
    // closed vCPU are dropped in #forgetClosed().
    const view = hostView(mapping.addr, mapping.bytes);
    r = {
      i32: new Int32Array(view.buffer),
      u32: new Uint32Array(view.buffer),
      entries: mapping.bytes / KVM_DIRTY_GFN_SIZE,
      next: 0,
    };
    this.#rings.set(vcpu, r);
    return r;
  }

  #pendingFor(slot: number, pages: number): Uint32Array {
    let p = this.#pending.get(slot);
    if (p === undefined || p.length * 32 < pages) {
      const grown = new Uint32Array(Math.ceil(pages / 64) * 2);
      if (p !== undefined) grown.set(p);
      this.#pending.set(slot, p = grown);
    }
    return p;
  }

  // Moves the dirty entries of one ring into the pending bitmaps; returns how many.
  #collect(ring: Ring): number {
    const slots = this.#vm.slots();
    const mask = ring.entries - 1;
    const { i32, u32 } = ring;
    let lastSlot = -1;
    let pages = 0;
    let pending: Uint32Array | undefined;
    let n = 0;
    for (;;) {
      const at = (ring.next & mask) * WORDS_PER_ENTRY;
      if ((Atomics.load(i32, at) & KVM_DIRTY_GFN_F_DIRTY) === 0) break;
      const slot = u32[at + 1];
      if (slot !== lastSlot) {
        lastSlot = slot;
        const s = slots.find((x) => x.slot === slot);
        pages = s === undefined ? 0 : Number(s.size / 4096n);
        pending = s === undefined ? undefined : this.#pendingFor(slot, pages);
      }
      const page = u32[at + 2] + u32[at + 3] * 2 ** 32;
      if (pending !== undefined && page < pages) pending[page >>> 5] |= 1 << (page & 31);
      Atomics.store(i32, at, KVM_DIRTY_GFN_F_RESET);
      ring.next = (ring.next + 1) >>> 0;
      n++;
    }
    return n;
  }

  #reset(): void {
    this.#vm.sys.ioctlValue(this.#vm.fd(), KVM_RESET_DIRTY_RINGS, 0n);
    this.#resets++;
  }

  #forgetClosed(): void {
    for (const v of this.#rings.keys()) if (v.unsafeFd < 0) this.#rings.delete(v);
  }

  #ringFull(vcpu: Vcpu): void {
    this.#fullExits++;
    const ring = this.#ring(vcpu);
    if (ring === undefined) return;
    const collected = this.#collect(ring);
    this.#entriesHarvested += collected;
    this.#reset();
    // A full exit may come once with nothing left (a harvest emptied the ring
    // after the kernel flagged it full); again and again means the kernel's
    // ring overflowed and will never drain.
    this.#emptyFullExits = collected === 0 ? this.#emptyFullExits + 1 : 0;
    if (this.#emptyFullExits >= EMPTY_FULL_EXITS_LIMIT) {
      this.#emptyFullExits = 0;
      throw new TypeError(
        `KVM_EXIT_DIRTY_RING_FULL came ${EMPTY_FULL_EXITS_LIMIT} times with no dirty entry: ` +
          "the kernel's ring overflowed (its entries were overwritten) and cannot drain; " +
          "use a larger dirtyRingBytes",
      );
    }
  }

  /**
   * ORs the pages written since the last harvest (every ring, and what
   * full-ring exits collected) into the bitmaps, and resets the rings.
   *
   * @param bitmaps One bitmap per slot, in `Vm.slots` order.
   * @returns What was found.
   * @throws {RangeError} When the bitmaps do not match the slots.
   * @throws {TypeError} When not started.
   * @throws {IoctlError} When `KVM_RESET_DIRTY_RINGS` fails.
   */
  harvestInto(bitmaps: PageBitmap[]): KvmHarvest {
    if (!this.#active) throw new TypeError("Cannot harvest the KVM dirty ring before start()");
    const slots = this.#vm.slots();
    const pagesOf = slots.map((s) => Number(s.size / 4096n));
    checkBitmaps(bitmaps, pagesOf);
    this.#forgetClosed();
    let collected = 0;
    for (const vcpu of this.#vm.vcpus()) {
      const ring = this.#ring(vcpu);
      if (ring !== undefined) collected += this.#collect(ring);
    }
    this.#entriesHarvested += collected;
    if (collected > 0) this.#reset();
    let dirty = 0;
    slots.forEach((s, i) => {
      const p = this.#pending.get(s.slot);
      if (p === undefined) return;
      const dst = bitmaps[i].words;
      for (let w = 0; w < p.length; w++) {
        const add = p[w] & ~(dst[w] ?? 0);
        if (add !== 0) dirty += popcount32(add);
      }
      orBitsAt(dst, 0, p, pagesOf[i]);
      p.fill(0);
    });
    return {
      source: this.name,
      dirtyPages: dirty,
      scope: "precise",
      coveredPages: pagesOf.reduce((a, b) => a + b, 0),
    };
  }

  /**
   * Marks every page of every slot.
   *
   * @param bitmaps One bitmap per slot.
   */
  coverInto(bitmaps: PageBitmap[]): void {
    coverAll(bitmaps);
  }

  /** Turns logging off (entries already in the rings stay for a harvest). Idempotent. */
  stop(): void {
    if (!this.#active) return;
    this.#active = false;
    if (this.#vmObject.unsafeFd >= 0) this.#vmObject.setDirtyLogging(false);
  }

  /** Stops, forgets the rings and gives up the VM's full-ring exits. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stop();
    this.#rings.clear();
    this.#pending.clear();
    this.#vm.setRingHandler(undefined);
  }

  /** Closes through {@linkcode KvmDirtyRing.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
