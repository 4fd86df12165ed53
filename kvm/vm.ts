/**
 * A KVM VM: memory slots from guest RAM regions, the in-kernel irqchip, the
 * I/O buses, vCPUs, the guest clock, dirty logging and saved state.
 *
 * @module
 */

import { hex } from "../sys/address.ts";
import { KVM_INTERNALS, type KvmInternals } from "./_internals.ts";
import { KvmStateError } from "./errors.ts";
import { MmioBus, PioBus } from "./io_bus.ts";
import type { Kvm } from "./kvm.ts";
import type { KvmSyscalls } from "./syscalls.ts";
import type { CpuidEntry } from "./uapi/cpu.ts";
import {
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_IRQCHIP,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_XCRS,
  KVM_CAP_XSAVE,
  KVM_CAP_XSAVE2,
  KVM_DIRTY_LOG_PAGE_OFFSET,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
} from "./uapi/constants.ts";
import {
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  KVM_GET_CLOCK,
  KVM_SET_CLOCK,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
} from "./uapi/ioctls.ts";
import { encodeEnableCap, encodeUserMemoryRegion } from "./uapi/memory.ts";
import {
  type ClockData,
  decodeClockData,
  encodeClockData,
  KVM_CLOCK_DATA_SIZE,
} from "./uapi/state.ts";
import { Vcpu, type VcpuHost, type VcpuOptions, type VcpuStop } from "./vcpu.ts";
import type { VcpuStateContext } from "./vcpu_state.ts";
import { type RingFullHandler, VM_INTERNALS } from "./_vm_internals.ts";
import type { VmState } from "./state_codec.ts";

/** Where `KVM_SET_TSS_ADDR` puts the three pages VMX needs, as QEMU does: below 4 GiB, above RAM. */
export const DEFAULT_TSS_ADDRESS = 0xfffb_d000n;

/** The guest RAM a VM maps: any object with regions (such as `GuestMemory`). */
export interface KvmMemory {
  /** The regions, each mapped at a host address for its whole size. */
  readonly regions: readonly {
    readonly gpa: bigint;
    readonly size: bigint;
    readonly hostAddress: bigint;
  }[];
}

/** A memory slot (`struct kvm_userspace_memory_region`). */
export interface MemorySlot {
  /** The slot id. */
  readonly slot: number;
  /** First guest-physical address. */
  readonly gpa: bigint;
  /** Bytes. */
  readonly size: bigint;
  /** Where the memory is mapped in this process. */
  readonly hostAddress: bigint;
  /** Whether the guest may only read it (`KVM_MEM_READONLY`). */
  readonly readonly: boolean;
}

/** Options of `Kvm.createVm()`. */
export interface VmOptions {
  /**
   * Create the in-kernel irqchip (`KVM_CREATE_IRQCHIP`: PIC, IOAPIC, local
   * APICs), default `true`. With it the LAPIC is part of saved state and HLT
   * waits in the kernel for an interrupt; without it HLT exits to the VMM.
   */
  irqchip?: boolean;
  /** `KVM_SET_TSS_ADDR` (default {@linkcode DEFAULT_TSS_ADDRESS}). */
  tssAddress?: bigint;
  /**
   * Give every vCPU a dirty ring of this many bytes (a power of two;
   * `KVM_CAP_DIRTY_LOG_RING_ACQ_REL` where the kernel has it, else
   * `KVM_CAP_DIRTY_LOG_RING`). Harvest it with `KvmDirtyRing`. Default: none.
   */
  dirtyRingBytes?: number;
}

/**
 * A VM. Memory it maps must stay mapped until the VM is closed; vCPUs close
 * with it.
 *
 * Requires `--allow-ffi`, and `--allow-read` for the vCPU Worker module.
 *
 * @example Map RAM and make a vCPU
 * ```ts ignore
 * using kvm = Kvm.open();
 * using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: 8n << 20n }]);
 * using vm = kvm.createVm();
 * using _slots = vm.addMemory(memory);
 * const vcpu = vm.createVcpu();
 * ```
 */
export class Vm implements Disposable {
  /** Port I/O handlers, shared by the vCPUs. */
  readonly pio: PioBus = new PioBus();
  /** MMIO handlers, shared by the vCPUs. */
  readonly mmio: MmioBus = new MmioBus();
  #sys: KvmSyscalls;
  #kvm: KvmInternals;
  #fd: number;
  #irqchip: boolean;
  #slots: (MemorySlot & { flags: number })[] = [];
  #nextSlot = 0;
  #logging = false;
  #vcpus: Vcpu[] = [];
  #ringBytes = 0;
  #ringCap = 0;
  #ringHandler?: RingFullHandler;
  #context?: VcpuStateContext;
  #msrs: readonly number[];
  #cpuid: readonly CpuidEntry[];

  private constructor(kvm: KvmInternals, fd: number, irqchip: boolean) {
    this.#kvm = kvm;
    this.#sys = kvm.sys;
    this.#fd = fd;
    this.#irqchip = irqchip;
    this.#msrs = kvm.msrIndexList();
    this.#cpuid = kvm.supportedCpuid();
    VM_INTERNALS.set(this, {
      sys: this.#sys,
      fd: () => this.#open(),
      slots: () => this.#slots,
      vcpus: () => this.#live(),
      setRingHandler: (h) => {
        if (this.#ringHandler !== undefined && h !== undefined) {
          throw new TypeError("Cannot harvest a VM's dirty rings twice: it has a KvmDirtyRing");
        }
        this.#ringHandler = h;
      },
    });
  }

  /**
   * Creates a VM on a KVM device (`KVM_CREATE_VM`), with the TSS address, the
   * irqchip and the dirty ring as asked. On failure nothing stays open.
   *
   * @param kvm The device.
   * @param options Irqchip, TSS address, dirty ring.
   * @returns The VM.
   * @throws {IoctlError} When KVM refuses.
   * @throws {RangeError} For a dirty ring size that is not a power of two.
   * @throws {TypeError} When the kernel has no dirty ring but one was asked.
   */
  static create(kvm: Kvm, options: VmOptions = {}): Vm {
    const inner = KVM_INTERNALS.get(kvm);
    if (inner === undefined) throw new TypeError("Cannot create a VM: not a Kvm");
    const sys = inner.sys;
    // Read these while the device is open; VMs outlive it.
    inner.msrIndexList();
    inner.supportedCpuid();
    const irqchip = (options.irqchip ?? true) && inner.checkExtension(KVM_CAP_IRQCHIP) > 0;
    const tss = inner.checkExtension(KVM_CAP_SET_TSS_ADDR) > 0;
    const fd = sys.ioctlValue(kvm.unsafeFd, KVM_CREATE_VM, 0n);
    const vm = new Vm(inner, fd, irqchip);
    try {
      if (tss) sys.ioctlValue(fd, KVM_SET_TSS_ADDR, options.tssAddress ?? DEFAULT_TSS_ADDRESS);
      if (irqchip) sys.ioctlValue(fd, KVM_CREATE_IRQCHIP, 0n);
      if (options.dirtyRingBytes !== undefined) vm.#enableRing(options.dirtyRingBytes);
    } catch (e) {
      vm.close();
      throw e;
    }
    return vm;
  }

  #enableRing(bytes: number): void {
    if (!Number.isInteger(bytes) || bytes <= 0 || (bytes & (bytes - 1)) !== 0) {
      throw new RangeError(`Cannot make a dirty ring of ${bytes} bytes: not a power of two`);
    }
    const acqRel = this.checkExtension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
    const plain = this.checkExtension(KVM_CAP_DIRTY_LOG_RING);
    const cap = acqRel > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
    const max = acqRel > 0 ? acqRel : plain;
    if (max <= 0) {
      throw new TypeError(
        "Cannot make a dirty ring: this kernel has no KVM_CAP_DIRTY_LOG_RING (Linux 5.11+)",
      );
    }
    if (bytes > max) {
      throw new RangeError(`Cannot make a dirty ring of ${bytes} bytes: KVM allows ${max}`);
    }
    this.enableCap(cap, [BigInt(bytes)]);
    this.#ringBytes = bytes;
    this.#ringCap = cap;
  }

  #open(): number {
    if (this.#fd < 0) throw new TypeError("Cannot use a closed VM");
    return this.#fd;
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
   * Whether the VM has the in-kernel irqchip.
   *
   * @returns `true` with it.
   */
  get irqchip(): boolean {
    return this.#irqchip;
  }

  /**
   * The memory slots, in slot order.
   *
   * @returns The slots.
   */
  get slots(): readonly MemorySlot[] {
    return this.#slots.map(({ flags: _flags, ...slot }) => slot);
  }

  /**
   * The vCPUs, in creation order.
   *
   * @returns The vCPUs.
   */
  get vcpus(): readonly Vcpu[] {
    return this.#live();
  }

  // vCPUs closed on their own stay out of pause, state and harvests.
  #live(): Vcpu[] {
    return this.#vcpus.filter((v) => v.unsafeFd >= 0);
  }

  /**
   * The dirty ring each vCPU has: bytes (0 without a ring) and the capability
   * that enabled it.
   *
   * @returns The ring's size and kind.
   */
  get dirtyRing(): { readonly bytes: number; readonly acqRel: boolean } {
    return { bytes: this.#ringBytes, acqRel: this.#ringCap === KVM_CAP_DIRTY_LOG_RING_ACQ_REL };
  }

  /**
   * Whether the slots log writes (`KVM_MEM_LOG_DIRTY_PAGES`).
   *
   * @returns `true` while logging.
   */
  get dirtyLogging(): boolean {
    return this.#logging;
  }

  /**
   * Asks the VM about an extension (`KVM_CHECK_EXTENSION` on the VM fd).
   *
   * @param cap A `KVM_CAP_*` number.
   * @returns 0 when absent; 1 or a capability-specific value when present.
   * @throws {IoctlError} When the ioctl fails.
   */
  checkExtension(cap: number): number {
    return this.#sys.ioctlValue(this.#open(), KVM_CHECK_EXTENSION, BigInt(cap));
  }

  /**
   * Enables a capability on the VM (`KVM_ENABLE_CAP`).
   *
   * @param cap The `KVM_CAP_*` number.
   * @param args Up to four arguments.
   * @throws {IoctlError} When KVM refuses.
   */
  enableCap(cap: number, args: readonly bigint[] = []): void {
    this.#sys.ioctl(this.#open(), KVM_ENABLE_CAP, encodeEnableCap(cap, args));
  }

  #setSlot(slot: MemorySlot & { flags: number }, size: bigint): void {
    this.#sys.ioctl(
      this.#open(),
      KVM_SET_USER_MEMORY_REGION,
      encodeUserMemoryRegion({
        slot: slot.slot,
        flags: slot.flags,
        guestPhysAddr: slot.gpa,
        memorySize: size,
        userspaceAddr: slot.hostAddress,
      }),
    );
  }

  #flags(slot: { readonly: boolean }): number {
    return (slot.readonly ? KVM_MEM_READONLY : 0) | (this.#logging ? KVM_MEM_LOG_DIRTY_PAGES : 0);
  }

  /**
   * Maps guest RAM: one memory slot per region (`KVM_SET_USER_MEMORY_REGION`),
   * logging writes if dirty logging is on. On failure the slots made are
   * removed again.
   *
   * @param memory The RAM (such as a `GuestMemory`); it must stay mapped
   *   while the slots exist.
   * @param options `readonly`: the guest may only read it.
   * @returns A lease that removes the slots.
   * @throws {RangeError} For a region not 4 KiB-aligned or overlapping a slot.
   * @throws {IoctlError} When KVM refuses.
   */
  addMemory(memory: KvmMemory, options: { readonly?: boolean } = {}): Disposable {
    this.#open();
    const made: (MemorySlot & { flags: number })[] = [];
    try {
      for (const r of memory.regions) {
        if ((r.gpa | r.size | r.hostAddress) & 0xfffn || r.size === 0n) {
          throw new RangeError(
            `Cannot map ${hex(r.size)} bytes at GPA ${hex(r.gpa)} (host ${hex(r.hostAddress)}): ` +
              "not 4 KiB-aligned",
          );
        }
        const clash = this.#slots.find((s) => r.gpa < s.gpa + s.size && s.gpa < r.gpa + r.size);
        if (clash !== undefined) {
          throw new RangeError(
            `Cannot map [${hex(r.gpa)}, ${hex(r.gpa + r.size)}): it overlaps slot ${clash.slot}`,
          );
        }
        const readonly = options.readonly ?? false;
        const slot = {
          slot: this.#nextSlot,
          gpa: r.gpa,
          size: r.size,
          hostAddress: r.hostAddress,
          readonly,
          flags: 0,
        };
        slot.flags = this.#flags(slot);
        this.#setSlot(slot, slot.size);
        this.#nextSlot++;
        this.#slots.push(slot);
        made.push(slot);
      }
    } catch (e) {
      this.#removeSlots(made);
      throw e;
    }
    let live = true;
    return {
      [Symbol.dispose]: () => {
        if (!live) return;
        live = false;
        this.#removeSlots(made);
      },
    };
  }

  #removeSlots(slots: (MemorySlot & { flags: number })[]): void {
    if (this.#fd < 0) return;
    for (const s of slots) {
      this.#setSlot(s, 0n);
      this.#slots = this.#slots.filter((x) => x !== s);
    }
  }

  /**
   * Turns write logging of every slot on or off (`KVM_MEM_LOG_DIRTY_PAGES`,
   * by re-registering the slots with the flag changed). Dirty sources do
   * this in `start()` and `stop()`.
   *
   * @param enabled On or off.
   * @throws {IoctlError} When KVM refuses.
   */
  setDirtyLogging(enabled: boolean): void {
    if (this.#logging === enabled) return;
    this.#logging = enabled;
    for (const s of this.#slots) {
      s.flags = this.#flags(s);
      this.#setSlot(s, s.size);
    }
  }

  #host(): VcpuHost {
    // deno-lint-ignore no-this-alias
    const vm = this;
    return {
      syscalls: this.#sys,
      mmapSize: this.#kvm.mmapSize,
      pio: this.pio,
      mmio: this.mmio,
      inline: this.#kvm.inline,
      stateContext: () => vm.#stateContext(),
      ringFull: (vcpu) => {
        if (vm.#ringHandler === undefined) return false;
        vm.#ringHandler(vcpu);
        return true;
      },
    };
  }

  #stateContext(): VcpuStateContext {
    return this.#context ??= {
      msrIndices: this.#msrs,
      xsave2Size: this.checkExtension(KVM_CAP_XSAVE2),
      xsave: this.checkExtension(KVM_CAP_XSAVE) > 0,
      xcrs: this.checkExtension(KVM_CAP_XCRS) > 0,
      lapic: this.#irqchip,
    };
  }

  /**
   * Creates a vCPU (`KVM_CREATE_VCPU`) with KVM's supported CPUID
   * (`KVM_SET_CPUID2`), its `kvm_run` page and dirty ring mapped. It does not
   * run until `start()`.
   *
   * @param options Id, exit listener, thread, kick signal.
   * @returns The vCPU.
   * @throws {IoctlError} When KVM refuses.
   */
  createVcpu(options: VcpuOptions = {}): Vcpu {
    const id = options.id ??
      (this.#vcpus.length === 0 ? 0 : Math.max(...this.#vcpus.map((v) => v.id)) + 1);
    const fd = this.#sys.ioctlValue(this.#open(), KVM_CREATE_VCPU, BigInt(id));
    // On failure setUp closes the fd.
    const vcpu = Vcpu.setUp(this.#host(), {
      fd,
      id,
      cpuid: this.#cpuid,
      ringBytes: this.#ringBytes,
      ringOffset: BigInt(KVM_DIRTY_LOG_PAGE_OFFSET * 4096),
      options,
    });
    this.#vcpus.push(vcpu);
    return vcpu;
  }

  /**
   * Starts every vCPU not started yet.
   *
   * @returns A promise resolved once they all run.
   */
  async start(): Promise<void> {
    await Promise.all(this.#live().filter((v) => v.state === "created").map((v) => v.start()));
  }

  /**
   * Pauses every vCPU; resolves once all are parked outside `KVM_RUN`.
   *
   * @returns A promise.
   */
  async pause(): Promise<void> {
    await Promise.all(this.#live().map((v) => v.pause()));
  }

  /** Resumes every paused vCPU. */
  resume(): void {
    for (const v of this.#live()) v.resume();
  }

  /**
   * Stops every vCPU's thread.
   *
   * @returns How each ended, in vCPU order.
   */
  stop(): Promise<VcpuStop[]> {
    return Promise.all(this.#live().map((v) => v.stop()));
  }

  /**
   * Reads the guest clock (`KVM_GET_CLOCK`, kvmclock nanoseconds).
   *
   * @returns The clock.
   * @throws {IoctlError} When the ioctl fails.
   */
  getClock(): ClockData {
    const buf = new Uint8Array(KVM_CLOCK_DATA_SIZE);
    this.#sys.ioctl(this.#open(), KVM_GET_CLOCK, buf);
    return decodeClockData(buf);
  }

  /**
   * Sets the guest clock (`KVM_SET_CLOCK`), as read by {@linkcode Vm.getClock}
   * (its flags are not passed on: the clock resumes from its value).
   *
   * @param clock The clock.
   * @throws {IoctlError} When the ioctl fails.
   */
  setClock(clock: ClockData): void {
    this.#sys.ioctl(
      this.#open(),
      KVM_SET_CLOCK,
      encodeClockData({ clock: clock.clock, flags: 0, realtime: 0n, hostTsc: 0n }),
    );
  }

  /**
   * Saves the VM's CPU state: the guest clock and every vCPU. No vCPU may be
   * running (pause them first); RAM is not part of it.
   *
   * @returns The state (encode it with `encodeVmState`).
   * @throws {TypeError} While a vCPU runs.
   * @throws {IoctlError} Naming the ioctl that failed.
   */
  saveState(): VmState {
    const running = this.#live().filter((v) => v.state === "running");
    if (running.length > 0) {
      throw new TypeError(
        `Cannot save the VM's state while vCPU ${running.map((v) => v.id).join(", ")} runs: ` +
          "pause it first",
      );
    }
    return { clock: this.getClock(), vcpus: this.#live().map((v) => v.saveState()) };
  }

  /**
   * Restores saved CPU state: the guest clock, then each vCPU by id (they
   * must exist and not run). RAM must be restored separately.
   *
   * @param state From {@linkcode Vm.saveState} (or `decodeVmState`).
   * @throws {KvmStateError} When a vCPU of the state is missing here, or a piece is refused.
   * @throws {IoctlError} Naming the ioctl that failed.
   */
  restoreState(state: VmState): void {
    const live = this.#live();
    for (const s of state.vcpus) {
      if (!live.some((v) => v.id === s.id)) {
        throw new KvmStateError(`Cannot restore vCPU ${s.id}: this VM has no such vCPU`);
      }
    }
    if (state.clock !== undefined) this.setClock(state.clock);
    for (const s of state.vcpus) live.find((v) => v.id === s.id)!.restoreState(s);
  }

  /**
   * Closes the vCPUs (stopping their threads), then the VM fd. Idempotent.
   *
   * @throws {VcpuError} When a vCPU thread does not stop (the VM fd stays open then).
   */
  close(): void {
    if (this.#fd < 0) return;
    for (const v of this.#vcpus) v.close();
    this.#vcpus = [];
    this.#slots = [];
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
  }

  /** Closes through {@linkcode Vm.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
