/**
 * Sizes of the vCPU state structs the VMM saves as opaque bytes
 * (`struct kvm_fpu`, `kvm_xsave`, `kvm_xcrs`, `kvm_lapic_state`,
 * `kvm_vcpu_events`, `kvm_debugregs`, `kvm_mp_state`), and codecs for
 * `struct kvm_clock_data` and `struct kvm_signal_mask`.
 *
 * @module
 */

/** `sizeof(struct kvm_fpu)`. */
export const KVM_FPU_SIZE = 416;
/** `sizeof(struct kvm_xsave)` (the fixed part; `KVM_CAP_XSAVE2` may ask for more). */
export const KVM_XSAVE_SIZE = 4096;
/** `sizeof(struct kvm_xcrs)`. */
export const KVM_XCRS_SIZE = 392;
/** `sizeof(struct kvm_lapic_state)`. */
export const KVM_LAPIC_STATE_SIZE = 1024;
/** `sizeof(struct kvm_vcpu_events)`. */
export const KVM_VCPU_EVENTS_SIZE = 64;
/** `sizeof(struct kvm_debugregs)`. */
export const KVM_DEBUGREGS_SIZE = 128;
/** `sizeof(struct kvm_mp_state)`. */
export const KVM_MP_STATE_SIZE = 4;
/** `sizeof(struct kvm_clock_data)`. */
export const KVM_CLOCK_DATA_SIZE = 48;
/** `sizeof(struct kvm_signal_mask)` without the set. */
export const KVM_SIGNAL_MASK_SIZE = 4;
/** The kernel's `sigset_t` on x86_64: 64 signals, 8 bytes. */
export const KERNEL_SIGSET_SIZE = 8;

/** `struct kvm_clock_data`: the guest's kvmclock. */
export interface ClockData {
  /** The kvmclock value, in nanoseconds. */
  clock: bigint;
  /** `KVM_CLOCK_*` flags. */
  flags: number;
  /** `CLOCK_REALTIME` when read (with `KVM_CLOCK_REALTIME`). */
  realtime: bigint;
  /** The host TSC when read (with `KVM_CLOCK_HOST_TSC`). */
  hostTsc: bigint;
}

/**
 * Encodes `struct kvm_clock_data`.
 *
 * @param c The clock.
 * @returns 48 bytes.
 *
 * @example
 * ```ts
 * import { decodeClockData, encodeClockData } from "./state.ts";
 * const c = { clock: 123n, flags: 2, realtime: 0n, hostTsc: 0n };
 * console.log(decodeClockData(encodeClockData(c)).clock); // 123n
 * ```
 */
export function encodeClockData(c: ClockData): Uint8Array {
  const b = new Uint8Array(KVM_CLOCK_DATA_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, c.clock, true);
  v.setUint32(8, c.flags, true);
  v.setBigUint64(16, c.realtime, true);
  v.setBigUint64(24, c.hostTsc, true);
  return b;
}

/**
 * Decodes `struct kvm_clock_data`.
 *
 * @param b 48 bytes.
 * @returns The clock.
 */
export function decodeClockData(b: Uint8Array): ClockData {
  const v = new DataView(b.buffer, b.byteOffset, KVM_CLOCK_DATA_SIZE);
  return {
    clock: v.getBigUint64(0, true),
    flags: v.getUint32(8, true),
    realtime: v.getBigUint64(16, true),
    hostTsc: v.getBigUint64(24, true),
  };
}

/**
 * Encodes `struct kvm_signal_mask` with an 8-byte kernel sigset in which the
 * given signals are blocked during `KVM_RUN`.
 *
 * @param blocked Signal numbers (1 to 64) blocked while the guest runs.
 * @returns 12 bytes: `len` = 8, then the set.
 * @throws {RangeError} For a signal outside 1..64.
 *
 * @example Let every signal interrupt KVM_RUN
 * ```ts
 * import { encodeSignalMask } from "./state.ts";
 * console.log(encodeSignalMask([]).byteLength); // 12
 * ```
 */
export function encodeSignalMask(blocked: readonly number[]): Uint8Array {
  const b = new Uint8Array(KVM_SIGNAL_MASK_SIZE + KERNEL_SIGSET_SIZE);
  new DataView(b.buffer).setUint32(0, KERNEL_SIGSET_SIZE, true);
  for (const sig of blocked) {
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) {
      throw new RangeError(`Cannot put signal ${sig} in a kernel sigset`);
    }
    b[KVM_SIGNAL_MASK_SIZE + ((sig - 1) >> 3)] |= 1 << ((sig - 1) & 7);
  }
  return b;
}
