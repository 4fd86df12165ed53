/**
 * Memory slots and dirty logging: `struct kvm_userspace_memory_region`,
 * `struct kvm_dirty_log`, `struct kvm_clear_dirty_log`, `struct kvm_dirty_gfn`
 * and `struct kvm_enable_cap`. Pure codecs over `DataView`.
 *
 * @module
 */

/** `sizeof(struct kvm_userspace_memory_region)`. */
export const KVM_USERSPACE_MEMORY_REGION_SIZE = 32;
/** `sizeof(struct kvm_dirty_log)`. */
export const KVM_DIRTY_LOG_SIZE = 16;
/** `sizeof(struct kvm_clear_dirty_log)`. */
export const KVM_CLEAR_DIRTY_LOG_SIZE = 24;
/** `sizeof(struct kvm_dirty_gfn)`: one dirty ring entry. */
export const KVM_DIRTY_GFN_SIZE = 16;
/** `kvm_dirty_gfn.flags` (u32): `KVM_DIRTY_GFN_F_*`. */
export const DIRTY_GFN_FLAGS = 0;
/** `kvm_dirty_gfn.slot` (u32): the slot, with the address space in bits 16+. */
export const DIRTY_GFN_SLOT = 4;
/** `kvm_dirty_gfn.offset` (u64): the page in the slot. */
export const DIRTY_GFN_OFFSET = 8;
/** `sizeof(struct kvm_enable_cap)`. */
export const KVM_ENABLE_CAP_SIZE = 104;

/** `struct kvm_userspace_memory_region`. */
export interface UserMemoryRegion {
  /** Slot id (bits 16+ select the address space). */
  slot: number;
  /** `KVM_MEM_*` flags. */
  flags: number;
  /** First guest-physical address. */
  guestPhysAddr: bigint;
  /** Bytes; 0 deletes the slot. */
  memorySize: bigint;
  /** The host address of the memory. */
  userspaceAddr: bigint;
}

/**
 * Encodes `struct kvm_userspace_memory_region`.
 *
 * @param r The region.
 * @returns 32 bytes.
 *
 * @example
 * ```ts
 * import { decodeUserMemoryRegion, encodeUserMemoryRegion } from "./memory.ts";
 * const b = encodeUserMemoryRegion({
 *   slot: 1, flags: 1, guestPhysAddr: 0x100000n, memorySize: 0x200000n, userspaceAddr: 0x7f00n,
 * });
 * console.log(decodeUserMemoryRegion(b).memorySize); // 2097152n
 * ```
 */
export function encodeUserMemoryRegion(r: UserMemoryRegion): Uint8Array {
  const b = new Uint8Array(KVM_USERSPACE_MEMORY_REGION_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, r.slot, true);
  v.setUint32(4, r.flags, true);
  v.setBigUint64(8, r.guestPhysAddr, true);
  v.setBigUint64(16, r.memorySize, true);
  v.setBigUint64(24, r.userspaceAddr, true);
  return b;
}

/**
 * Decodes `struct kvm_userspace_memory_region`.
 *
 * @param b 32 bytes.
 * @returns The region.
 */
export function decodeUserMemoryRegion(b: Uint8Array): UserMemoryRegion {
  const v = new DataView(b.buffer, b.byteOffset, KVM_USERSPACE_MEMORY_REGION_SIZE);
  return {
    slot: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    guestPhysAddr: v.getBigUint64(8, true),
    memorySize: v.getBigUint64(16, true),
    userspaceAddr: v.getBigUint64(24, true),
  };
}

/**
 * Encodes `struct kvm_dirty_log`: the slot and where the kernel writes its
 * bitmap (one bit per 4 KiB page, u64 words).
 *
 * @param slot The slot.
 * @param bitmap The bitmap's host address.
 * @returns 16 bytes.
 *
 * @example
 * ```ts
 * import { encodeDirtyLog } from "./memory.ts";
 * console.log(new DataView(encodeDirtyLog(3, 0x1000n).buffer).getBigUint64(8, true)); // 4096n
 * ```
 */
export function encodeDirtyLog(slot: number, bitmap: bigint): Uint8Array {
  const b = new Uint8Array(KVM_DIRTY_LOG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, slot, true);
  v.setBigUint64(8, bitmap, true);
  return b;
}

/** `struct kvm_clear_dirty_log`. */
export interface ClearDirtyLog {
  /** The slot. */
  slot: number;
  /** First page; a multiple of 64. */
  firstPage: bigint;
  /** Pages; a multiple of 64 unless the range ends the slot. */
  numPages: number;
  /** The host address of the bitmap of pages to clear (bit 0 = `firstPage`). */
  bitmap: bigint;
}

/**
 * Encodes `struct kvm_clear_dirty_log`.
 *
 * @param c The range to clear.
 * @returns 24 bytes.
 *
 * @example
 * ```ts
 * import { encodeClearDirtyLog } from "./memory.ts";
 * const b = encodeClearDirtyLog({ slot: 0, firstPage: 64n, numPages: 128, bitmap: 0x2000n });
 * console.log(new DataView(b.buffer).getUint32(16, true)); // 128
 * ```
 */
export function encodeClearDirtyLog(c: ClearDirtyLog): Uint8Array {
  const b = new Uint8Array(KVM_CLEAR_DIRTY_LOG_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, c.slot, true);
  v.setUint32(4, c.numPages, true);
  v.setBigUint64(8, c.firstPage, true);
  v.setBigUint64(16, c.bitmap, true);
  return b;
}

/**
 * Encodes `struct kvm_enable_cap`.
 *
 * @param cap The `KVM_CAP_*` number.
 * @param args Up to four `args`.
 * @returns 104 bytes.
 * @throws {RangeError} For more than four arguments.
 *
 * @example
 * ```ts
 * import { encodeEnableCap } from "./memory.ts";
 * const b = encodeEnableCap(192, [65536n]);
 * console.log(new DataView(b.buffer).getBigUint64(8, true)); // 65536n
 * ```
 */
export function encodeEnableCap(cap: number, args: readonly bigint[] = []): Uint8Array {
  if (args.length > 4) throw new RangeError(`Cannot pass ${args.length} args to KVM_ENABLE_CAP`);
  const b = new Uint8Array(KVM_ENABLE_CAP_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, cap, true);
  args.forEach((a, i) => v.setBigUint64(8 + i * 8, a, true));
  return b;
}
