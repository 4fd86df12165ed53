/**
 * Puts a vCPU straight into 64-bit mode, as the kernel's KVM selftests do
 * (`lib/x86_64/processor.c`): identity-mapped page tables (2 MiB pages) and a
 * GDT written into guest RAM, then CR0/CR4/EFER, flat segments and a TSS in
 * the special registers, and RIP/RSP/RFLAGS.
 *
 * The tables are written with their accessed and dirty bits already set, so
 * the CPU never writes them back: the guest's dirty pages are only the ones
 * its code writes.
 *
 * @module
 */

import { type GuestAddress, guestAddress } from "../sys/address.ts";
import type { KvmRegs, KvmSegment, KvmSregs } from "./uapi/regs.ts";

/** Where the tables go in guest RAM. Every address is 4 KiB-aligned except `tss`. */
export interface LongModeLayout {
  /** The GDT: null, code (0x08), data (0x10), TSS (0x18, 16 bytes). */
  readonly gdt: bigint;
  /** The 104-byte TSS. */
  readonly tss: bigint;
  /** The PML4 page. */
  readonly pml4: bigint;
  /** The PDPT page. */
  readonly pdpt: bigint;
  /** The first PD page; one page per GiB mapped follows. */
  readonly pd: bigint;
  /** Bytes identity-mapped from 0 (a multiple of 1 GiB, at most 512 GiB). */
  readonly mappedBytes: bigint;
}

/** The layout the test guest uses (`kvm/guest/guest.h`): 4 GiB mapped, tables below 32 KiB. */
export const DEFAULT_LONG_MODE_LAYOUT: LongModeLayout = Object.freeze({
  gdt: 0x1000n,
  tss: 0x1800n,
  pml4: 0x2000n,
  pdpt: 0x3000n,
  pd: 0x4000n,
  mappedBytes: 4n << 30n,
});

/** What the tables are written through (such as `GuestMemory`). */
export interface GuestMemoryWriter {
  /**
   * Writes bytes at a guest-physical address.
   *
   * @param gpa The address.
   * @param data The bytes.
   */
  write(gpa: GuestAddress, data: Uint8Array): void;
}

/** Selector of the 64-bit code segment. */
export const CODE_SELECTOR = 0x08;
/** Selector of the data segment. */
export const DATA_SELECTOR = 0x10;
/** Selector of the TSS. */
export const TSS_SELECTOR = 0x18;

const X86_CR0_PE = 1n << 0n;
const X86_CR0_MP = 1n << 1n;
const X86_CR0_ET = 1n << 4n;
const X86_CR0_NE = 1n << 5n;
const X86_CR0_WP = 1n << 16n;
const X86_CR0_PG = 1n << 31n;
const X86_CR4_PAE = 1n << 5n;
const X86_CR4_OSFXSR = 1n << 9n;
const X86_CR4_OSXMMEXCPT = 1n << 10n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

const PTE_PRESENT = 1n << 0n;
const PTE_WRITE = 1n << 1n;
const PTE_ACCESSED = 1n << 5n;
const PTE_DIRTY = 1n << 6n;
const PTE_LARGE = 1n << 7n;

const GIB = 1n << 30n;
const MIB2 = 2n << 20n;

function checkLayout(l: LongModeLayout): void {
  const pages = [l.gdt, l.pml4, l.pdpt, l.pd];
  if (pages.some((a) => a & 0xfffn) || l.mappedBytes % GIB !== 0n) {
    throw new RangeError("Cannot use a long-mode layout with unaligned tables or a partial GiB");
  }
  if (l.mappedBytes <= 0n || l.mappedBytes > 512n * GIB) {
    throw new RangeError(`Cannot identity-map ${l.mappedBytes} bytes with one PDPT`);
  }
}

/**
 * Writes the identity-mapping page tables and the GDT into guest RAM.
 *
 * @param memory The guest RAM.
 * @param layout Where the tables go.
 * @throws {RangeError} For a bad layout, or tables outside the RAM.
 *
 * @example
 * ```ts ignore
 * writeLongModeTables(memory, DEFAULT_LONG_MODE_LAYOUT);
 * ```
 */
export function writeLongModeTables(
  memory: GuestMemoryWriter,
  layout: LongModeLayout = DEFAULT_LONG_MODE_LAYOUT,
): void {
  checkLayout(layout);
  const gibs = Number(layout.mappedBytes / GIB);
  const table = (entries: bigint[]) => {
    const b = new Uint8Array(4096);
    const v = new DataView(b.buffer);
    entries.forEach((e, i) => v.setBigUint64(i * 8, e, true));
    return b;
  };
  const dir = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED;
  memory.write(guestAddress(layout.pml4), table([layout.pdpt | dir]));
  memory.write(
    guestAddress(layout.pdpt),
    table(Array.from({ length: gibs }, (_, i) => (layout.pd + BigInt(i) * 4096n) | dir)),
  );
  for (let i = 0; i < gibs; i++) {
    const base = BigInt(i) * GIB;
    const leaf = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY | PTE_LARGE;
    memory.write(
      guestAddress(layout.pd + BigInt(i) * 4096n),
      table(Array.from({ length: 512 }, (_, j) => (base + BigInt(j) * MIB2) | leaf)),
    );
  }
  const gdt = new Uint8Array(40);
  const v = new DataView(gdt.buffer);
  v.setBigUint64(CODE_SELECTOR, 0x00af9b000000ffffn, true); // 64-bit code, accessed
  v.setBigUint64(DATA_SELECTOR, 0x00cf93000000ffffn, true); // flat data, accessed
  const t = layout.tss;
  const tssLow = 0x67n | ((t & 0xffffffn) << 16n) | (0x8bn << 40n) | (((t >> 24n) & 0xffn) << 56n);
  v.setBigUint64(TSS_SELECTOR, tssLow, true); // busy 64-bit TSS
  v.setBigUint64(TSS_SELECTOR + 8, t >> 32n, true);
  memory.write(guestAddress(layout.gdt), gdt);
}

function segment(init: Partial<KvmSegment>): KvmSegment {
  return {
    base: 0n,
    limit: 0,
    selector: 0,
    type: 0,
    present: 0,
    dpl: 0,
    db: 0,
    s: 0,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
    ...init,
  };
}

/**
 * The special registers of 64-bit mode over the tables of `layout`: paging
 * on (CR3 = the PML4), PAE, EFER.LME|LMA, flat code, data and TSS segments, an
 * empty IDT (any exception becomes a triple fault).
 *
 * @param sregs The vCPU's current special registers (APIC base and the
 *   interrupt bitmap are kept).
 * @param layout Where the tables are.
 * @returns The new special registers.
 *
 * @example
 * ```ts ignore
 * vcpu.setSregs(longModeSregs(vcpu.getSregs()));
 * ```
 */
export function longModeSregs(
  sregs: KvmSregs,
  layout: LongModeLayout = DEFAULT_LONG_MODE_LAYOUT,
): KvmSregs {
  checkLayout(layout);
  const code = segment({
    limit: 0xffffffff,
    selector: CODE_SELECTOR,
    type: 0xb,
    present: 1,
    s: 1,
    l: 1,
    g: 1,
  });
  const data = segment({
    limit: 0xffffffff,
    selector: DATA_SELECTOR,
    type: 0x3,
    present: 1,
    s: 1,
    db: 1,
    g: 1,
  });
  return {
    ...sregs,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: segment({ base: layout.tss, limit: 0x67, selector: TSS_SELECTOR, type: 0xb, present: 1 }),
    ldt: segment({ unusable: 1 }),
    gdt: { base: layout.gdt, limit: 39 },
    idt: { base: 0n, limit: 0 },
    cr0: X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG,
    cr3: layout.pml4,
    cr4: X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT,
    efer: EFER_LME | EFER_LMA,
  };
}

/** The register access {@linkcode enterLongMode} needs (a `Vcpu`). */
export interface LongModeVcpu {
  /** `KVM_GET_SREGS`. */
  getSregs(): KvmSregs;
  /** `KVM_SET_SREGS`. */
  setSregs(sregs: KvmSregs): void;
  /** `KVM_GET_REGS`. */
  getRegs(): KvmRegs;
  /** `KVM_SET_REGS`. */
  setRegs(regs: KvmRegs): void;
}

/**
 * Writes the tables and sets a vCPU up to start at `entry` in 64-bit mode.
 *
 * @param vcpu The vCPU (not running).
 * @param memory The guest RAM.
 * @param options `entry` (RIP), `stack` (RSP), `layout`.
 * @throws {RangeError} For a bad layout.
 * @throws {IoctlError} When setting registers fails.
 *
 * @example
 * ```ts ignore
 * enterLongMode(vcpu, memory, { entry: 0x10000n, stack: 0xf000n });
 * ```
 */
export function enterLongMode(
  vcpu: LongModeVcpu,
  memory: GuestMemoryWriter,
  options: { entry: bigint; stack: bigint; layout?: LongModeLayout },
): void {
  const layout = options.layout ?? DEFAULT_LONG_MODE_LAYOUT;
  writeLongModeTables(memory, layout);
  vcpu.setSregs(longModeSregs(vcpu.getSregs(), layout));
  const regs = vcpu.getRegs();
  for (const k of Object.keys(regs) as (keyof typeof regs)[]) regs[k] = 0n;
  regs.rip = options.entry;
  regs.rsp = options.stack;
  regs.rflags = 0x2n;
  vcpu.setRegs(regs);
}
