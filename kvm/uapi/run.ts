/**
 * `struct kvm_run`, the page a vCPU fd maps at offset 0: the exit the last
 * `KVM_RUN` returned with, and where the VMM answers it. Pure functions over a
 * `DataView` of the page.
 *
 * @module
 */

import {
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
} from "./constants.ts";

/** `kvm_run.immediate_exit` (u8). */
export const RUN_IMMEDIATE_EXIT = 1;
/** `kvm_run.exit_reason` (u32). */
export const RUN_EXIT_REASON = 8;
/** `kvm_run.flags` (u16). */
export const RUN_FLAGS = 14;
/** `kvm_run.cr8` (u64). */
export const RUN_CR8 = 16;
/** `kvm_run.apic_base` (u64). */
export const RUN_APIC_BASE = 24;
/** The exit union's offset in `kvm_run`. */
export const RUN_EXIT_UNION = 32;
/** `kvm_run.kvm_valid_regs` (u64), after the 256-byte union. */
export const RUN_VALID_REGS = 288;
/** `sizeof(struct kvm_run)` on x86_64. */
export const KVM_RUN_SIZE = 2352;

/** Names of the exit reasons this project decodes, by number. */
export const EXIT_REASON_NAMES: Readonly<Record<number, string>> = Object.freeze({
  0: "KVM_EXIT_UNKNOWN",
  1: "KVM_EXIT_EXCEPTION",
  2: "KVM_EXIT_IO",
  3: "KVM_EXIT_HYPERCALL",
  4: "KVM_EXIT_DEBUG",
  5: "KVM_EXIT_HLT",
  6: "KVM_EXIT_MMIO",
  7: "KVM_EXIT_IRQ_WINDOW_OPEN",
  8: "KVM_EXIT_SHUTDOWN",
  9: "KVM_EXIT_FAIL_ENTRY",
  10: "KVM_EXIT_INTR",
  17: "KVM_EXIT_INTERNAL_ERROR",
  24: "KVM_EXIT_SYSTEM_EVENT",
  31: "KVM_EXIT_DIRTY_RING_FULL",
});

/**
 * Names an exit reason.
 *
 * @param reason `kvm_run.exit_reason`.
 * @returns `KVM_EXIT_*`, or `exit reason N` for one not listed.
 *
 * @example
 * ```ts
 * import { exitReasonName } from "./run.ts";
 * console.log(exitReasonName(2)); // "KVM_EXIT_IO"
 * ```
 */
export function exitReasonName(reason: number): string {
  return EXIT_REASON_NAMES[reason] ?? `exit reason ${reason}`;
}

/** A port I/O exit (`KVM_EXIT_IO`): `count` accesses of `size` bytes at `dataOffset`. */
export interface IoExit {
  /** `"io"`. */
  readonly kind: "io";
  /** `KVM_EXIT_IO`. */
  readonly reason: number;
  /** `in` (the VMM supplies the data) or `out`. */
  readonly direction: "in" | "out";
  /** Bytes per access: 1, 2 or 4. */
  readonly size: number;
  /** The port. */
  readonly port: number;
  /** Accesses (more than 1 for `rep ins`/`rep outs`). */
  readonly count: number;
  /** Where the data sits, from the start of `kvm_run`. */
  readonly dataOffset: number;
}

/** An MMIO exit (`KVM_EXIT_MMIO`). */
export interface MmioExit {
  /** `"mmio"`. */
  readonly kind: "mmio";
  /** `KVM_EXIT_MMIO`. */
  readonly reason: number;
  /** The guest-physical address. */
  readonly gpa: bigint;
  /** Bytes, 1 to 8. */
  readonly length: number;
  /** Whether the guest writes. */
  readonly isWrite: boolean;
  /** The value written, little-endian (0 for a read). */
  readonly data: bigint;
}

/** `KVM_EXIT_FAIL_ENTRY`: the hardware refused to enter the guest. */
export interface FailEntryExit {
  /** `"fail-entry"`. */
  readonly kind: "fail-entry";
  /** `KVM_EXIT_FAIL_ENTRY`. */
  readonly reason: number;
  /** `hardware_entry_failure_reason` (VMX exit reason, or SVM's `SVM_EXIT_ERR`). */
  readonly hardwareEntryFailureReason: bigint;
  /** The host CPU. */
  readonly cpu: number;
}

/** `KVM_EXIT_INTERNAL_ERROR`: KVM could not go on (an instruction it cannot emulate). */
export interface InternalErrorExit {
  /** `"internal-error"`. */
  readonly kind: "internal-error";
  /** `KVM_EXIT_INTERNAL_ERROR`. */
  readonly reason: number;
  /** `KVM_INTERNAL_ERROR_*`. */
  readonly suberror: number;
  /** `internal.data[0..ndata]`. */
  readonly data: readonly bigint[];
}

/** `KVM_EXIT_SYSTEM_EVENT`: shutdown, reset or crash requested by the guest. */
export interface SystemEventExit {
  /** `"system-event"`. */
  readonly kind: "system-event";
  /** `KVM_EXIT_SYSTEM_EVENT`. */
  readonly reason: number;
  /** `KVM_SYSTEM_EVENT_*`. */
  readonly type: number;
  /** `system_event.data[0..ndata]`. */
  readonly data: readonly bigint[];
}

/** An exit without further fields: HLT, SHUTDOWN, DIRTY_RING_FULL, or one not decoded. */
export interface SimpleExit {
  /** What happened. */
  readonly kind: "hlt" | "shutdown" | "dirty-ring-full" | "other";
  /** `kvm_run.exit_reason`. */
  readonly reason: number;
}

/** A decoded `kvm_run` exit. */
export type VcpuExit =
  | IoExit
  | MmioExit
  | FailEntryExit
  | InternalErrorExit
  | SystemEventExit
  | SimpleExit;

function dataWords(v: DataView, at: number, n: number): bigint[] {
  const words: bigint[] = [];
  for (let i = 0; i < Math.min(n, 16); i++) words.push(v.getBigUint64(at + 8 + i * 8, true));
  return words;
}

/**
 * Decodes the exit in a `kvm_run` page.
 *
 * @param run A view of at least {@linkcode KVM_RUN_SIZE} bytes of the page.
 * @returns The exit.
 * @throws {RangeError} If the view is shorter than `struct kvm_run`.
 *
 * @example Decode an OUT to COM1
 * ```ts
 * import { decodeExit } from "./run.ts";
 * const page = new DataView(new ArrayBuffer(4096));
 * page.setUint32(8, 2, true); // KVM_EXIT_IO
 * page.setUint8(32, 1); // out
 * page.setUint8(33, 1);
 * page.setUint16(34, 0x3f8, true);
 * page.setUint32(36, 1, true);
 * page.setBigUint64(40, 4096n - 8n, true);
 * console.log(decodeExit(page)); // { kind: "io", direction: "out", port: 1016, ... }
 * ```
 */
export function decodeExit(run: DataView): VcpuExit {
  if (run.byteLength < KVM_RUN_SIZE) {
    throw new RangeError(`Cannot decode kvm_run from ${run.byteLength} bytes`);
  }
  const reason = run.getUint32(RUN_EXIT_REASON, true);
  const u = RUN_EXIT_UNION;
  switch (reason) {
    case KVM_EXIT_IO:
      return {
        kind: "io",
        reason,
        direction: run.getUint8(u) === KVM_EXIT_IO_OUT ? "out" : "in",
        size: run.getUint8(u + 1),
        port: run.getUint16(u + 2, true),
        count: run.getUint32(u + 4, true),
        dataOffset: Number(run.getBigUint64(u + 8, true)),
      };
    case KVM_EXIT_MMIO:
      return {
        kind: "mmio",
        reason,
        gpa: run.getBigUint64(u, true),
        data: run.getBigUint64(u + 8, true),
        length: run.getUint32(u + 16, true),
        isWrite: run.getUint8(u + 20) !== 0,
      };
    case KVM_EXIT_FAIL_ENTRY:
      return {
        kind: "fail-entry",
        reason,
        hardwareEntryFailureReason: run.getBigUint64(u, true),
        cpu: run.getUint32(u + 8, true),
      };
    case KVM_EXIT_INTERNAL_ERROR:
      return {
        kind: "internal-error",
        reason,
        suberror: run.getUint32(u, true),
        data: dataWords(run, u, run.getUint32(u + 4, true)),
      };
    case KVM_EXIT_SYSTEM_EVENT:
      return {
        kind: "system-event",
        reason,
        type: run.getUint32(u, true),
        data: dataWords(run, u, run.getUint32(u + 4, true)),
      };
    case KVM_EXIT_HLT:
      return { kind: "hlt", reason };
    case KVM_EXIT_SHUTDOWN:
      return { kind: "shutdown", reason };
    case KVM_EXIT_DIRTY_RING_FULL:
      return { kind: "dirty-ring-full", reason };
    default:
      return { kind: "other", reason };
  }
}

/**
 * Stores the data of an MMIO read into `kvm_run.mmio.data` (little-endian),
 * for the next `KVM_RUN` to complete the guest's load.
 *
 * @param run A view of the page.
 * @param value The value read.
 *
 * @example
 * ```ts
 * import { setMmioData } from "./run.ts";
 * const page = new DataView(new ArrayBuffer(4096));
 * setMmioData(page, 0x1234n);
 * console.log(page.getUint16(40, true)); // 4660
 * ```
 */
export function setMmioData(run: DataView, value: bigint): void {
  run.setBigUint64(RUN_EXIT_UNION + 8, BigInt.asUintN(64, value), true);
}
