/**
 * The fake KVM's VM: memory slots as `KVM_SET_USER_MEMORY_REGION` keeps them
 * (virt/kvm/kvm_main.c, 6.1), the dirty bitmap with manual protection, the
 * per-vCPU dirty rings with their soft limit, and guest writes that go to the
 * slot's real host memory and are logged the way write protection would.
 *
 * @module
 */

import { EEXIST, EFAULT, EINVAL, ENOENT } from "../../sys/errno.ts";
import { hostView } from "../../sys/host_memory.ts";
import {
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
} from "../../kvm/uapi/constants.ts";
import { fail } from "./user_memory.ts";

/** `KVM_DIRTY_RING_RSVD_ENTRIES` on AMD: the entries kept free past the soft limit. */
export const FAKE_RING_RESERVED = 64;

/** One memory slot. */
export interface FakeSlot {
  slot: number;
  flags: number;
  gpa: bigint;
  size: bigint;
  hostAddress: bigint;
  pages: number;
  /** The dirty bitmap while logging. */
  dirty?: Uint32Array;
  /** Pages write-protected for the dirty ring (a write pushes an entry). */
  protectedPages?: Uint8Array;
}

/** A vCPU's dirty ring in the fake: real mapped memory plus the kernel's indices. */
export interface FakeRing {
  addr: bigint;
  entries: number;
  dirtyIndex: number;
  resetIndex: number;
}

/** The VM state the fake vCPUs and ioctls share. */
export class FakeVmState {
  /** Slots by id. */
  readonly slots = new Map<number, FakeSlot>();
  /** `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` flags enabled. */
  manualProtect = 0;
  /** Ring bytes per vCPU, 0 without a ring. */
  ringBytes = 0;
  /** Whether the ring was enabled with `_ACQ_REL`. */
  ringAcqRel = false;
  /** Whether the in-kernel irqchip exists. */
  irqchip = false;
  /** The TSS address set. */
  tssAddress?: bigint;
  /** The guest clock (ns) and when it was set. */
  clock = { value: 1_000_000n, setAt: performance.now() };

  /** Sets, changes or deletes a slot as `kvm_set_memory_region` does. */
  setSlot(r: {
    slot: number;
    flags: number;
    guestPhysAddr: bigint;
    memorySize: bigint;
    userspaceAddr: bigint;
  }, maxSlots: number): void {
    if (r.slot >= maxSlots) fail(EINVAL);
    if ((r.flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) fail(EINVAL);
    if ((r.guestPhysAddr | r.memorySize | r.userspaceAddr) & 0xfffn) fail(EINVAL);
    const old = this.slots.get(r.slot);
    if (r.memorySize === 0n) {
      if (old === undefined) fail(EINVAL);
      this.slots.delete(r.slot);
      return;
    }
    if (old !== undefined) {
      // Only the flags may change (KVM_MR_FLAGS_ONLY); READONLY may not.
      if (old.gpa !== r.guestPhysAddr || old.size !== r.memorySize) fail(EINVAL);
      if (old.hostAddress !== r.userspaceAddr) fail(EINVAL);
      if ((old.flags ^ r.flags) & KVM_MEM_READONLY) fail(EINVAL);
      old.flags = r.flags;
      this.#logging(old);
      return;
    }
    for (const s of this.slots.values()) {
      if (r.guestPhysAddr < s.gpa + s.size && s.gpa < r.guestPhysAddr + r.memorySize) fail(EEXIST);
    }
    const slot: FakeSlot = {
      slot: r.slot,
      flags: r.flags,
      gpa: r.guestPhysAddr,
      size: r.memorySize,
      hostAddress: r.userspaceAddr,
      pages: Number(r.memorySize / 4096n),
    };
    this.#logging(slot);
    this.slots.set(r.slot, slot);
  }

  #logging(s: FakeSlot): void {
    if ((s.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) {
      s.dirty = undefined;
      s.protectedPages = undefined;
      return;
    }
    s.dirty ??= new Uint32Array(Math.ceil(s.pages / 64) * 2);
    // Turning logging on write-protects every page.
    s.protectedPages ??= new Uint8Array(s.pages).fill(1);
  }

  /** The slot holding a GPA. */
  slotAt(gpa: bigint): FakeSlot | undefined {
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa < s.gpa + s.size) return s;
    return undefined;
  }

  /**
   * A guest store of `size` bytes: into the slot's memory, logged. Returns
   * false when no slot holds it (an MMIO access) or the slot is read-only.
   */
  guestWrite(gpa: bigint, value: bigint, size: number, ring: FakeRing | undefined): boolean {
    const s = this.slotAt(gpa);
    if (s === undefined || (s.flags & KVM_MEM_READONLY) !== 0) return false;
    const off = Number(gpa - s.gpa);
    const view = new DataView(hostView(s.hostAddress + BigInt(off), size).buffer);
    for (let i = 0; i < size; i++) view.setUint8(i, Number((value >> BigInt(8 * i)) & 0xffn));
    const page = off >>> 12;
    if (s.dirty !== undefined) {
      if (this.ringBytes > 0) {
        if (s.protectedPages![page] === 1 && ring !== undefined) {
          s.protectedPages![page] = 0;
          this.pushRing(ring, s.slot, page);
        }
      } else {
        s.dirty[page >>> 5] |= 1 << (page & 31);
      }
    }
    return true;
  }

  /** Pushes a ring entry (flags last, as the kernel's store-release). */
  pushRing(ring: FakeRing, slot: number, page: number): void {
    if (ring.dirtyIndex - ring.resetIndex >= ring.entries) fail(EFAULT);
    const at = (ring.dirtyIndex & (ring.entries - 1)) * 16;
    const v = new DataView(hostView(ring.addr + BigInt(at), 16).buffer);
    v.setUint32(4, slot, true);
    v.setBigUint64(8, BigInt(page), true);
    Atomics.store(new Int32Array(v.buffer, 0, 1), 0, KVM_DIRTY_GFN_F_DIRTY);
    ring.dirtyIndex++;
  }

  /** Whether a ring reached its soft limit. */
  ringSoftFull(ring: FakeRing): boolean {
    return ring.dirtyIndex - ring.resetIndex >= ring.entries - FAKE_RING_RESERVED;
  }

  /** `KVM_RESET_DIRTY_RINGS` for one ring: re-protects harvested entries in order. */
  resetRing(ring: FakeRing): number {
    let n = 0;
    while (ring.resetIndex < ring.dirtyIndex) {
      const at = (ring.resetIndex & (ring.entries - 1)) * 16;
      const v = new DataView(hostView(ring.addr + BigInt(at), 16).buffer);
      const flags = Atomics.load(new Int32Array(v.buffer, 0, 1), 0);
      if ((flags & KVM_DIRTY_GFN_F_RESET) === 0) break;
      const slot = this.slots.get(v.getUint32(4, true));
      const page = Number(v.getBigUint64(8, true));
      if (slot?.protectedPages !== undefined && page < slot.pages) slot.protectedPages[page] = 1;
      Atomics.store(new Int32Array(v.buffer, 0, 1), 0, 0);
      ring.resetIndex++;
      n++;
    }
    return n;
  }

  /** `KVM_GET_DIRTY_LOG`: copies the bitmap out; without manual protection, clears it. */
  getDirtyLog(slotId: number, bitmap: bigint): void {
    const s = this.slots.get(slotId);
    if (s === undefined) fail(ENOENT);
    if (s.dirty === undefined || this.ringBytes > 0) fail(ENOENT);
    const out = new Uint32Array(hostView(bitmap, s.dirty.byteLength).buffer);
    out.set(s.dirty);
    if (this.manualProtect === 0) s.dirty.fill(0);
  }

  /** `KVM_CLEAR_DIRTY_LOG`: clears (re-protects) the pages of the given bits. */
  clearDirtyLog(c: { slot: number; firstPage: bigint; numPages: number; bitmap: bigint }): void {
    if (this.manualProtect === 0) fail(EINVAL);
    const s = this.slots.get(c.slot);
    if (s === undefined || s.dirty === undefined) fail(ENOENT);
    const first = Number(c.firstPage);
    if (first % 64 !== 0) fail(EINVAL);
    if (c.numPages % 64 !== 0 && first + c.numPages !== s.pages) fail(EINVAL);
    if (first > s.pages || c.numPages > s.pages - first) fail(EINVAL);
    const words = Math.ceil(c.numPages / 32);
    const bits = new Uint32Array(hostView(c.bitmap, Math.ceil(c.numPages / 64) * 8).buffer);
    for (let i = 0; i < words; i++) s.dirty[(first >>> 5) + i] &= ~bits[i];
  }
}
