/**
 * `struct kvm_regs`, `struct kvm_segment`, `struct kvm_dtable` and
 * `struct kvm_sregs` (x86_64 `asm/kvm.h`): pure codecs over `DataView`.
 *
 * @module
 */

/** `sizeof(struct kvm_regs)`. */
export const KVM_REGS_SIZE = 144;
/** `sizeof(struct kvm_segment)`. */
export const KVM_SEGMENT_SIZE = 24;
/** `sizeof(struct kvm_dtable)`. */
export const KVM_DTABLE_SIZE = 16;
/** `sizeof(struct kvm_sregs)`. */
export const KVM_SREGS_SIZE = 312;

/** The general registers, in `struct kvm_regs` order. */
export const REG_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;

/** A general register's name. */
export type RegName = typeof REG_NAMES[number];

/** `struct kvm_regs`: the general registers, RIP and RFLAGS. */
export type KvmRegs = Record<RegName, bigint>;

/**
 * Decodes `struct kvm_regs`.
 *
 * @param bytes At least {@linkcode KVM_REGS_SIZE} bytes.
 * @returns The registers.
 *
 * @example
 * ```ts
 * import { decodeRegs, encodeRegs } from "./regs.ts";
 * const regs = decodeRegs(new Uint8Array(144));
 * regs.rip = 0x10000n;
 * console.log(decodeRegs(encodeRegs(regs)).rip); // 65536n
 * ```
 */
export function decodeRegs(bytes: Uint8Array): KvmRegs {
  const v = new DataView(bytes.buffer, bytes.byteOffset, KVM_REGS_SIZE);
  const regs = {} as KvmRegs;
  REG_NAMES.forEach((name, i) => regs[name] = v.getBigUint64(i * 8, true));
  return regs;
}

/**
 * Encodes `struct kvm_regs`.
 *
 * @param regs The registers.
 * @returns {@linkcode KVM_REGS_SIZE} bytes.
 */
export function encodeRegs(regs: KvmRegs): Uint8Array {
  const bytes = new Uint8Array(KVM_REGS_SIZE);
  const v = new DataView(bytes.buffer);
  REG_NAMES.forEach((name, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, regs[name]), true));
  return bytes;
}

/** `struct kvm_segment`. */
export interface KvmSegment {
  /** Base address. */
  base: bigint;
  /** Limit (bytes, or pages with `g`). */
  limit: number;
  /** Selector. */
  selector: number;
  /** Descriptor type (4 bits). */
  type: number;
  /** Present. */
  present: number;
  /** Privilege level. */
  dpl: number;
  /** Default operation size (D/B). */
  db: number;
  /** Code/data (1) or system (0). */
  s: number;
  /** 64-bit code. */
  l: number;
  /** Granularity. */
  g: number;
  /** Available bit. */
  avl: number;
  /** Unusable (VMX). */
  unusable: number;
}

/** `struct kvm_dtable` (GDT, IDT). */
export interface KvmDtable {
  /** Base address. */
  base: bigint;
  /** Limit. */
  limit: number;
}

/** `struct kvm_sregs`: segments, descriptor tables, control registers, EFER, APIC base. */
export interface KvmSregs {
  /** CS. */
  cs: KvmSegment;
  /** DS. */
  ds: KvmSegment;
  /** ES. */
  es: KvmSegment;
  /** FS. */
  fs: KvmSegment;
  /** GS. */
  gs: KvmSegment;
  /** SS. */
  ss: KvmSegment;
  /** TR. */
  tr: KvmSegment;
  /** LDT. */
  ldt: KvmSegment;
  /** GDT. */
  gdt: KvmDtable;
  /** IDT. */
  idt: KvmDtable;
  /** CR0. */
  cr0: bigint;
  /** CR2. */
  cr2: bigint;
  /** CR3. */
  cr3: bigint;
  /** CR4. */
  cr4: bigint;
  /** CR8. */
  cr8: bigint;
  /** EFER. */
  efer: bigint;
  /** The APIC base MSR. */
  apicBase: bigint;
  /** `interrupt_bitmap`: pending external interrupts, 256 bits. */
  interruptBitmap: [bigint, bigint, bigint, bigint];
}

const SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const SEG_BYTES = ["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"] as const;

function decodeSegment(v: DataView, at: number): KvmSegment {
  const seg = {
    base: v.getBigUint64(at, true),
    limit: v.getUint32(at + 8, true),
    selector: v.getUint16(at + 12, true),
  } as KvmSegment;
  SEG_BYTES.forEach((f, i) => seg[f] = v.getUint8(at + 14 + i));
  return seg;
}

function encodeSegment(v: DataView, at: number, seg: KvmSegment): void {
  v.setBigUint64(at, seg.base, true);
  v.setUint32(at + 8, seg.limit >>> 0, true);
  v.setUint16(at + 12, seg.selector, true);
  SEG_BYTES.forEach((f, i) => v.setUint8(at + 14 + i, seg[f]));
}

const DTABLES = 8 * KVM_SEGMENT_SIZE;
const CONTROL = DTABLES + 2 * KVM_DTABLE_SIZE;

/**
 * Decodes `struct kvm_sregs`.
 *
 * @param bytes At least {@linkcode KVM_SREGS_SIZE} bytes.
 * @returns The special registers.
 *
 * @example
 * ```ts
 * import { decodeSregs } from "./regs.ts";
 * console.log(decodeSregs(new Uint8Array(312)).efer); // 0n
 * ```
 */
export function decodeSregs(bytes: Uint8Array): KvmSregs {
  const v = new DataView(bytes.buffer, bytes.byteOffset, KVM_SREGS_SIZE);
  const s = {} as KvmSregs;
  SEGMENTS.forEach((name, i) => s[name] = decodeSegment(v, i * KVM_SEGMENT_SIZE));
  s.gdt = { base: v.getBigUint64(DTABLES, true), limit: v.getUint16(DTABLES + 8, true) };
  s.idt = {
    base: v.getBigUint64(DTABLES + 16, true),
    limit: v.getUint16(DTABLES + 24, true),
  };
  s.cr0 = v.getBigUint64(CONTROL, true);
  s.cr2 = v.getBigUint64(CONTROL + 8, true);
  s.cr3 = v.getBigUint64(CONTROL + 16, true);
  s.cr4 = v.getBigUint64(CONTROL + 24, true);
  s.cr8 = v.getBigUint64(CONTROL + 32, true);
  s.efer = v.getBigUint64(CONTROL + 40, true);
  s.apicBase = v.getBigUint64(CONTROL + 48, true);
  s.interruptBitmap = [0, 1, 2, 3].map((i) => v.getBigUint64(CONTROL + 56 + i * 8, true)) as [
    bigint,
    bigint,
    bigint,
    bigint,
  ];
  return s;
}

/**
 * Encodes `struct kvm_sregs`.
 *
 * @param s The special registers.
 * @returns {@linkcode KVM_SREGS_SIZE} bytes.
 */
export function encodeSregs(s: KvmSregs): Uint8Array {
  const bytes = new Uint8Array(KVM_SREGS_SIZE);
  const v = new DataView(bytes.buffer);
  SEGMENTS.forEach((name, i) => encodeSegment(v, i * KVM_SEGMENT_SIZE, s[name]));
  v.setBigUint64(DTABLES, s.gdt.base, true);
  v.setUint16(DTABLES + 8, s.gdt.limit, true);
  v.setBigUint64(DTABLES + 16, s.idt.base, true);
  v.setUint16(DTABLES + 24, s.idt.limit, true);
  const control = [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apicBase, ...s.interruptBitmap];
  control.forEach((x, i) => v.setBigUint64(CONTROL + i * 8, x, true));
  return bytes;
}
