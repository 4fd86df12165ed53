/**
 * `FakeKvm`: a fake `/dev/kvm` at the syscall boundary (`KvmSyscalls`), for
 * `kvm/` tests that need no `/dev/kvm`. System, VM and vCPU fds dispatch the
 * ioctls `kvm/` uses by number and fd type, with KVM's checks and errnos (6.1);
 * `kvm_run`, dirty rings and anonymous buffers are real mappings; guest RAM
 * named in memory slots is read and written for real. vCPUs run a scripted
 * guest (see {@linkcode FakeGuestStep}); with a fake the vCPU runs inline.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import {
  E2BIG,
  EACCES,
  EBADF,
  EEXIST,
  EINVAL,
  ENODEV,
  ENOENT,
  ENOTTY,
  ENXIO,
} from "../../sys/errno.ts";
import { IoctlError, SyscallError } from "../../sys/errors.ts";
import { LibcSyscalls } from "../../sys/libc.ts";
import type { IoctlRequest } from "../../sys/syscalls.ts";
import type { KvmSyscalls } from "../../kvm/syscalls.ts";
import * as K from "../../kvm/uapi/constants.ts";
import * as I from "../../kvm/uapi/ioctls.ts";
import {
  type CpuidEntry,
  decodeCpuid2,
  decodeMsrs,
  encodeCpuid2,
  KVM_MSRS_SIZE,
} from "../../kvm/uapi/cpu.ts";
import { decodeUserMemoryRegion } from "../../kvm/uapi/memory.ts";
import { decodeClockData, encodeClockData } from "../../kvm/uapi/state.ts";
import { FakeVcpu } from "./kvm_vcpu.ts";
import { FakeVmState } from "./kvm_vm.ts";
import { type FailNextOptions, type FakeCall, FaultPlan } from "./recorder.ts";
import { fail, KernelError } from "./user_memory.ts";

export { type FakeGuestStep, FakeVcpu } from "./kvm_vcpu.ts";
export { FAKE_RING_RESERVED } from "./kvm_vm.ts";

/** Options of {@linkcode FakeKvm}. */
export interface FakeKvmOptions {
  /** What `open("/dev/kvm")` finds (default `"present"`). */
  device?: "present" | "missing" | "denied" | "no-module";
  /** `KVM_GET_API_VERSION` (default 12). */
  apiVersion?: number;
  /** Extensions, by `KVM_CAP_*` (defaults: what the 6.1 harness guest answers). */
  caps?: Readonly<Record<number, number>>;
  /** `KVM_GET_MSR_INDEX_LIST` (default 40 indices). */
  msrIndices?: readonly number[];
  /** MSRs of the index list that `KVM_GET_MSRS` cannot read. */
  unreadableMsrs?: readonly number[];
  /** MSRs that `KVM_SET_MSRS` refuses. */
  unwritableMsrs?: readonly number[];
  /** `KVM_GET_SUPPORTED_CPUID` (default two leaves). */
  cpuid?: readonly CpuidEntry[];
  /** Memory slots per VM (default 509). */
  maxSlots?: number;
}

/** The 6.1 harness guest's answers (kvm-facts.md), plus what KVM always has. */
export const FAKE_KVM_CAPS: Readonly<Record<number, number>> = Object.freeze({
  [K.KVM_CAP_IRQCHIP]: 1,
  [K.KVM_CAP_HLT]: 1,
  [K.KVM_CAP_USER_MEMORY]: 1,
  [K.KVM_CAP_SET_TSS_ADDR]: 1,
  [K.KVM_CAP_NR_VCPUS]: 2,
  [K.KVM_CAP_MAX_VCPUS]: 1024,
  [K.KVM_CAP_NR_MEMSLOTS]: 509,
  [K.KVM_CAP_MP_STATE]: 1,
  [K.KVM_CAP_ADJUST_CLOCK]: 14,
  [K.KVM_CAP_VCPU_EVENTS]: 1,
  [K.KVM_CAP_DEBUGREGS]: 1,
  [K.KVM_CAP_XSAVE]: 1,
  [K.KVM_CAP_XCRS]: 1,
  [K.KVM_CAP_GET_TSC_KHZ]: 1,
  [K.KVM_CAP_TSC_CONTROL]: 1,
  [K.KVM_CAP_CHECK_EXTENSION_VM]: 1,
  [K.KVM_CAP_IMMEDIATE_EXIT]: 1,
  [K.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2]: 3,
  [K.KVM_CAP_DIRTY_LOG_RING]: 1048576,
  [K.KVM_CAP_DIRTY_LOG_RING_ACQ_REL]: 1048576,
  [K.KVM_CAP_XSAVE2]: 4096,
});

const DEFAULT_MSRS = Array.from({ length: 40 }, (_, i) => i < 20 ? 0x10 + i : 0xc0000080 + i);

type Kind = "system" | "vm" | "vcpu";
interface VmFd {
  kind: "vm";
  state: FakeVmState;
  vcpus: Map<number, FakeVcpu>;
}
interface VcpuFd {
  kind: "vcpu";
  vm: VmFd;
  vcpu: FakeVcpu;
}
type FdEntry = { kind: "system" } | VmFd | VcpuFd;

/**
 * A fake KVM. Deno's sanitizers cannot see its fds; check
 * {@linkcode FakeKvm.openFds} and {@linkcode FakeKvm.liveMappings} at the end
 * of a test.
 *
 * @example A VM with no /dev/kvm
 * ```ts ignore
 * const fake = new FakeKvm();
 * using kvm = Kvm.open({ syscalls: fake });
 * using vm = kvm.createVm();
 * ```
 */
export class FakeKvm implements KvmSyscalls {
  #fds = new Map<number, FdEntry>();
  #next = 1000;
  #libc = new LibcSyscalls();
  #maps = new Map<bigint, bigint>();
  #faults = new FaultPlan();
  #calls: FakeCall[] = [];
  #opts: Required<Omit<FakeKvmOptions, "caps">> & { caps: Readonly<Record<number, number>> };

  /**
   * Creates the fake.
   *
   * @param options The device, API version, extensions, MSRs, CPUID.
   */
  constructor(options: FakeKvmOptions = {}) {
    this.#opts = {
      device: options.device ?? "present",
      apiVersion: options.apiVersion ?? K.KVM_API_VERSION,
      caps: { ...FAKE_KVM_CAPS, ...options.caps },
      msrIndices: options.msrIndices ?? DEFAULT_MSRS,
      unreadableMsrs: options.unreadableMsrs ?? [],
      unwritableMsrs: options.unwritableMsrs ?? [],
      cpuid: options.cpuid ?? [
        {
          function: 0,
          index: 0,
          flags: 0,
          eax: 0xd,
          ebx: 0x68747541,
          ecx: 0x444d4163,
          edx: 0x69746e65,
        },
        {
          function: 1,
          index: 0,
          flags: 0,
          eax: 0x830f10,
          ebx: 0,
          ecx: 0x80000000,
          edx: 0x178bfbff,
        },
      ],
      maxSlots: options.maxSlots ?? 509,
    };
  }

  /**
   * Fails the next call of an ioctl or syscall with `errno`, before it has any effect.
   *
   * @param name An ioctl name (`"KVM_RUN"`) or `"open"`, `"mmap"`, ...
   * @param errno The errno.
   * @param options How many times.
   * @returns This fake.
   */
  failNext(name: string, errno: number, options: FailNextOptions = {}): this {
    this.#faults.add(name, errno, options);
    return this;
  }

  /** The calls made, oldest first. */
  get calls(): readonly FakeCall[] {
    return this.#calls;
  }

  /** Open fake fds. */
  get openFds(): number {
    return this.#fds.size;
  }

  /** Mappings made through {@linkcode FakeKvm.mmap} and not yet unmapped. */
  get liveMappings(): number {
    return this.#maps.size;
  }

  /**
   * The fake vCPU behind a vCPU fd, to script its guest and read its state.
   *
   * @param id The vCPU id.
   * @param vm Which VM (default the last one created).
   * @returns The vCPU.
   * @throws {RangeError} When there is no such vCPU.
   */
  vcpu(id: number, vm?: number): FakeVcpu {
    const vms = [...this.#fds.entries()].filter(([, e]) => e.kind === "vm") as [number, VmFd][];
    const entry = vm === undefined ? vms.at(-1)?.[1] : vms.find(([fd]) => fd === vm)?.[1];
    const v = entry?.vcpus.get(id);
    if (v === undefined) throw new RangeError(`The fake KVM has no vCPU ${id}`);
    return v;
  }

  /**
   * The fake VM state of a VM fd (default the last one created).
   *
   * @param vm The VM fd.
   * @returns The state.
   * @throws {RangeError} When there is no such VM.
   */
  vm(vm?: number): FakeVmState {
    const vms = [...this.#fds.entries()].filter(([, e]) => e.kind === "vm") as [number, VmFd][];
    const entry = vm === undefined ? vms.at(-1)?.[1] : vms.find(([fd]) => fd === vm)?.[1];
    if (entry === undefined) throw new RangeError("The fake KVM has no such VM");
    return entry.state;
  }

  #run<T>(call: FakeCall, names: string[], toError: (e: number) => SyscallError, body: () => T): T {
    const injected = this.#faults.take(names);
    try {
      if (injected !== undefined) fail(injected);
      const r = body();
      this.#calls.push(call);
      return r;
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      this.#calls.push({ ...call, errno: e.errno });
      throw toError(e.errno);
    }
  }

  #newFd(entry: FdEntry): number {
    const fd = this.#next++;
    this.#fds.set(fd, entry);
    return fd;
  }

  #entry(fd: number): FdEntry {
    const e = this.#fds.get(fd);
    if (e === undefined) fail(EBADF);
    return e;
  }

  /**
   * Opens `/dev/kvm`.
   *
   * @param path The path.
   * @param _flags Ignored.
   * @returns A fake fd.
   * @throws {SyscallError} ENOENT, EACCES or ENXIO as the options say; ENOENT for other paths.
   */
  open(path: string, _flags: number): number {
    return this.#run(
      { syscall: "open", name: path },
      ["open"],
      (e) => new SyscallError("open", e, { path }),
      () => {
        if (path !== "/dev/kvm") fail(ENOENT);
        const device = this.#opts.device;
        if (device === "missing") fail(ENOENT);
        if (device === "denied") fail(EACCES);
        if (device === "no-module") fail(ENXIO);
        return this.#newFd({ kind: "system" });
      },
    );
  }

  /**
   * Closes a fake fd.
   *
   * @param fd The fd.
   * @throws {SyscallError} EBADF.
   */
  close(fd: number): void {
    this.#run({ syscall: "close", fd }, ["close"], (e) => new SyscallError("close", e), () => {
      this.#entry(fd);
      this.#fds.delete(fd);
    });
  }

  /**
   * A pointer ioctl.
   *
   * @param fd The fd.
   * @param request The request.
   * @param arg The struct.
   * @returns The return value.
   * @throws {IoctlError} With KVM's errno.
   */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number {
    return this.#run(
      { syscall: "ioctl", name: request.name, fd },
      [request.name],
      (e) => new IoctlError(request.name, e),
      () => this.#dispatch(this.#entry(fd), request.code, arg, 0n),
    );
  }

  /**
   * A value ioctl.
   *
   * @param fd The fd.
   * @param request The request.
   * @param value The argument.
   * @returns The return value.
   * @throws {IoctlError} With KVM's errno.
   */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number {
    return this.#run(
      { syscall: "ioctl", name: request.name, fd },
      [request.name],
      (e) => new IoctlError(request.name, e),
      () => this.#dispatch(this.#entry(fd), request.code, undefined, value),
    );
  }

  /**
   * Maps memory: a vCPU's `kvm_run` (offset 0) or dirty ring (offset
   * `KVM_DIRTY_LOG_PAGE_OFFSET` pages), or anonymous memory; all real.
   *
   * @param length Bytes.
   * @param prot Protection.
   * @param flags Flags.
   * @param fd A vCPU fd, or -1.
   * @param offset The offset.
   * @returns The address.
   * @throws {SyscallError} EINVAL for a wrong size or offset, ENODEV for other fds.
   */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    return this.#run({ syscall: "mmap", fd }, ["mmap"], (e) => new SyscallError("mmap", e), () => {
      if (fd !== -1) {
        const e = this.#entry(fd);
        if (e.kind !== "vcpu") fail(ENODEV);
        const ringOffset = BigInt(K.KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
        if (offset === 0n) {
          if (length > BigInt(this.#mmapSize())) fail(EINVAL);
        } else if (offset === ringOffset) {
          if (e.vm.state.ringBytes === 0 || length > BigInt(e.vm.state.ringBytes)) fail(EINVAL);
        } else {
          fail(EINVAL);
        }
        const addr = this.#anon(length);
        if (offset === 0n) e.vcpu.run = { addr, bytes: Number(length) };
        else {e.vcpu.ring = {
            addr,
            entries: e.vm.state.ringBytes / 16,
            dirtyIndex: 0,
            resetIndex: 0,
          };}
        return addr;
      }
      return this.#anon(length, prot, flags);
    });
  }

  #anon(length: bigint, prot = 3, flags = 0x22): bigint {
    const addr = this.#libc.mmap(length, prot, (flags & ~0x01) | 0x22, -1, 0n);
    this.#maps.set(addr, length);
    return addr;
  }

  /**
   * Unmaps a mapping made by {@linkcode FakeKvm.mmap}.
   *
   * @param addr The address.
   * @param length Bytes.
   * @throws {SyscallError} EINVAL for anything else.
   */
  munmap(addr: bigint, length: bigint): void {
    this.#run({ syscall: "munmap" }, ["munmap"], (e) => new SyscallError("munmap", e), () => {
      if (this.#maps.get(addr) !== length) fail(EINVAL);
      this.#maps.delete(addr);
      this.#libc.munmap(addr, length);
    });
  }

  #mmapSize(): number {
    return 3 * 4096;
  }

  #cap(cap: number): number {
    return this.#opts.caps[cap] ?? 0;
  }

  #dispatch(e: FdEntry, code: bigint, arg: Uint8Array | undefined, value: bigint): number {
    const buf = () => arg ?? fail(EINVAL);
    const view = () => new DataView(buf().buffer, buf().byteOffset, buf().byteLength);
    const kind: Kind = e.kind;
    if (code === I.KVM_CHECK_EXTENSION.code) return this.#cap(Number(value));
    if (kind === "system") {
      switch (code) {
        case I.KVM_GET_API_VERSION.code:
          return this.#opts.apiVersion;
        case I.KVM_CREATE_VM.code: {
          if (value !== 0n) fail(EINVAL);
          return this.#newFd({ kind: "vm", state: new FakeVmState(), vcpus: new Map() });
        }
        case I.KVM_GET_VCPU_MMAP_SIZE.code:
          return this.#mmapSize();
        case I.KVM_GET_MSR_INDEX_LIST.code: {
          const v = view();
          const want = this.#opts.msrIndices.length;
          const cap = v.getUint32(0, true);
          v.setUint32(0, want, true);
          if (cap < want) fail(E2BIG);
          this.#opts.msrIndices.forEach((m, i) => v.setUint32(4 + i * 4, m, true));
          return 0;
        }
        case I.KVM_GET_SUPPORTED_CPUID.code:
          return this.#putCpuid(buf(), this.#opts.cpuid);
      }
      fail(ENOTTY);
    }
    if (e.kind === "vm") return this.#vmIoctl(e, code, arg, value);
    return this.#vcpuIoctl(e as VcpuFd, code, arg, value);
  }

  #putCpuid(b: Uint8Array, entries: readonly CpuidEntry[]): number {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const cap = v.getUint32(0, true);
    if (cap < entries.length || b.byteLength < 8 + entries.length * 40) fail(E2BIG);
    b.set(encodeCpuid2(entries));
    return 0;
  }

  #vmIoctl(e: VmFd, code: bigint, arg: Uint8Array | undefined, value: bigint): number {
    const s = e.state;
    const b = () => arg ?? fail(EINVAL);
    switch (code) {
      case I.KVM_SET_TSS_ADDR.code:
        s.tssAddress = value;
        return 0;
      case I.KVM_CREATE_IRQCHIP.code:
        if (s.irqchip || e.vcpus.size > 0) fail(EEXIST);
        s.irqchip = true;
        return 0;
      case I.KVM_SET_USER_MEMORY_REGION.code:
        s.setSlot(decodeUserMemoryRegion(b()), this.#opts.maxSlots);
        return 0;
      case I.KVM_CREATE_VCPU.code: {
        const id = Number(value);
        if (id >= this.#cap(K.KVM_CAP_MAX_VCPUS)) fail(EINVAL);
        if (e.vcpus.has(id)) fail(EEXIST);
        const vcpu = new FakeVcpu(
          id,
          s,
          this.#opts.msrIndices.filter((m) => !this.#opts.unreadableMsrs.includes(m)),
        );
        e.vcpus.set(id, vcpu);
        return this.#newFd({ kind: "vcpu", vm: e, vcpu });
      }
      case I.KVM_ENABLE_CAP.code: {
        const v = new DataView(b().buffer, b().byteOffset, 104);
        const cap = v.getUint32(0, true);
        const a0 = v.getBigUint64(8, true);
        if (cap === K.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) {
          if ((a0 & ~BigInt(this.#cap(cap))) !== 0n || this.#cap(cap) === 0) fail(EINVAL);
          s.manualProtect = Number(a0);
          return 0;
        }
        if (cap === K.KVM_CAP_DIRTY_LOG_RING || cap === K.KVM_CAP_DIRTY_LOG_RING_ACQ_REL) {
          const size = Number(a0);
          if (this.#cap(cap) === 0) fail(EINVAL);
          if (size === 0 || (size & (size - 1)) !== 0 || size < 4096) fail(EINVAL);
          if (size > this.#cap(cap)) fail(E2BIG);
          if (s.ringBytes !== 0 || e.vcpus.size > 0) fail(EINVAL);
          s.ringBytes = size;
          s.ringAcqRel = cap === K.KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
          return 0;
        }
        fail(EINVAL);
        break;
      }
      case I.KVM_GET_DIRTY_LOG.code: {
        const v = new DataView(b().buffer, b().byteOffset, 16);
        s.getDirtyLog(v.getUint32(0, true), v.getBigUint64(8, true));
        return 0;
      }
      case I.KVM_CLEAR_DIRTY_LOG.code: {
        const v = new DataView(b().buffer, b().byteOffset, 24);
        s.clearDirtyLog({
          slot: v.getUint32(0, true),
          numPages: v.getUint32(4, true),
          firstPage: v.getBigUint64(8, true),
          bitmap: v.getBigUint64(16, true),
        });
        return 0;
      }
      case I.KVM_RESET_DIRTY_RINGS.code: {
        if (s.ringBytes === 0) fail(ENXIO);
        let n = 0;
        for (const vcpu of e.vcpus.values()) if (vcpu.ring) n += s.resetRing(vcpu.ring);
        return n;
      }
      case I.KVM_GET_CLOCK.code: {
        const now = s.clock.value + BigInt(Math.round((performance.now() - s.clock.setAt) * 1e6));
        b().set(
          encodeClockData({ clock: now, flags: K.KVM_CLOCK_TSC_STABLE, realtime: 0n, hostTsc: 0n }),
        );
        return 0;
      }
      case I.KVM_SET_CLOCK.code: {
        const c = decodeClockData(b());
        if ((c.flags & ~K.KVM_CLOCK_REALTIME) !== 0) fail(EINVAL);
        s.clock = { value: c.clock, setAt: performance.now() };
        return 0;
      }
    }
    fail(ENOTTY);
  }

  #vcpuIoctl(e: VcpuFd, code: bigint, arg: Uint8Array | undefined, value: bigint): number {
    const v = e.vcpu;
    const b = () => arg ?? fail(EINVAL);
    const get = (src: Uint8Array) => {
      b().set(src.subarray(0, b().byteLength));
      return 0;
    };
    const set = (size: number, store: (x: Uint8Array) => void) => {
      if (b().byteLength < size) fail(EINVAL);
      store(b().slice(0, size));
      return 0;
    };
    switch (code) {
      case I.KVM_RUN.code:
        return v.kvmRun();
      case I.KVM_GET_REGS.code:
        return get(v.regs);
      case I.KVM_SET_REGS.code:
        return set(144, (x) => v.regs = x);
      case I.KVM_GET_SREGS.code:
        return get(v.sregs);
      case I.KVM_SET_SREGS.code:
        return set(312, (x) => v.sregs = x);
      case I.KVM_GET_FPU.code:
        return get(v.fpu);
      case I.KVM_SET_FPU.code:
        return set(416, (x) => v.fpu = x);
      case I.KVM_GET_XSAVE.code:
      case I.KVM_GET_XSAVE2.code:
        return get(v.xsave);
      case I.KVM_SET_XSAVE.code:
        return set(4096, (x) => v.xsave = x);
      case I.KVM_GET_XCRS.code:
        return get(v.xcrs);
      case I.KVM_SET_XCRS.code:
        return set(392, (x) => v.xcrs = x);
      case I.KVM_GET_LAPIC.code:
        v.checkLapic();
        return get(v.lapic);
      case I.KVM_SET_LAPIC.code:
        v.checkLapic();
        return set(1024, (x) => v.lapic = x);
      case I.KVM_GET_VCPU_EVENTS.code:
        return get(v.events);
      case I.KVM_SET_VCPU_EVENTS.code:
        return set(64, (x) => v.events = x);
      case I.KVM_GET_DEBUGREGS.code:
        return get(v.debugregs);
      case I.KVM_SET_DEBUGREGS.code:
        return set(128, (x) => v.debugregs = x);
      case I.KVM_GET_MP_STATE.code:
        new DataView(b().buffer, b().byteOffset, 4).setUint32(0, v.mpState, true);
        return 0;
      case I.KVM_SET_MP_STATE.code: {
        const mp = new DataView(b().buffer, b().byteOffset, 4).getUint32(0, true);
        if (mp > 9) fail(EINVAL);
        v.mpState = mp;
        return 0;
      }
      case I.KVM_GET_TSC_KHZ.code:
        return v.tscKhz;
      case I.KVM_SET_TSC_KHZ.code:
        if (value === 0n) fail(EINVAL);
        v.tscKhz = Number(value);
        return 0;
      case I.KVM_SET_CPUID2.code:
        v.cpuid = decodeCpuid2(b());
        return 0;
      case I.KVM_GET_CPUID2.code:
        return this.#putCpuid(b(), v.cpuid);
      case I.KVM_SET_SIGNAL_MASK.code: {
        const len = new DataView(b().buffer, b().byteOffset, 4).getUint32(0, true);
        if (len !== 8) fail(EINVAL);
        v.sigmaskSet = true;
        return 0;
      }
      case I.KVM_GET_MSRS.code: {
        const entries = decodeMsrs(b());
        const n = v.getMsrs(entries);
        const dv = new DataView(b().buffer, b().byteOffset, b().byteLength);
        entries.slice(0, n).forEach((m, i) =>
          dv.setBigUint64(KVM_MSRS_SIZE + i * 16 + 8, m.data, true)
        );
        return n;
      }
      case I.KVM_SET_MSRS.code:
        return v.setMsrs(decodeMsrs(b()), (i) => !this.#opts.unwritableMsrs.includes(i));
    }
    fail(ENOTTY);
  }
}
