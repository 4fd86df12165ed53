/**
 * A vCPU's complete state, as Firecracker and Cloud Hypervisor save it for
 * snapshots and migration: registers, special registers, FPU/XSAVE, XCRs,
 * debug registers, the MSRs of KVM's index list, the local APIC, pending
 * events, the MP state, CPUID and the TSC frequency. Restored in the order
 * their ioctls depend on.
 *
 * @module
 */

import { IoctlError } from "../sys/errors.ts";
import { KvmStateError } from "./errors.ts";
import type { KvmSyscalls } from "./syscalls.ts";
import {
  type CpuidEntry,
  decodeMsrs,
  encodeCpuid2,
  encodeMsrs,
  type MsrEntry,
} from "./uapi/cpu.ts";
import { decodeCpuid2 } from "./uapi/cpu.ts";
import {
  KVM_GET_CPUID2,
  KVM_GET_DEBUGREGS,
  KVM_GET_FPU,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_GET_MSRS,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_TSC_KHZ,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_GET_XSAVE2,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_FPU,
  KVM_SET_LAPIC,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_TSC_KHZ,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
} from "./uapi/ioctls.ts";
import { KVM_REGS_SIZE, KVM_SREGS_SIZE } from "./uapi/regs.ts";
import {
  KVM_DEBUGREGS_SIZE,
  KVM_FPU_SIZE,
  KVM_LAPIC_STATE_SIZE,
  KVM_MP_STATE_SIZE,
  KVM_VCPU_EVENTS_SIZE,
  KVM_XCRS_SIZE,
  KVM_XSAVE_SIZE,
} from "./uapi/state.ts";
import { KVM_MAX_CPUID_ENTRIES } from "./uapi/constants.ts";

/**
 * Everything KVM holds for one vCPU. Struct-valued pieces are the kernel's
 * bytes (`struct kvm_regs`, `kvm_sregs`, ...), kept whole so nothing is lost
 * between kernels of the same ABI.
 */
export interface VcpuState {
  /** The vCPU id. */
  id: number;
  /** `struct kvm_regs`. */
  regs: Uint8Array;
  /** `struct kvm_sregs`. */
  sregs: Uint8Array;
  /** `struct kvm_xsave` (`KVM_CAP_XSAVE2` bytes), when the host has XSAVE. */
  xsave?: Uint8Array;
  /** `struct kvm_fpu`, when the host has no XSAVE. */
  fpu?: Uint8Array;
  /** `struct kvm_xcrs`, with `KVM_CAP_XCRS`. */
  xcrs?: Uint8Array;
  /** `struct kvm_debugregs`. */
  debugregs: Uint8Array;
  /** `struct kvm_lapic_state`, with an in-kernel irqchip. */
  lapic?: Uint8Array;
  /** `struct kvm_vcpu_events`. */
  events: Uint8Array;
  /** `kvm_mp_state.mp_state`. */
  mpState: number;
  /** The MSRs of `KVM_GET_MSR_INDEX_LIST` that the vCPU could read. */
  msrs: MsrEntry[];
  /** `KVM_GET_CPUID2`. */
  cpuid: CpuidEntry[];
  /** `KVM_GET_TSC_KHZ` (0 when unknown). */
  tscKhz: number;
}

/** What state handling needs to know about the VM. */
export interface VcpuStateContext {
  /** The MSR indices to save (KVM's index list). */
  msrIndices: readonly number[];
  /** `KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2)` on the VM: the XSAVE size, or 0 without XSAVE2. */
  xsave2Size: number;
  /** Whether the host has `KVM_CAP_XSAVE`. */
  xsave: boolean;
  /** Whether the host has `KVM_CAP_XCRS`. */
  xcrs: boolean;
  /** Whether the VM has an in-kernel local APIC. */
  lapic: boolean;
}

function get(sys: KvmSyscalls, fd: number, req: typeof KVM_GET_REGS, size: number): Uint8Array {
  const buf = new Uint8Array(size);
  sys.ioctl(fd, req, buf);
  return buf;
}

/**
 * Reads the MSRs in `indices` that the vCPU can read: `KVM_GET_MSRS` stops at
 * the first one it cannot, so that one is dropped and the rest asked again.
 *
 * @param sys The syscall boundary.
 * @param fd The vCPU fd.
 * @param indices MSR indices.
 * @returns The readable MSRs and the indices that were not.
 * @throws {IoctlError} When `KVM_GET_MSRS` fails.
 */
export function readMsrs(
  sys: KvmSyscalls,
  fd: number,
  indices: readonly number[],
): { msrs: MsrEntry[]; unreadable: number[] } {
  const msrs: MsrEntry[] = [];
  const unreadable: number[] = [];
  let rest = [...indices];
  while (rest.length > 0) {
    const buf = encodeMsrs(rest.map((index) => ({ index, data: 0n })));
    const n = sys.ioctl(fd, KVM_GET_MSRS, buf);
    msrs.push(...decodeMsrs(buf, { count: n }));
    if (n < rest.length) unreadable.push(rest[n]);
    rest = rest.slice(n + 1);
  }
  return { msrs, unreadable };
}

/**
 * Saves a vCPU's state. The vCPU must not be running (paused, or never run):
 * `KVM_GET_MP_STATE` goes first, since it also settles pending APIC events.
 *
 * @param sys The syscall boundary.
 * @param fd The vCPU fd.
 * @param options The vCPU id and the VM's context.
 * @returns The state.
 * @throws {IoctlError} Naming the ioctl that failed.
 */
export function saveVcpuState(
  sys: KvmSyscalls,
  fd: number,
  options: { id: number; context: VcpuStateContext },
): VcpuState {
  const ctx = options.context;
  const mp = get(sys, fd, KVM_GET_MP_STATE, KVM_MP_STATE_SIZE);
  const regs = get(sys, fd, KVM_GET_REGS, KVM_REGS_SIZE);
  const sregs = get(sys, fd, KVM_GET_SREGS, KVM_SREGS_SIZE);
  const state: VcpuState = {
    id: options.id,
    regs,
    sregs,
    debugregs: new Uint8Array(0),
    events: new Uint8Array(0),
    mpState: new DataView(mp.buffer).getUint32(0, true),
    msrs: [],
    cpuid: [],
    tscKhz: 0,
  };
  if (ctx.xsave2Size > KVM_XSAVE_SIZE) {
    state.xsave = get(sys, fd, KVM_GET_XSAVE2, ctx.xsave2Size);
  } else if (ctx.xsave) {
    state.xsave = get(sys, fd, KVM_GET_XSAVE, KVM_XSAVE_SIZE);
  } else {
    state.fpu = get(sys, fd, KVM_GET_FPU, KVM_FPU_SIZE);
  }
  if (ctx.xcrs) state.xcrs = get(sys, fd, KVM_GET_XCRS, KVM_XCRS_SIZE);
  state.debugregs = get(sys, fd, KVM_GET_DEBUGREGS, KVM_DEBUGREGS_SIZE);
  if (ctx.lapic) state.lapic = get(sys, fd, KVM_GET_LAPIC, KVM_LAPIC_STATE_SIZE);
  state.msrs = readMsrs(sys, fd, ctx.msrIndices).msrs;
  state.events = get(sys, fd, KVM_GET_VCPU_EVENTS, KVM_VCPU_EVENTS_SIZE);
  const cpuid = encodeCpuid2([], { capacity: KVM_MAX_CPUID_ENTRIES });
  sys.ioctl(fd, KVM_GET_CPUID2, cpuid);
  state.cpuid = decodeCpuid2(cpuid);
  try {
    state.tscKhz = sys.ioctlValue(fd, KVM_GET_TSC_KHZ, 0n);
  } catch (e) {
    if (!(e instanceof IoctlError)) throw e;
  }
  return state;
}

function set(
  sys: KvmSyscalls,
  fd: number,
  req: typeof KVM_SET_REGS,
  bytes: Uint8Array,
  size: number,
): void {
  if (bytes.byteLength < size) {
    throw new KvmStateError(`Cannot apply ${req.name}: ${bytes.byteLength} bytes, need ${size}`);
  }
  sys.ioctl(fd, req, bytes.slice());
}

/**
 * Restores a vCPU's state, in the order the ioctls depend on (as Firecracker
 * does): CPUID, MP state, registers, special registers (before the LAPIC:
 * they carry the APIC base), XSAVE or FPU, XCRs, debug registers, LAPIC (before
 * the MSRs: the TSC deadline needs it), MSRs, and events last (`KVM_SET_REGS`
 * clears pending exceptions). The TSC frequency is set first when it differs.
 *
 * @param sys The syscall boundary.
 * @param fd The vCPU fd (of a vCPU that has not run since it was made, or paused).
 * @param state The state.
 * @throws {KvmStateError} When a piece is missing for this VM or an MSR is refused.
 * @throws {IoctlError} Naming the ioctl that failed.
 */
export function restoreVcpuState(sys: KvmSyscalls, fd: number, state: VcpuState): void {
  if (state.tscKhz > 0) {
    let current = 0;
    try {
      current = sys.ioctlValue(fd, KVM_GET_TSC_KHZ, 0n);
    } catch (e) {
      if (!(e instanceof IoctlError)) throw e;
    }
    if (current !== state.tscKhz) sys.ioctlValue(fd, KVM_SET_TSC_KHZ, BigInt(state.tscKhz));
  }
  if (state.cpuid.length > 0) sys.ioctl(fd, KVM_SET_CPUID2, encodeCpuid2(state.cpuid));
  const mp = new Uint8Array(KVM_MP_STATE_SIZE);
  new DataView(mp.buffer).setUint32(0, state.mpState, true);
  sys.ioctl(fd, KVM_SET_MP_STATE, mp);
  set(sys, fd, KVM_SET_REGS, state.regs, KVM_REGS_SIZE);
  set(sys, fd, KVM_SET_SREGS, state.sregs, KVM_SREGS_SIZE);
  if (state.xsave !== undefined) {
    set(sys, fd, KVM_SET_XSAVE, state.xsave, KVM_XSAVE_SIZE);
  } else if (state.fpu !== undefined) {
    set(sys, fd, KVM_SET_FPU, state.fpu, KVM_FPU_SIZE);
  }
  if (state.xcrs !== undefined) set(sys, fd, KVM_SET_XCRS, state.xcrs, KVM_XCRS_SIZE);
  set(sys, fd, KVM_SET_DEBUGREGS, state.debugregs, KVM_DEBUGREGS_SIZE);
  if (state.lapic !== undefined) set(sys, fd, KVM_SET_LAPIC, state.lapic, KVM_LAPIC_STATE_SIZE);
  if (state.msrs.length > 0) {
    const n = sys.ioctl(fd, KVM_SET_MSRS, encodeMsrs(state.msrs));
    if (n < state.msrs.length) {
      const msr = state.msrs[n];
      throw new KvmStateError(
        `Cannot restore MSR 0x${msr.index.toString(16)} (= 0x${msr.data.toString(16)}): ` +
          `KVM_SET_MSRS set ${n} of ${state.msrs.length}`,
      );
    }
  }
  set(sys, fd, KVM_SET_VCPU_EVENTS, state.events, KVM_VCPU_EVENTS_SIZE);
}
