/**
 * The fake KVM's vCPU: the state the GET/SET ioctls keep, and a scripted
 * guest that `KVM_RUN` steps through: stores into guest RAM (logged for the
 * dirty bitmap or ring), port I/O, MMIO, HLT, and the fatal exits. `KVM_RUN`
 * honours `immediate_exit`, completes a pending IN or MMIO read first (the
 * value lands in `rax`), and exits with `KVM_EXIT_DIRTY_RING_FULL` at the
 * ring's soft limit.
 *
 * @module
 */

import { EINTR, EINVAL, ENXIO } from "../../sys/errno.ts";
import { hostView } from "../../sys/host_memory.ts";
import {
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_IN,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
} from "../../kvm/uapi/constants.ts";
import type { CpuidEntry, MsrEntry } from "../../kvm/uapi/cpu.ts";
import type { FakeRing, FakeVmState } from "./kvm_vm.ts";
import { fail } from "./user_memory.ts";

/** One step of a fake guest. */
export type FakeGuestStep =
  | { readonly write: bigint; readonly value?: bigint; readonly size?: number }
  | { readonly out: number; readonly value: number; readonly size?: number }
  | { readonly in: number; readonly size?: number }
  | { readonly mmioWrite: bigint; readonly value: bigint; readonly size?: number }
  | { readonly mmioRead: bigint; readonly size?: number }
  | { readonly hlt: true }
  | { readonly shutdown: true }
  | { readonly failEntry: bigint }
  | { readonly internalError: number }
  | { readonly systemEvent: number }
  | { readonly spin: true };

/** Where the fake puts the I/O data: the page after `kvm_run`, as KVM does. */
export const FAKE_PIO_DATA_OFFSET = 4096;

/** The fake vCPU's state and guest. */
export class FakeVcpu {
  readonly id: number;
  regs: Uint8Array = new Uint8Array(144);
  sregs: Uint8Array = new Uint8Array(312);
  fpu: Uint8Array = new Uint8Array(416);
  xsave: Uint8Array = new Uint8Array(4096);
  xcrs: Uint8Array = new Uint8Array(392);
  lapic: Uint8Array = new Uint8Array(1024);
  events: Uint8Array = new Uint8Array(64);
  debugregs: Uint8Array = new Uint8Array(128);
  mpState = 0;
  tscKhz = 2_000_000;
  msrs = new Map<number, bigint>();
  cpuid: CpuidEntry[] = [];
  sigmaskSet = false;
  /** The kvm_run mapping, once mmapped. */
  run?: { addr: bigint; bytes: number };
  /** The dirty ring, once mmapped (and enabled on the VM). */
  ring?: FakeRing;
  /** The guest's steps; `pc` is the next one. After the last it spins. */
  script: FakeGuestStep[] = [];
  pc = 0;
  /** KVM_RUN calls. */
  runs = 0;
  #pendingRead?: { size: number; at: "io" | "mmio" };
  #vm: FakeVmState;

  constructor(id: number, vm: FakeVmState, msrs: readonly number[]) {
    this.id = id;
    this.#vm = vm;
    for (const m of msrs) this.msrs.set(m, BigInt(m) * 3n);
    new DataView(this.regs.buffer).setBigUint64(136, 2n, true); // rflags
  }

  #runPage(): DataView {
    if (this.run === undefined) fail(EINVAL);
    return new DataView(hostView(this.run.addr, this.run.bytes).buffer);
  }

  #complete(run: DataView): void {
    const p = this.#pendingRead;
    if (p === undefined) return;
    this.#pendingRead = undefined;
    const value = p.at === "io"
      ? BigInt(
        p.size === 1
          ? run.getUint8(FAKE_PIO_DATA_OFFSET)
          : p.size === 2
          ? run.getUint16(FAKE_PIO_DATA_OFFSET, true)
          : run.getUint32(FAKE_PIO_DATA_OFFSET, true),
      )
      : run.getBigUint64(40, true) & ((1n << BigInt(p.size * 8)) - 1n);
    new DataView(this.regs.buffer).setBigUint64(0, value, true); // rax
  }

  /** `KVM_RUN`: returns 0 with an exit in `kvm_run`, or fails with EINTR. */
  kvmRun(): number {
    this.runs++;
    const run = this.#runPage();
    this.#complete(run);
    if (run.getUint8(1) !== 0) fail(EINTR); // immediate_exit
    if (this.ring !== undefined && this.#vm.ringSoftFull(this.ring)) {
      return this.#exit(run, KVM_EXIT_DIRTY_RING_FULL);
    }
    for (;;) {
      const step = this.script[this.pc];
      if (step === undefined || "spin" in step) fail(EINTR); // a time slice ends
      this.pc++;
      if ("write" in step) {
        const size = step.size ?? 8;
        if (this.#vm.guestWrite(step.write, step.value ?? BigInt(this.pc), size, this.ring)) {
          if (this.ring !== undefined && this.#vm.ringSoftFull(this.ring)) {
            return this.#exit(run, KVM_EXIT_DIRTY_RING_FULL);
          }
          continue;
        }
        return this.#mmio(run, step.write, size, true, step.value ?? 0n);
      }
      if ("out" in step || "in" in step) {
        const out = "out" in step;
        const size = step.size ?? 1;
        run.setUint8(32, out ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN);
        run.setUint8(33, size);
        run.setUint16(34, out ? step.out : step.in, true);
        run.setUint32(36, 1, true);
        run.setBigUint64(40, BigInt(FAKE_PIO_DATA_OFFSET), true);
        if (out) {
          for (let i = 0; i < size; i++) {
            run.setUint8(FAKE_PIO_DATA_OFFSET + i, (step.value >>> (8 * i)) & 0xff);
          }
        } else {
          this.#pendingRead = { size, at: "io" };
        }
        return this.#exit(run, KVM_EXIT_IO);
      }
      if ("mmioWrite" in step) {
        return this.#mmio(run, step.mmioWrite, step.size ?? 4, true, step.value);
      }
      if ("mmioRead" in step) return this.#mmio(run, step.mmioRead, step.size ?? 4, false, 0n);
      if ("hlt" in step) return this.#exit(run, KVM_EXIT_HLT);
      if ("shutdown" in step) return this.#exit(run, KVM_EXIT_SHUTDOWN);
      if ("failEntry" in step) {
        run.setBigUint64(32, step.failEntry, true);
        run.setUint32(40, 0, true);
        return this.#exit(run, KVM_EXIT_FAIL_ENTRY);
      }
      if ("internalError" in step) {
        run.setUint32(32, step.internalError, true);
        run.setUint32(36, 1, true);
        run.setBigUint64(40, 0xdeadn, true);
        return this.#exit(run, KVM_EXIT_INTERNAL_ERROR);
      }
      run.setUint32(32, step.systemEvent, true);
      run.setUint32(36, 0, true);
      return this.#exit(run, KVM_EXIT_SYSTEM_EVENT);
    }
  }

  #mmio(run: DataView, gpa: bigint, size: number, write: boolean, value: bigint): number {
    run.setBigUint64(32, gpa, true);
    run.setBigUint64(40, write ? value : 0n, true);
    run.setUint32(48, size, true);
    run.setUint8(52, write ? 1 : 0);
    if (!write) this.#pendingRead = { size, at: "mmio" };
    return this.#exit(run, KVM_EXIT_MMIO);
  }

  #exit(run: DataView, reason: number): number {
    run.setUint32(8, reason, true);
    return 0;
  }

  /** `KVM_GET_LAPIC`/`KVM_SET_LAPIC` need the in-kernel irqchip. */
  checkLapic(): void {
    if (!this.#vm.irqchip) fail(ENXIO);
  }

  /** `KVM_GET_MSRS`: values up to the first MSR it does not know. */
  getMsrs(entries: MsrEntry[]): number {
    let n = 0;
    for (const e of entries) {
      const v = this.msrs.get(e.index);
      if (v === undefined) break;
      e.data = v;
      n++;
    }
    return n;
  }

  /** `KVM_SET_MSRS`: sets up to the first MSR it does not know. */
  setMsrs(entries: readonly MsrEntry[], writable: (index: number) => boolean): number {
    let n = 0;
    for (const e of entries) {
      if (!this.msrs.has(e.index) || !writable(e.index)) break;
      this.msrs.set(e.index, e.data);
      n++;
    }
    return n;
  }
}
