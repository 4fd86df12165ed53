/**
 * CPUID and MSR structs: `struct kvm_cpuid2` with `struct kvm_cpuid_entry2`,
 * `struct kvm_msr_list`, and `struct kvm_msrs` with `struct kvm_msr_entry`.
 * Pure codecs over `DataView`.
 *
 * @module
 */

/** `sizeof(struct kvm_cpuid2)` without entries. */
export const KVM_CPUID2_SIZE = 8;
/** `sizeof(struct kvm_cpuid_entry2)`. */
export const KVM_CPUID_ENTRY2_SIZE = 40;
/** `sizeof(struct kvm_msr_list)` without indices. */
export const KVM_MSR_LIST_SIZE = 4;
/** `sizeof(struct kvm_msrs)` without entries. */
export const KVM_MSRS_SIZE = 8;
/** `sizeof(struct kvm_msr_entry)`. */
export const KVM_MSR_ENTRY_SIZE = 16;

/** `struct kvm_cpuid_entry2`. */
export interface CpuidEntry {
  /** The leaf (EAX input). */
  function: number;
  /** The subleaf (ECX input). */
  index: number;
  /** `KVM_CPUID_FLAG_*`. */
  flags: number;
  /** EAX output. */
  eax: number;
  /** EBX output. */
  ebx: number;
  /** ECX output. */
  ecx: number;
  /** EDX output. */
  edx: number;
}

const CPUID_FIELDS = ["function", "index", "flags", "eax", "ebx", "ecx", "edx"] as const;

/**
 * Encodes `struct kvm_cpuid2` with room for `capacity` entries, the first
 * ones filled from `entries`; `nent` is the capacity when `entries` is empty
 * (a buffer for the kernel to fill) and the entry count otherwise.
 *
 * @param entries The entries to store.
 * @param options `capacity`: entries the buffer holds (default `entries.length`).
 * @returns The bytes.
 * @throws {RangeError} If the capacity is smaller than the entries.
 *
 * @example A buffer for KVM_GET_SUPPORTED_CPUID
 * ```ts
 * import { decodeCpuid2, encodeCpuid2 } from "./cpu.ts";
 * const b = encodeCpuid2([{ function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0, ecx: 0, edx: 0 }]);
 * console.log(decodeCpuid2(b)[0].eax); // 13
 * ```
 */
export function encodeCpuid2(
  entries: readonly CpuidEntry[],
  options: { capacity?: number } = {},
): Uint8Array {
  const capacity = options.capacity ?? entries.length;
  if (capacity < entries.length) {
    throw new RangeError(`Cannot store ${entries.length} CPUID entries in ${capacity}`);
  }
  const b = new Uint8Array(KVM_CPUID2_SIZE + capacity * KVM_CPUID_ENTRY2_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, entries.length === 0 ? capacity : entries.length, true);
  entries.forEach((e, i) => {
    const at = KVM_CPUID2_SIZE + i * KVM_CPUID_ENTRY2_SIZE;
    CPUID_FIELDS.forEach((f, j) => v.setUint32(at + j * 4, e[f] >>> 0, true));
  });
  return b;
}

/**
 * Decodes `struct kvm_cpuid2`: `nent` entries.
 *
 * @param b The bytes.
 * @returns The entries.
 * @throws {RangeError} If `nent` claims more entries than the bytes hold.
 */
export function decodeCpuid2(b: Uint8Array): CpuidEntry[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = v.getUint32(0, true);
  if (KVM_CPUID2_SIZE + n * KVM_CPUID_ENTRY2_SIZE > b.byteLength) {
    throw new RangeError(`Cannot decode ${n} CPUID entries from ${b.byteLength} bytes`);
  }
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = KVM_CPUID2_SIZE + i * KVM_CPUID_ENTRY2_SIZE;
    const e = {} as CpuidEntry;
    CPUID_FIELDS.forEach((f, j) => e[f] = v.getUint32(at + j * 4, true));
    out.push(e);
  }
  return out;
}

/**
 * A `struct kvm_msr_list` buffer with room for `capacity` indices.
 *
 * @param capacity Indices the kernel may write.
 * @returns The bytes, `nmsrs` = `capacity`.
 *
 * @example
 * ```ts
 * import { decodeMsrList, msrListBuffer } from "./cpu.ts";
 * const b = msrListBuffer(2);
 * new DataView(b.buffer).setUint32(4, 0x10, true);
 * new DataView(b.buffer).setUint32(0, 1, true);
 * console.log(decodeMsrList(b)); // [16]
 * ```
 */
export function msrListBuffer(capacity: number): Uint8Array {
  const b = new Uint8Array(KVM_MSR_LIST_SIZE + capacity * 4);
  new DataView(b.buffer).setUint32(0, capacity, true);
  return b;
}

/**
 * Decodes `struct kvm_msr_list`.
 *
 * @param b The bytes.
 * @returns The MSR indices.
 * @throws {RangeError} If `nmsrs` claims more than the bytes hold.
 */
export function decodeMsrList(b: Uint8Array): number[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = v.getUint32(0, true);
  if (KVM_MSR_LIST_SIZE + n * 4 > b.byteLength) {
    throw new RangeError(`Cannot decode ${n} MSR indices from ${b.byteLength} bytes`);
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(v.getUint32(KVM_MSR_LIST_SIZE + i * 4, true));
  return out;
}

/** One MSR: `struct kvm_msr_entry`. */
export interface MsrEntry {
  /** The MSR index. */
  index: number;
  /** Its value. */
  data: bigint;
}

/**
 * Encodes `struct kvm_msrs`.
 *
 * @param entries The MSRs (`data` is ignored by `KVM_GET_MSRS`).
 * @returns The bytes.
 *
 * @example
 * ```ts
 * import { decodeMsrs, encodeMsrs } from "./cpu.ts";
 * console.log(decodeMsrs(encodeMsrs([{ index: 0x10, data: 5n }]))); // [{ index: 16, data: 5n }]
 * ```
 */
export function encodeMsrs(entries: readonly MsrEntry[]): Uint8Array {
  const b = new Uint8Array(KVM_MSRS_SIZE + entries.length * KVM_MSR_ENTRY_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const at = KVM_MSRS_SIZE + i * KVM_MSR_ENTRY_SIZE;
    v.setUint32(at, e.index >>> 0, true);
    v.setBigUint64(at + 8, BigInt.asUintN(64, e.data), true);
  });
  return b;
}

/**
 * Decodes `struct kvm_msrs`.
 *
 * @param b The bytes.
 * @param options `count`: entries to read (default `nmsrs`; `KVM_GET_MSRS`
 *   returns how many it filled).
 * @returns The MSRs.
 * @throws {RangeError} If the count exceeds what the bytes hold.
 */
export function decodeMsrs(b: Uint8Array, options: { count?: number } = {}): MsrEntry[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = options.count ?? v.getUint32(0, true);
  if (KVM_MSRS_SIZE + n * KVM_MSR_ENTRY_SIZE > b.byteLength) {
    throw new RangeError(`Cannot decode ${n} MSRs from ${b.byteLength} bytes`);
  }
  const out: MsrEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = KVM_MSRS_SIZE + i * KVM_MSR_ENTRY_SIZE;
    out.push({ index: v.getUint32(at, true), data: v.getBigUint64(at + 8, true) });
  }
  return out;
}
