/**
 * The test guest on the VMM side: loads the image and sets its vCPU up in
 * 64-bit mode, emulates its COM1 and its ack and done ports, issues commands
 * through the mailbox and reads back what the guest keeps there.
 *
 * @module
 */

import { type GuestAddress, guestAddress } from "../../sys/address.ts";
import type { ExitAction } from "../io_bus.ts";
import { enterLongMode, type GuestMemoryWriter } from "../long_mode.ts";
import { COM1_PORT, Serial8250, SERIAL_PORTS } from "../serial.ts";
import type { Vcpu, VcpuStop } from "../vcpu.ts";
import type { Vm } from "../vm.ts";
import type { GuestImage } from "./build.ts";
import {
  GUEST_COMMANDS,
  GUEST_LAYOUT,
  GUEST_MAGIC,
  GUEST_PATTERNS,
  GUEST_PORTS,
  type GuestCommand,
  type GuestPattern,
  MB,
} from "./layout.ts";
import { checksumAfter } from "./workload.ts";

/** The RAM the guest program needs: writes and zero-copy views (such as `GuestMemory`). */
export interface GuestProgramMemory extends GuestMemoryWriter {
  /**
   * A writable view of guest RAM.
   *
   * @param gpa The address.
   * @param length Bytes.
   * @returns The view.
   */
  view(gpa: GuestAddress, length: number): Uint8Array;
}

/** What the guest keeps in its mailbox. */
export interface GuestMailbox {
  /** Whether the guest booted (`GUEST_MAGIC` present). */
  booted: boolean;
  /** Writes done since boot. */
  counter: bigint;
  /** Running hash of every value written. */
  checksum: bigint;
  /** Sum of word 0 of every data page, as the guest kept it. */
  pageSum: bigint;
  /** Heartbeat lines printed. */
  heartbeats: bigint;
  /** The sum the last VERIFY recomputed. */
  verifySum: bigint;
  /** What the last PIO or MMIO command read. */
  result: bigint;
  /** Times the entry point ran. */
  boots: bigint;
  /** The last command finished. */
  ackSeq: number;
}

/** Parameters of a command. */
export interface GuestCommandParams {
  /** RUN: the pattern (default the last one set, initially sequential). */
  pattern?: GuestPattern;
  /** RUN: writes before it stops and acknowledges (0: until the next command). */
  maxWrites?: number;
  /** RUN: pages per second (0: as fast as it can). */
  pagesPerSecond?: number;
  /** RUN: a heartbeat line every this many ms (0: none). */
  heartbeatMs?: number;
  /** WRITE_LIST: the data pages to write, in order. */
  pages?: readonly number[];
  /** PIO, MMIO, EXIT: the argument. */
  arg?: number;
}

/** Options of {@linkcode GuestProgram.install}. */
export interface GuestInstallOptions {
  /** The image from `buildGuestImage()`. */
  image: GuestImage;
  /** The seed of the write values (u32, default 1). */
  seed?: number;
  /** Data pages the workload writes (default: all RAM from `GUEST_LAYOUT.data`). */
  dataPages?: number;
  /** Each serial line, as it completes. */
  onLine?: (line: string) => void;
  /**
   * The data pages already hold data (the VMM filled them): start the
   * guest's page sum from theirs, so that VERIFY matches. Reads every data
   * page. Default `false`: the data pages are zero.
   */
  filledData?: boolean;
}

/** Options of {@linkcode GuestProgram.attach}. */
export interface GuestAttachOptions {
  /** Each serial line, as it completes. */
  onLine?: (line: string) => void;
}

/**
 * A running (or restorable) test guest on one VM.
 *
 * @example Boot the guest and have it write three pages
 * ```ts ignore
 * const guest = GuestProgram.install(vm, vcpu, memory, { image: await buildGuestImage() });
 * await vcpu.start();
 * await guest.command("writeList", { pages: [0, 5, 9] });
 * console.log(guest.mailbox().counter); // 3n
 * ```
 */
export class GuestProgram implements Disposable {
  /** The serial lines so far. */
  readonly lines: string[] = [];
  #vcpu: Vcpu;
  #mb: DataView;
  #mb32: Int32Array;
  #seed: number;
  #dataPages: number;
  #memory: GuestProgramMemory;
  #acks = new Map<number, () => void>();
  #leases: Disposable[] = [];
  #done: Promise<number>;
  #resolveDone!: (status: number) => void;
  #doneStatus?: number;

  private constructor(
    vm: Vm,
    vcpu: Vcpu,
    memory: GuestProgramMemory,
    onLine?: (l: string) => void,
  ) {
    this.#vcpu = vcpu;
    this.#memory = memory;
    const page = memory.view(guestAddress(GUEST_LAYOUT.mailbox), 4096);
    this.#mb = new DataView(page.buffer, page.byteOffset, 4096);
    this.#mb32 = new Int32Array(page.buffer, page.byteOffset, 1024);
    this.#seed = this.#mb.getUint32(MB.seed, true);
    this.#dataPages = Number(this.#mb.getBigUint64(MB.dataPages, true));
    this.#done = new Promise((resolve) => this.#resolveDone = resolve);
    const uart = new Serial8250({
      onLine: (line) => {
        this.lines.push(line);
        onLine?.(line);
      },
    });
    this.#leases.push(vm.pio.register({ base: COM1_PORT, length: SERIAL_PORTS }, uart));
    this.#leases.push(vm.pio.register({ base: GUEST_PORTS.ack, length: 1 }, {
      write: (_port, _size, value) => this.#ack(value),
    }));
    this.#leases.push(vm.pio.register({ base: GUEST_PORTS.done, length: 1 }, {
      write: (_port, _size, value): ExitAction => {
        this.#doneStatus = value;
        this.#resolveDone(value);
        return "stop";
      },
    }));
  }

  /**
   * Loads the image into RAM, writes the page tables, GDT and mailbox
   * parameters, sets the vCPU up to enter it in 64-bit mode, and registers
   * the guest's devices on the VM. The vCPU must not have run.
   *
   * @param vm The VM (its PIO bus gets COM1, ack and done).
   * @param vcpu The vCPU that runs the guest.
   * @param memory The guest RAM, mapped into the VM, at least 2 MiB from 0.
   * @param options Image, seed, data pages, serial callback.
   * @returns The guest.
   * @throws {RangeError} For RAM too small or data pages beyond it.
   */
  static install(
    vm: Vm,
    vcpu: Vcpu,
    memory: GuestProgramMemory & { readonly size: bigint },
    options: GuestInstallOptions,
  ): GuestProgram {
    const ramPages = Number((memory.size - GUEST_LAYOUT.data) / 4096n);
    const dataPages = options.dataPages ?? ramPages;
    if (memory.size <= GUEST_LAYOUT.data || dataPages < 1 || dataPages > ramPages) {
      throw new RangeError(
        `Cannot give the test guest ${dataPages} data pages: RAM holds ${Math.max(0, ramPages)}`,
      );
    }
    memory.write(guestAddress(GUEST_LAYOUT.code), options.image.bytes);
    // The whole mailbox page: the guest's half (counter, checksum, boots)
    // must start at zero whatever the RAM held.
    const mb = new DataView(new ArrayBuffer(4096));
    mb.setUint32(MB.seed, (options.seed ?? 1) >>> 0, true);
    mb.setBigUint64(MB.dataPages, BigInt(dataPages), true);
    mb.setBigUint64(MB.tscKhz, BigInt(vcpu.tscKhz()), true);
    memory.write(guestAddress(GUEST_LAYOUT.mailbox), new Uint8Array(mb.buffer));
    enterLongMode(vcpu, memory, { entry: GUEST_LAYOUT.code, stack: GUEST_LAYOUT.stackTop });
    const guest = new GuestProgram(vm, vcpu, memory, options.onLine);
    if (options.filledData) {
      const sum = new Uint8Array(8);
      new DataView(sum.buffer).setBigUint64(0, guest.dataPageSum(), true);
      memory.write(guestAddress(GUEST_LAYOUT.mailbox + BigInt(MB.pageSum)), sum);
    }
    return guest;
  }

  /**
   * Registers the guest's devices on a VM whose RAM and vCPU state already
   * hold a guest (restored from another VM). Nothing is written to RAM.
   *
   * @param vm The VM.
   * @param vcpu The vCPU that runs the guest.
   * @param memory Its RAM.
   * @param options The serial callback.
   * @returns The guest.
   * @throws {TypeError} When the mailbox shows no booted guest.
   */
  static attach(
    vm: Vm,
    vcpu: Vcpu,
    memory: GuestProgramMemory,
    options: GuestAttachOptions = {},
  ): GuestProgram {
    const guest = new GuestProgram(vm, vcpu, memory, options.onLine);
    if (!guest.mailbox().booted) {
      guest.close();
      throw new TypeError("Cannot attach to the test guest: its mailbox shows no booted guest");
    }
    return guest;
  }

  /**
   * The guest's seed.
   *
   * @returns The u32 seed.
   */
  get seed(): number {
    return this.#seed;
  }

  /**
   * Data pages the workload writes, from `GUEST_LAYOUT.data`.
   *
   * @returns The count.
   */
  get dataPages(): number {
    return this.#dataPages;
  }

  /**
   * Resolves with the guest's exit status once it writes the done port (the
   * vCPU then stops).
   *
   * @returns The status.
   */
  get done(): Promise<number> {
    return this.#done;
  }

  #ack(seq: number): void {
    // An acknowledgement also ends every earlier command (a RUN that a later
    // command cut short is not acknowledged itself).
    for (const [s, resolve] of [...this.#acks]) {
      if (s <= seq) {
        this.#acks.delete(s);
        resolve();
      }
    }
  }

  /**
   * Issues a command; resolves once the guest acknowledges it (or a later
   * command, which ends an unbounded RUN) on the ack port, or with the vCPU's
   * stop if it stops first (a command that ends the guest: exit, triple fault).
   *
   * @param command The command.
   * @param params Its parameters.
   * @returns `undefined` once acknowledged, or how the vCPU stopped.
   * @throws {RangeError} For a page list too long or outside the data pages.
   */
  command(command: GuestCommand, params: GuestCommandParams = {}): Promise<VcpuStop | undefined> {
    const mb = this.#mb;
    if (params.pages !== undefined) {
      if (params.pages.length > GUEST_LAYOUT.listMax) {
        throw new RangeError(`Cannot give the guest ${params.pages.length} pages to write`);
      }
      const bad = params.pages.find((p) => !(p >= 0 && p < this.#dataPages));
      if (bad !== undefined) {
        throw new RangeError(`Cannot have the guest write page ${bad} of ${this.#dataPages}`);
      }
      const list = Uint32Array.from(params.pages);
      this.#write(GUEST_LAYOUT.list, new Uint8Array(list.buffer));
      this.#writeU64(MB.listCount, BigInt(params.pages.length));
    }
    if (params.pattern !== undefined) this.#writeU32(MB.pattern, GUEST_PATTERNS[params.pattern]);
    if (params.maxWrites !== undefined) this.#writeU64(MB.maxWrites, BigInt(params.maxWrites));
    if (params.pagesPerSecond !== undefined) {
      this.#writeU64(MB.pagesPerSecond, BigInt(params.pagesPerSecond));
    }
    if (params.heartbeatMs !== undefined) {
      this.#writeU64(MB.heartbeatMs, BigInt(params.heartbeatMs));
    }
    if (params.arg !== undefined) this.#writeU64(MB.arg, BigInt(params.arg >>> 0));
    this.#writeU32(MB.command, GUEST_COMMANDS[command]);
    const seq = (mb.getUint32(MB.commandSeq, true) + 1) >>> 0 || 1;
    const acked = new Promise<undefined>((resolve) =>
      this.#acks.set(seq, () => resolve(undefined))
    );
    // The sequence number goes last, ordered after the parameters.
    Atomics.store(this.#mb32, MB.commandSeq / 4, seq);
    return Promise.race([acked, this.#vcpu.stopped]);
  }

  // The VMM's writes into guest RAM go through the memory's API, so that
  // whatever logs them (the software dirty log of a migration) sees them:
  // KVM's dirty log sees only what the guest writes.
  #write(gpa: bigint, bytes: Uint8Array): void {
    this.#memory.write(guestAddress(gpa), bytes);
  }

  #writeU32(offset: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value, true);
    this.#write(GUEST_LAYOUT.mailbox + BigInt(offset), b);
  }

  #writeU64(offset: number, value: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.#write(GUEST_LAYOUT.mailbox + BigInt(offset), b);
  }

  /**
   * Reads the mailbox (the guest may be updating it while it runs).
   *
   * @returns What the guest keeps there.
   */
  mailbox(): GuestMailbox {
    const mb = this.#mb;
    const u64 = (off: number) => mb.getBigUint64(off, true);
    return {
      booted: mb.getUint32(MB.magic, true) === GUEST_MAGIC,
      counter: u64(MB.counter),
      checksum: u64(MB.checksum),
      pageSum: u64(MB.pageSum),
      heartbeats: u64(MB.heartbeats),
      verifySum: u64(MB.verifySum),
      result: u64(MB.result),
      boots: u64(MB.boots),
      ackSeq: mb.getUint32(MB.ackSeq, true),
    };
  }

  /**
   * The checksum the guest must hold after `counter` writes.
   *
   * @param counter Writes (default the mailbox's counter).
   * @returns The expected checksum.
   */
  expectedChecksum(counter: bigint = this.mailbox().counter): bigint {
    return checksumAfter(this.#seed, counter);
  }

  /**
   * Sums word 0 of every data page, read from RAM (what the guest's page sum
   * must be while it is paused).
   *
   * @returns The sum, mod 2^64.
   */
  dataPageSum(): bigint {
    let sum = 0n;
    const chunk = 256;
    for (let p = 0; p < this.#dataPages; p += chunk) {
      const n = Math.min(chunk, this.#dataPages - p);
      const view = this.#memory.view(guestAddress(GUEST_LAYOUT.data + BigInt(p) * 4096n), n * 4096);
      const v = new DataView(view.buffer, view.byteOffset, view.byteLength);
      for (let i = 0; i < n; i++) sum += v.getBigUint64(i * 4096, true);
    }
    return BigInt.asUintN(64, sum);
  }

  /**
   * The guest-physical page numbers the guest writes on its own: the mailbox
   * page and the stack page.
   *
   * @returns The two page numbers (GPA / 4096).
   */
  static ownPages(): readonly number[] {
    return [Number(GUEST_LAYOUT.mailbox / 4096n), Number(GUEST_LAYOUT.stack / 4096n)];
  }

  /**
   * The guest-physical page numbers of the guest's page tables (PML4, PDPT,
   * four PDs). The guest never writes them, but with nested paging the CPU
   * treats its page walks as writes (AMD NPT; Intel EPT with A/D bits), so
   * KVM may report them after any harvest that flushed the guest's TLB.
   *
   * @returns The page numbers.
   */
  static pageTablePages(): readonly number[] {
    const first = Number(GUEST_LAYOUT.pml4 / 4096n);
    return [first, first + 1, first + 2, first + 3, first + 4, first + 5];
  }

  /**
   * The exit status, once the guest wrote the done port.
   *
   * @returns The status, if any.
   */
  get exitStatus(): number | undefined {
    return this.#doneStatus;
  }

  /** Unregisters the guest's devices from the VM. Idempotent. */
  close(): void {
    for (const l of this.#leases.splice(0)) l[Symbol.dispose]();
  }

  /** Closes through {@linkcode GuestProgram.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
