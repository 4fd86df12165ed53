/**
 * The test guest's guest-physical layout, ports and mailbox, mirroring
 * `guest.h` (its test compares the two).
 *
 * @module
 */

/** The guest's guest-physical layout (see `guest.h`). */
export interface GuestLayout {
  /** The GDT page. */
  readonly gdt: bigint;
  /** The TSS, in the GDT's page. */
  readonly tss: bigint;
  /** The PML4. */
  readonly pml4: bigint;
  /** The PDPT. */
  readonly pdpt: bigint;
  /** The first of four PDs (4 GiB identity-mapped). */
  readonly pd: bigint;
  /** The mailbox page. */
  readonly mailbox: bigint;
  /** The stack page. */
  readonly stack: bigint;
  /** The initial RSP. */
  readonly stackTop: bigint;
  /** Where the image is loaded and entered. */
  readonly code: bigint;
  /** The largest image, in bytes. */
  readonly codeMax: number;
  /** The page list of WRITE_LIST (u32 page numbers). */
  readonly list: bigint;
  /** Entries the page list holds. */
  readonly listMax: number;
  /** The first data page. */
  readonly data: bigint;
  /** An address without memory: the guest's MMIO accesses go there. */
  readonly mmio: bigint;
}

/** Guest-physical addresses. */
export const GUEST_LAYOUT: GuestLayout = Object.freeze({
  /** The GDT page. */
  gdt: 0x1000n,
  /** The TSS, in the GDT's page. */
  tss: 0x1800n,
  /** The PML4. */
  pml4: 0x2000n,
  /** The PDPT. */
  pdpt: 0x3000n,
  /** The first of four PDs (4 GiB identity-mapped). */
  pd: 0x4000n,
  /** The mailbox page. */
  mailbox: 0x8000n,
  /** The stack page. */
  stack: 0xe000n,
  /** The initial RSP. */
  stackTop: 0xf000n,
  /** Where the image is loaded and entered. */
  code: 0x10000n,
  /** The largest image. */
  codeMax: 0x10000,
  /** The page list of WRITE_LIST (u32 page numbers). */
  list: 0x20000n,
  /** Entries the page list holds. */
  listMax: 0x8000,
  /** The first data page. */
  data: 0x100000n,
  /** An address without memory: the guest's MMIO accesses go there. */
  mmio: 0xd0000000n,
});

/** Ports. */
export const GUEST_PORTS: Readonly<{ com1: number; ack: number; done: number; test: number }> =
  Object.freeze({
    /** COM1, output only. */
    com1: 0x3f8,
    /** The guest writes the sequence number of each command it finished (u32). */
    ack: 0x500,
    /** The guest writes its exit status here when told to exit (u32). */
    done: 0x501,
    /** The PIO command writes and reads this port (u32). */
    test: 0x502,
  });

/** A mailbox field. */
export type MailboxField =
  | "magic"
  | "version"
  | "command"
  | "commandSeq"
  | "pattern"
  | "seed"
  | "dataPages"
  | "pagesPerSecond"
  | "tscKhz"
  | "heartbeatMs"
  | "maxWrites"
  | "listCount"
  | "arg"
  | "ackSeq"
  | "state"
  | "counter"
  | "checksum"
  | "pageSum"
  | "heartbeats"
  | "verifySum"
  | "result"
  | "boots";

/** Mailbox byte offsets. The VMM writes 0x00-0xff, the guest 0x100-0x1ff. */
export const MB: Readonly<Record<MailboxField, number>> = Object.freeze({
  magic: 0x00,
  version: 0x04,
  command: 0x08,
  commandSeq: 0x0c,
  pattern: 0x10,
  seed: 0x14,
  dataPages: 0x18,
  pagesPerSecond: 0x20,
  tscKhz: 0x28,
  heartbeatMs: 0x30,
  maxWrites: 0x38,
  listCount: 0x40,
  arg: 0x48,
  ackSeq: 0x100,
  state: 0x104,
  counter: 0x108,
  checksum: 0x110,
  pageSum: 0x118,
  heartbeats: 0x120,
  verifySum: 0x128,
  result: 0x130,
  boots: 0x138,
});

/** `GUEST_MAGIC`, "KVMG". */
export const GUEST_MAGIC = 0x474d564b;
/** `GUEST_VERSION`. */
export const GUEST_VERSION = 1;

/** A guest command's name. */
export type GuestCommand =
  | "idle"
  | "run"
  | "writeList"
  | "verify"
  | "pio"
  | "mmio"
  | "halt"
  | "tripleFault"
  | "execMmio"
  | "exit";

/** Commands (`GUEST_CMD_*`). */
export const GUEST_COMMANDS: Readonly<Record<GuestCommand, number>> = Object.freeze({
  idle: 0,
  run: 1,
  writeList: 2,
  verify: 3,
  pio: 4,
  mmio: 5,
  halt: 6,
  tripleFault: 7,
  execMmio: 8,
  exit: 9,
});

/** A write pattern's name: as the Worker workloads have them. */
export type GuestPattern = "sequential" | "random" | "hotspot";

/** Write patterns (`GUEST_PATTERN_*`). */
export const GUEST_PATTERNS: Readonly<Record<GuestPattern, number>> = Object.freeze({
  sequential: 0,
  random: 1,
  hotspot: 2,
});

/** `GUEST_FNV_OFFSET`: the checksum before the first write. */
export const GUEST_FNV_OFFSET = 0xcbf29ce484222325n;
/** `GUEST_FNV_PRIME`. */
export const GUEST_FNV_PRIME = 0x100000001b3n;
