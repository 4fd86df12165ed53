/**
 * Errors `kvm/` raises for conditions callers are meant to catch. Failed
 * ioctls are `IoctlError`s (from `sys/`), wrapped as `cause` where a domain
 * error says more.
 *
 * @module
 */

import type { VcpuExit } from "./uapi/run.ts";
import { exitReasonName } from "./uapi/run.ts";

/** Why `/dev/kvm` cannot be used. */
export type KvmUnavailableReason = "missing" | "denied" | "no-module" | "api-version";

/**
 * KVM cannot be used here: `/dev/kvm` is missing or not permitted, or speaks
 * another API. The message is one line naming what to grant and where the
 * KVM tests run instead (the real-kernel harness).
 *
 * @example Tell the user what is missing
 * ```ts ignore
 * import { Kvm, KvmUnavailableError } from "./mod.ts";
 * try {
 *   using kvm = Kvm.open();
 * } catch (e) {
 *   if (e instanceof KvmUnavailableError) console.error(e.message);
 * }
 * ```
 */
export class KvmUnavailableError extends Error {
  /** The device path. */
  readonly path: string;
  /** What is wrong. */
  readonly reason: KvmUnavailableReason;

  /**
   * Creates the error.
   *
   * @param path The device path.
   * @param reason What is wrong.
   * @param options `detail`: what was seen; `cause`: the lower error.
   */
  constructor(
    path: string,
    reason: KvmUnavailableReason,
    options: { detail?: string; cause?: unknown } = {},
  ) {
    super(kvmUnavailableMessage(path, reason, options.detail), { cause: options.cause });
    this.name = "KvmUnavailableError";
    this.path = path;
    this.reason = reason;
  }
}

const HARNESS = "or run the KVM tests in the QEMU guest with `deno task test:kernel`";

function kvmUnavailableMessage(
  path: string,
  reason: KvmUnavailableReason,
  detail: string | undefined,
): string {
  const seen = detail === undefined ? "" : ` (${detail})`;
  switch (reason) {
    case "missing":
      return `Cannot use KVM: ${path} does not exist${seen}; load the module ` +
        `(sudo modprobe kvm_amd, or kvm_intel on Intel) on a host with hardware virtualization, ${HARNESS}`;
    case "denied":
      return `Cannot use KVM: ${path} is not permitted for this user${seen}; join its group ` +
        `(sudo usermod -aG kvm $USER, then log in again) or grant access (sudo chmod 0666 ${path}), ${HARNESS}`;
    case "no-module":
      return `Cannot use KVM: ${path} has no driver behind it${seen}; load the module ` +
        `(sudo modprobe kvm_amd, or kvm_intel on Intel), ${HARNESS}`;
    case "api-version":
      return `Cannot use KVM: ${path} speaks API version ${detail ?? "?"}, not 12, ${HARNESS}`;
  }
}

/**
 * A vCPU stopped on an exit the VMM cannot continue from (a triple fault, a
 * failed entry, an internal error, an exit nobody handles), or its thread
 * failed (`cause` is the `IoctlError` of `KVM_RUN`).
 *
 * @example Read why a vCPU stopped
 * ```ts ignore
 * const stop = await vcpu.stopped;
 * if (stop.error instanceof VcpuError) console.log(stop.error.exit?.kind);
 * ```
 */
export class VcpuError extends Error {
  /** The vCPU id. */
  readonly vcpu: number;
  /** The exit it stopped on, when an exit stopped it. */
  readonly exit?: VcpuExit;

  /**
   * Creates the error.
   *
   * @param vcpu The vCPU id.
   * @param what What happened, as a sentence fragment after "vCPU N".
   * @param options The exit and the lower `cause`.
   */
  constructor(vcpu: number, what: string, options: { exit?: VcpuExit; cause?: unknown } = {}) {
    super(`vCPU ${vcpu} ${what}`, { cause: options.cause });
    this.name = "VcpuError";
    this.vcpu = vcpu;
    if (options.exit !== undefined) this.exit = options.exit;
  }

  /**
   * An error for a vCPU that stopped on an exit.
   *
   * @param vcpu The vCPU id.
   * @param exit The exit.
   * @returns The error, naming the exit reason.
   */
  static fromExit(vcpu: number, exit: VcpuExit): VcpuError {
    return new VcpuError(vcpu, `stopped on ${exitReasonName(exit.reason)}${describe(exit)}`, {
      exit,
    });
  }
}

function describe(exit: VcpuExit): string {
  switch (exit.kind) {
    case "fail-entry":
      return `: hardware_entry_failure_reason 0x${exit.hardwareEntryFailureReason.toString(16)}`;
    case "internal-error":
      return `: suberror ${exit.suberror}`;
    case "system-event":
      return `: type ${exit.type}`;
    default:
      return "";
  }
}

/**
 * Saved vCPU or VM state cannot be read or applied: a bad encoding (magic,
 * version, checksum, truncation) or a piece the kernel refused.
 *
 * @example Refuse a corrupted state
 * ```ts ignore
 * try {
 *   decodeVmState(bytes);
 * } catch (e) {
 *   if (e instanceof KvmStateError) console.error(e.message);
 * }
 * ```
 */
export class KvmStateError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   * @param options The lower `cause`.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "KvmStateError";
  }
}
