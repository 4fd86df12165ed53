/**
 * A vCPU: its fd, its mapped `kvm_run` page, the thread that runs it, exit
 * dispatch to the VM's buses, pause and resume, registers and saved state.
 *
 * @module
 */

import { hostView } from "../sys/host_memory.ts";
import { IoctlError } from "../sys/errors.ts";
import { MAP_SHARED, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import {
  CMD_PAUSE,
  CMD_RUN,
  CMD_STOP,
  CTRL_CMD,
  CTRL_DONE_SEQ,
  CTRL_EINTRS,
  CTRL_EXIT_SEQ,
  CTRL_PAUSE_GEN,
  CTRL_RUNS,
  CTRL_STATE,
  CTRL_WORDS,
  STATE_FAILED,
  STATE_STOPPED,
  type VcpuThreadMessage,
} from "./_control.ts";
import { InlineRunner, type VcpuRunner, WorkerRunner } from "./_vcpu_runner.ts";
import { DEFAULT_KICK_SIGNAL } from "./_signals.ts";
import { VcpuError } from "./errors.ts";
import type { ExitAction, MmioBus, PioBus } from "./io_bus.ts";
import type { KvmSyscalls } from "./syscalls.ts";
import { type CpuidEntry, encodeCpuid2 } from "./uapi/cpu.ts";
import {
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_TSC_KHZ,
  KVM_SET_CPUID2,
  KVM_SET_REGS,
  KVM_SET_SIGNAL_MASK,
  KVM_SET_SREGS,
} from "./uapi/ioctls.ts";
import {
  decodeRegs,
  decodeSregs,
  encodeRegs,
  encodeSregs,
  KVM_REGS_SIZE,
  KVM_SREGS_SIZE,
  type KvmRegs,
  type KvmSregs,
} from "./uapi/regs.ts";
import { decodeExit, RUN_IMMEDIATE_EXIT, setMmioData, type VcpuExit } from "./uapi/run.ts";
import { encodeSignalMask } from "./uapi/state.ts";
import {
  restoreVcpuState,
  saveVcpuState,
  type VcpuState,
  type VcpuStateContext,
} from "./vcpu_state.ts";

/** Where a vCPU is in its life. */
export type VcpuRunState = "created" | "running" | "paused" | "stopped";

/**
 * Called on the VMM's thread for exits that are not port I/O or MMIO (HLT,
 * SHUTDOWN, FAIL_ENTRY, INTERNAL_ERROR, SYSTEM_EVENT, others).
 * Returning nothing keeps the default: HLT pauses; the others stop the vCPU
 * with a {@linkcode VcpuError}.
 */
export type ExitListener = (exit: VcpuExit, vcpu: Vcpu) => ExitAction | void;

/** How a vCPU's thread ended. */
export interface VcpuStop {
  /** Why, when it was not asked to stop: the exit or thread failure. */
  readonly error?: VcpuError;
}

/** Options of `Vm.createVcpu()`. */
export interface VcpuOptions {
  /** The vCPU id (default: the next one). */
  id?: number;
  /** Exits other than I/O go here first. */
  onExit?: ExitListener;
  /**
   * `"worker"`: `KVM_RUN` on a Worker thread of its own (libc; the default
   * with the default syscalls). `"inline"`: on this thread between event-loop
   * turns, through the VM's syscall boundary (the default with a custom one,
   * such as the fake KVM).
   */
  thread?: "worker" | "inline";
  /** The signal that kicks the vCPU thread out of `KVM_RUN` (default 34, SIGRTMIN). */
  kickSignal?: number;
}

/** What a vCPU needs from its VM. */
export interface VcpuHost {
  /** The syscall boundary. */
  readonly syscalls: KvmSyscalls;
  /** Bytes to map from the vCPU fd. */
  readonly mmapSize: number;
  /** Port I/O handlers. */
  readonly pio: PioBus;
  /** MMIO handlers. */
  readonly mmio: MmioBus;
  /** Whether vCPUs run inline by default. */
  readonly inline: boolean;
  /** The state context (MSR list, XSAVE size, LAPIC). */
  stateContext(): VcpuStateContext;
  /** Handles `KVM_EXIT_DIRTY_RING_FULL`; false when the VM has no ring. */
  ringFull(vcpu: Vcpu): boolean;
}

const STOP_TIMEOUT_MS = 10_000;

/**
 * A vCPU of a {@linkcode Vm}. It does not run until {@linkcode Vcpu.start};
 * then `KVM_RUN` loops on its own thread and exits are handled on this one:
 * port I/O and MMIO by the VM's buses, others by {@linkcode Vcpu.onExit}.
 * {@linkcode Vcpu.pause} stops it within milliseconds even when the guest
 * never exits (`immediate_exit` plus a signal that interrupts `KVM_RUN`).
 *
 * @example Run until the guest halts
 * ```ts ignore
 * using vcpu = vm.createVcpu({ onExit: (exit) => exit.kind === "hlt" ? "stop" : undefined });
 * await vcpu.start();
 * await vcpu.stopped;
 * ```
 */
export class Vcpu implements Disposable {
  /** The vCPU id. */
  readonly id: number;
  /** Exits other than I/O go here first. */
  onExit?: ExitListener;
  #host: VcpuHost;
  #sys: KvmSyscalls;
  #fd: number;
  #runAddr: bigint;
  #runSize: number;
  #runBytes: Uint8Array;
  #run: DataView;
  #ring?: { addr: bigint; bytes: number };
  #control = new SharedArrayBuffer(CTRL_WORDS * 4);
  #ctrl = new Int32Array(this.#control);
  #thread: "worker" | "inline";
  #kickSignal: number;
  #runner?: VcpuRunner;
  #state: VcpuRunState = "created";
  #started?: { resolve: () => void; reject: (e: Error) => void };
  #pauseWaiters: { gen: number; resolve: () => void }[] = [];
  #stopped: Promise<VcpuStop>;
  #resolveStopped!: (stop: VcpuStop) => void;
  #error?: VcpuError;
  #exitCounts: Record<string, number> = {};
  #lastExit?: VcpuExit;

  private constructor(host: VcpuHost, id: number, fd: number, options: VcpuOptions) {
    this.#host = host;
    this.#sys = host.syscalls;
    this.id = id;
    this.#fd = fd;
    this.onExit = options.onExit;
    this.#thread = options.thread ?? (host.inline ? "inline" : "worker");
    this.#kickSignal = options.kickSignal ?? DEFAULT_KICK_SIGNAL;
    this.#runSize = host.mmapSize;
    this.#runAddr = 0n;
    this.#runBytes = new Uint8Array(0);
    this.#run = new DataView(new ArrayBuffer(0));
    this.#stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  /**
   * Sets a vCPU up on a fresh fd: maps `kvm_run` (and the dirty ring), gives
   * it CPUID and the signal mask. On failure the fd is closed and nothing
   * stays mapped. Called by `Vm.createVcpu()`.
   *
   * @param host The VM.
   * @param init The fd, id, CPUID, the dirty ring size, options.
   * @returns The vCPU.
   * @throws {IoctlError} When an ioctl fails.
   * @throws {SyscallError} When a mapping fails.
   */
  static setUp(
    host: VcpuHost,
    init: {
      fd: number;
      id: number;
      cpuid: readonly CpuidEntry[];
      ringBytes: number;
      ringOffset: bigint;
      options: VcpuOptions;
    },
  ): Vcpu {
    const vcpu = new Vcpu(host, init.id, init.fd, init.options);
    try {
      vcpu.#map(init.ringBytes, init.ringOffset);
      const sys = host.syscalls;
      if (init.cpuid.length > 0) sys.ioctl(init.fd, KVM_SET_CPUID2, encodeCpuid2(init.cpuid));
      // Inside KVM_RUN nothing is blocked, so the kick (blocked elsewhere on
      // the vCPU thread) interrupts it.
      sys.ioctl(init.fd, KVM_SET_SIGNAL_MASK, encodeSignalMask([]));
    } catch (e) {
      vcpu.#release();
      throw e;
    }
    return vcpu;
  }

  #map(ringBytes: number, ringOffset: bigint): void {
    const sys = this.#sys;
    this.#runAddr = sys.mmap(
      BigInt(this.#runSize),
      PROT_READ | PROT_WRITE,
      MAP_SHARED,
      this.#fd,
      0n,
    );
    // SAFETY: the view covers the kvm_run mapping, unmapped only in #release().
    this.#runBytes = hostView(this.#runAddr, this.#runSize);
    this.#run = new DataView(this.#runBytes.buffer);
    if (ringBytes > 0) {
      const addr = sys.mmap(
        BigInt(ringBytes),
        PROT_READ | PROT_WRITE,
        MAP_SHARED,
        this.#fd,
        ringOffset,
      );
      this.#ring = { addr, bytes: ringBytes };
    }
  }

  /**
   * The raw fd; -1 once closed. Do not close it.
   *
   * @returns The fd.
   */
  get unsafeFd(): number {
    return this.#fd;
  }

  /**
   * Where `KVM_RUN` is called: `"worker"` (a thread of its own) or `"inline"`.
   *
   * @returns The thread kind.
   */
  get thread(): "worker" | "inline" {
    return this.#thread;
  }

  /**
   * Where the vCPU is.
   *
   * @returns The state.
   */
  get state(): VcpuRunState {
    return this.#state;
  }

  /**
   * Resolves when the vCPU's thread ends (asked to stop, or on an exit that
   * stops it); `error` says why when it was not asked.
   *
   * @returns The promise.
   */
  get stopped(): Promise<VcpuStop> {
    return this.#stopped;
  }

  /**
   * Exits handled so far, by kind (`io`, `mmio`, `hlt`, ...).
   *
   * @returns The counts.
   */
  get exitCounts(): Readonly<Record<string, number>> {
    return { ...this.#exitCounts };
  }

  /**
   * The last exit handled.
   *
   * @returns The exit, if any.
   */
  get lastExit(): VcpuExit | undefined {
    return this.#lastExit;
  }

  /**
   * `KVM_RUN` calls so far, and how many returned `EINTR` (kicks).
   *
   * @returns The counts.
   */
  get runCounts(): { runs: number; interrupted: number } {
    return {
      runs: Atomics.load(this.#ctrl, CTRL_RUNS),
      interrupted: Atomics.load(this.#ctrl, CTRL_EINTRS),
    };
  }

  /**
   * The host address of this vCPU's `kvm_run` mapping (0 once closed), for
   * code that calls `KVM_RUN` itself while the vCPU is paused.
   *
   * @returns The address.
   */
  get unsafeRunAddress(): bigint {
    return this.#runAddr;
  }

  /**
   * The host address and size of this vCPU's dirty ring mapping, when the VM
   * has a dirty ring. The mapping lives until the vCPU is closed.
   *
   * @returns The ring, if any.
   */
  get unsafeDirtyRing(): { readonly addr: bigint; readonly bytes: number } | undefined {
    return this.#ring;
  }

  #open(): number {
    if (this.#fd < 0) throw new TypeError(`Cannot use closed vCPU ${this.id}`);
    return this.#fd;
  }

  #notRunning(what: string): void {
    if (this.#state === "running") {
      throw new TypeError(`Cannot ${what} vCPU ${this.id} while it runs: pause it first`);
    }
  }

  /**
   * Reads the general registers (`KVM_GET_REGS`). The vCPU must not be running.
   *
   * @returns The registers.
   * @throws {TypeError} While it runs, or once closed.
   * @throws {IoctlError} When the ioctl fails.
   */
  getRegs(): KvmRegs {
    this.#notRunning("read the registers of");
    const buf = new Uint8Array(KVM_REGS_SIZE);
    this.#sys.ioctl(this.#open(), KVM_GET_REGS, buf);
    return decodeRegs(buf);
  }

  /**
   * Writes the general registers (`KVM_SET_REGS`). The vCPU must not be running.
   *
   * @param regs The registers.
   * @throws {TypeError} While it runs, or once closed.
   * @throws {IoctlError} When the ioctl fails.
   */
  setRegs(regs: KvmRegs): void {
    this.#notRunning("write the registers of");
    this.#sys.ioctl(this.#open(), KVM_SET_REGS, encodeRegs(regs));
  }

  /**
   * Reads the special registers (`KVM_GET_SREGS`). The vCPU must not be running.
   *
   * @returns The special registers.
   * @throws {TypeError} While it runs, or once closed.
   * @throws {IoctlError} When the ioctl fails.
   */
  getSregs(): KvmSregs {
    this.#notRunning("read the special registers of");
    const buf = new Uint8Array(KVM_SREGS_SIZE);
    this.#sys.ioctl(this.#open(), KVM_GET_SREGS, buf);
    return decodeSregs(buf);
  }

  /**
   * Writes the special registers (`KVM_SET_SREGS`). The vCPU must not be running.
   *
   * @param sregs The special registers.
   * @throws {TypeError} While it runs, or once closed.
   * @throws {IoctlError} When the ioctl fails.
   */
  setSregs(sregs: KvmSregs): void {
    this.#notRunning("write the special registers of");
    this.#sys.ioctl(this.#open(), KVM_SET_SREGS, encodeSregs(sregs));
  }

  /**
   * The vCPU's TSC frequency (`KVM_GET_TSC_KHZ`).
   *
   * @returns kHz.
   * @throws {IoctlError} When the ioctl fails.
   */
  tscKhz(): number {
    return this.#sys.ioctlValue(this.#open(), KVM_GET_TSC_KHZ, 0n);
  }

  /**
   * Saves the vCPU's complete state. The vCPU must be paused (or never run).
   *
   * @returns The state.
   * @throws {TypeError} While it runs, or once closed.
   * @throws {IoctlError} Naming the ioctl that failed.
   */
  saveState(): VcpuState {
    this.#notRunning("save the state of");
    return saveVcpuState(this.#sys, this.#open(), {
      id: this.id,
      context: this.#host.stateContext(),
    });
  }

  /**
   * Restores a saved state into this vCPU (of this VM or another one). The
   * vCPU must be paused or not yet started.
   *
   * @param state From {@linkcode Vcpu.saveState}.
   * @throws {TypeError} While it runs, or once closed.
   * @throws {KvmStateError} When a piece does not fit or an MSR is refused.
   * @throws {IoctlError} Naming the ioctl that failed.
   */
  restoreState(state: VcpuState): void {
    this.#notRunning("restore the state of");
    restoreVcpuState(this.#sys, this.#open(), state);
  }

  /**
   * Starts the vCPU's thread; resolves once it runs the guest.
   *
   * @returns A promise.
   * @throws {TypeError} When already started, or closed.
   */
  start(): Promise<void> {
    this.#open();
    if (this.#state !== "created") {
      return Promise.reject(new TypeError(`Cannot start vCPU ${this.id}: it is ${this.#state}`));
    }
    this.#state = "running";
    const host = {
      handleExit: () => this.#handleExit(),
      threadEvent: (m: VcpuThreadMessage) => this.#threadEvent(m),
    };
    this.#runner = this.#thread === "worker"
      ? new WorkerRunner({
        fd: this.#fd,
        runAddress: this.#runAddr,
        control: this.#control,
        kickSignal: this.#kickSignal,
      }, host)
      : new InlineRunner(
        { sys: this.#sys, fd: this.#fd, control: this.#control, run: this.#runBytes },
        host,
      );
    const started = new Promise<void>((resolve, reject) => this.#started = { resolve, reject });
    this.#runner.start();
    return started;
  }

  #setCommand(cmd: number): void {
    Atomics.store(this.#ctrl, CTRL_CMD, cmd);
    if (cmd !== CMD_RUN) Atomics.store(this.#runBytes, RUN_IMMEDIATE_EXIT, 1);
  }

  /**
   * Stops the guest: resolves once the vCPU's thread is parked outside
   * `KVM_RUN`, with any I/O in flight completed (so its state can be saved).
   * Resolves at once for a vCPU not running.
   *
   * @returns A promise.
   */
  pause(): Promise<void> {
    if (this.#state !== "running") return Promise.resolve();
    const gen = Atomics.add(this.#ctrl, CTRL_PAUSE_GEN, 1) + 1;
    this.#setCommand(CMD_PAUSE);
    const parked = new Promise<void>((resolve) => this.#pauseWaiters.push({ gen, resolve }));
    this.#runner!.wake();
    this.#runner!.kick();
    return parked;
  }

  /**
   * Lets a paused vCPU run the guest again. Does nothing unless paused.
   */
  resume(): void {
    if (this.#state !== "paused") return;
    this.#state = "running";
    this.#setCommand(CMD_RUN);
    this.#runner!.wake();
  }

  /**
   * Ends the vCPU's thread; resolves with how it ended. The vCPU can still be
   * read (state, registers) until closed.
   *
   * @returns The stop.
   */
  stop(): Promise<VcpuStop> {
    if (this.#state === "created") this.#finish({});
    if (this.#state === "stopped") return this.#stopped;
    this.#setCommand(CMD_STOP);
    this.#runner!.wake();
    this.#runner!.kick();
    return this.#stopped;
  }

  #finish(stop: VcpuStop): void {
    if (this.#state === "stopped" && this.#runner === undefined) return;
    this.#state = "stopped";
    this.#runner?.dispose();
    this.#runner = undefined;
    for (const w of this.#pauseWaiters.splice(0)) w.resolve();
    this.#resolveStopped(stop);
  }

  #threadEvent(m: VcpuThreadMessage): void {
    switch (m.type) {
      case "started":
        this.#started?.resolve();
        this.#started = undefined;
        return;
      case "paused":
        if (Atomics.load(this.#ctrl, CTRL_CMD) === CMD_PAUSE && this.#state === "running") {
          this.#state = "paused";
        }
        this.#pauseWaiters = this.#pauseWaiters.filter((w) => {
          if (w.gen > m.gen) return true;
          w.resolve();
          return false;
        });
        return;
      case "stopped":
        this.#started?.resolve();
        this.#finish(this.#error === undefined ? {} : { error: this.#error });
        return;
      case "failed": {
        const cause = m.errno !== 0 ? new IoctlError(m.syscall, m.errno) : undefined;
        const error = new VcpuError(this.id, `thread failed: ${m.message ?? cause?.message}`, {
          cause,
        });
        this.#started?.reject(error);
        this.#started = undefined;
        this.#finish({ error });
        return;
      }
    }
  }

  #handleExit(): void {
    let action: ExitAction;
    let exit: VcpuExit | undefined;
    try {
      exit = decodeExit(this.#run);
      this.#lastExit = exit;
      this.#exitCounts[exit.kind] = (this.#exitCounts[exit.kind] ?? 0) + 1;
      action = this.#dispatch(exit);
    } catch (e) {
      this.#error = new VcpuError(this.id, `exit handler failed: ${(e as Error).message}`, {
        exit,
        cause: e,
      });
      action = "stop";
    }
    if (action === "pause" && Atomics.load(this.#ctrl, CTRL_CMD) === CMD_RUN) {
      Atomics.add(this.#ctrl, CTRL_PAUSE_GEN, 1);
      this.#setCommand(CMD_PAUSE);
    } else if (action === "stop") {
      this.#setCommand(CMD_STOP);
    }
  }

  #dispatch(exit: VcpuExit): ExitAction {
    switch (exit.kind) {
      case "io":
        return this.#pio(exit.direction, exit.port, exit.size, exit.count, exit.dataOffset);
      case "mmio":
        return this.#mmio(exit.gpa, exit.length, exit.isWrite, exit.data);
      case "dirty-ring-full":
        if (this.#host.ringFull(this)) return "resume";
        this.#error = VcpuError.fromExit(this.id, exit);
        return "stop";
    }
    const chosen = this.onExit?.(exit, this);
    if (chosen !== undefined) return chosen;
    if (exit.kind === "hlt") return "pause";
    this.#error = VcpuError.fromExit(this.id, exit);
    return "stop";
  }

  #pio(dir: "in" | "out", port: number, size: number, count: number, at: number): ExitAction {
    const handler = this.#host.pio.find(port);
    let action: ExitAction = "resume";
    const v = this.#run;
    for (let i = 0; i < count; i++) {
      const off = at + i * size;
      if (dir === "out") {
        const value = size === 1
          ? v.getUint8(off)
          : size === 2
          ? v.getUint16(off, true)
          : v.getUint32(off, true);
        const a = handler?.write?.(port, size, value, this.id);
        if (a !== undefined && a !== "resume") action = a;
      } else {
        const value = handler?.read?.(port, size, this.id) ?? 0xffffffff;
        if (size === 1) v.setUint8(off, value & 0xff);
        else if (size === 2) v.setUint16(off, value & 0xffff, true);
        else v.setUint32(off, value >>> 0, true);
      }
    }
    return action;
  }

  #mmio(gpa: bigint, size: number, isWrite: boolean, data: bigint): ExitAction {
    const handler = this.#host.mmio.find(gpa);
    const mask = (1n << BigInt(size * 8)) - 1n;
    if (isWrite) return handler?.write?.(gpa, size, data & mask, this.id) ?? "resume";
    setMmioData(this.#run, (handler?.read?.(gpa, size, this.id) ?? mask) & mask);
    return "resume";
  }

  #stopNow(): void {
    // Synchronous stop for close(): ask, answer any exit waiting, kick, wait.
    const ctrl = this.#ctrl;
    this.#setCommand(CMD_STOP);
    Atomics.store(ctrl, CTRL_DONE_SEQ, Atomics.load(ctrl, CTRL_EXIT_SEQ));
    Atomics.notify(ctrl, CTRL_DONE_SEQ);
    this.#runner!.wake();
    this.#runner!.kick();
    if (this.#thread === "inline") return;
    const deadline = performance.now() + STOP_TIMEOUT_MS;
    for (;;) {
      const s = Atomics.load(ctrl, CTRL_STATE);
      if (s === STATE_STOPPED || s === STATE_FAILED) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new VcpuError(
          this.id,
          `did not stop within ${STOP_TIMEOUT_MS} ms; its fd and kvm_run mapping are left open`,
        );
      }
      Atomics.wait(ctrl, CTRL_STATE, s, Math.min(left, 100));
    }
  }

  #release(): void {
    const sys = this.#sys;
    if (this.#ring !== undefined) {
      const ring = this.#ring;
      this.#ring = undefined;
      sys.munmap(ring.addr, BigInt(ring.bytes));
    }
    if (this.#runAddr !== 0n) {
      const addr = this.#runAddr;
      this.#runAddr = 0n;
      this.#runBytes = new Uint8Array(0);
      this.#run = new DataView(new ArrayBuffer(0));
      sys.munmap(addr, BigInt(this.#runSize));
    }
    if (this.#fd >= 0) {
      const fd = this.#fd;
      this.#fd = -1;
      sys.close(fd);
    }
  }

  /**
   * Stops the thread (waiting at most 10 s for it), unmaps `kvm_run` and the
   * dirty ring and closes the fd. Idempotent.
   *
   * @throws {VcpuError} When the thread does not stop in time (nothing is
   *   unmapped then, so it cannot fault).
   */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#runner !== undefined) {
      this.#stopNow();
      this.#finish(this.#error === undefined ? {} : { error: this.#error });
    } else if (this.#state !== "stopped") {
      this.#finish({});
    }
    this.#release();
  }

  /** Closes through {@linkcode Vcpu.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
