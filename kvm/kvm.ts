/**
 * `/dev/kvm`: the API version, extensions, the vCPU mapping size, the MSR
 * index list and the supported CPUID, and the VMs made from it.
 *
 * @module
 */

import { E2BIG, EACCES, ENODEV, ENOENT, ENXIO, EPERM } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { O_CLOEXEC, O_RDWR } from "../sys/constants.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import { KVM_INTERNALS } from "./_internals.ts";
import { KvmUnavailableError } from "./errors.ts";
import type { KvmSyscalls } from "./syscalls.ts";
import { KVM_API_VERSION, KVM_MAX_CPUID_ENTRIES } from "./uapi/constants.ts";
import {
  type CpuidEntry,
  decodeCpuid2,
  decodeMsrList,
  encodeCpuid2,
  msrListBuffer,
} from "./uapi/cpu.ts";
import {
  KVM_CHECK_EXTENSION,
  KVM_GET_API_VERSION,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_VCPU_MMAP_SIZE,
} from "./uapi/ioctls.ts";
import { Vm, type VmOptions } from "./vm.ts";

/** The KVM device. */
export const KVM_DEVICE = "/dev/kvm";

/** Options of {@linkcode Kvm.open}. */
export interface KvmOptions {
  /** The syscall boundary (default libc). With another one, vCPUs run inline. */
  syscalls?: KvmSyscalls;
  /** The device (default `/dev/kvm`). */
  path?: string;
}

/**
 * The KVM system fd. Opening it checks the API version (12) and reads the vCPU
 * mapping size; VMs made from it keep their own fds, so it may be closed
 * before them.
 *
 * Requires `--allow-ffi` and read-write access to `/dev/kvm`.
 *
 * @example Make a VM
 * ```ts ignore
 * import { Kvm } from "./kvm.ts";
 * using kvm = Kvm.open();
 * using vm = kvm.createVm();
 * ```
 */
export class Kvm implements Disposable {
  #sys: KvmSyscalls;
  #fd: number;
  #path: string;
  #mmapSize: number;
  #msrs?: readonly number[];
  #cpuid?: readonly CpuidEntry[];
  #inline: boolean;

  private constructor(sys: KvmSyscalls, fd: number, path: string, inline: boolean) {
    // deno-lint-ignore no-this-alias
    const kvm = this;
    this.#sys = sys;
    this.#fd = fd;
    this.#path = path;
    this.#inline = inline;
    this.#mmapSize = 0;
    KVM_INTERNALS.set(this, {
      sys,
      get mmapSize() {
        return kvm.#mmapSize;
      },
      inline,
      checkExtension: (cap) => this.checkExtension(cap),
      msrIndexList: () => this.msrIndexList(),
      supportedCpuid: () => this.supportedCpuid(),
    });
  }

  /**
   * Opens the KVM device.
   *
   * @param options The syscall boundary and the device path.
   * @returns The open device.
   * @throws {KvmUnavailableError} When the device is missing, not permitted,
   *   has no driver, or speaks another API version.
   * @throws {IoctlError} When a query fails otherwise.
   */
  static open(options: KvmOptions = {}): Kvm {
    const sys = options.syscalls ?? defaultSyscalls();
    const path = options.path ?? KVM_DEVICE;
    let fd: number;
    try {
      fd = sys.open(path, O_RDWR | O_CLOEXEC);
    } catch (e) {
      throw unavailable(path, e);
    }
    const kvm = new Kvm(sys, fd, path, options.syscalls !== undefined);
    try {
      const version = sys.ioctlValue(fd, KVM_GET_API_VERSION, 0n);
      if (version !== KVM_API_VERSION) {
        throw new KvmUnavailableError(path, "api-version", { detail: String(version) });
      }
      kvm.#mmapSize = sys.ioctlValue(fd, KVM_GET_VCPU_MMAP_SIZE, 0n);
    } catch (e) {
      kvm.close();
      throw e;
    }
    return kvm;
  }

  /**
   * The device path.
   *
   * @returns The path opened.
   */
  get path(): string {
    return this.#path;
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
   * Bytes to map from each vCPU fd (`KVM_GET_VCPU_MMAP_SIZE`): `kvm_run` and
   * the pages after it.
   *
   * @returns The size.
   */
  get vcpuMmapSize(): number {
    return this.#mmapSize;
  }

  /**
   * Whether vCPUs of this device's VMs run inline on the calling thread (a
   * custom syscall boundary) rather than on Worker threads.
   *
   * @returns `true` with a custom `syscalls`.
   */
  get inline(): boolean {
    return this.#inline;
  }

  #open(): number {
    if (this.#fd < 0) throw new TypeError("Cannot use a closed Kvm");
    return this.#fd;
  }

  /**
   * Asks the device about an extension (`KVM_CHECK_EXTENSION`).
   *
   * @param cap A `KVM_CAP_*` number.
   * @returns 0 when absent; 1 or a capability-specific value when present.
   * @throws {IoctlError} When the ioctl fails.
   * @throws {TypeError} Once closed.
   */
  checkExtension(cap: number): number {
    return this.#sys.ioctlValue(this.#open(), KVM_CHECK_EXTENSION, BigInt(cap));
  }

  /**
   * The MSRs KVM saves and restores (`KVM_GET_MSR_INDEX_LIST`), read once.
   *
   * @returns The MSR indices.
   * @throws {IoctlError} When the ioctl fails.
   */
  msrIndexList(): readonly number[] {
    if (this.#msrs !== undefined) return this.#msrs;
    let capacity = 256;
    for (;;) {
      const buf = msrListBuffer(capacity);
      try {
        this.#sys.ioctl(this.#open(), KVM_GET_MSR_INDEX_LIST, buf);
      } catch (e) {
        // E2BIG: nmsrs now holds the count needed.
        if (!(e instanceof IoctlError) || e.errno !== E2BIG || capacity > 1 << 16) throw e;
        capacity = Math.max(capacity * 2, new DataView(buf.buffer).getUint32(0, true));
        continue;
      }
      this.#msrs = Object.freeze(decodeMsrList(buf));
      return this.#msrs;
    }
  }

  /**
   * The CPUID KVM can expose (`KVM_GET_SUPPORTED_CPUID`), read once; vCPUs are
   * given it with `KVM_SET_CPUID2`.
   *
   * @returns The entries.
   * @throws {IoctlError} When the ioctl fails.
   */
  supportedCpuid(): readonly CpuidEntry[] {
    if (this.#cpuid !== undefined) return this.#cpuid;
    let capacity = KVM_MAX_CPUID_ENTRIES;
    for (;;) {
      const buf = encodeCpuid2([], { capacity });
      try {
        this.#sys.ioctl(this.#open(), KVM_GET_SUPPORTED_CPUID, buf);
      } catch (e) {
        if (!(e instanceof IoctlError) || e.errno !== E2BIG || capacity >= 1 << 12) throw e;
        capacity *= 2;
        continue;
      }
      this.#cpuid = Object.freeze(decodeCpuid2(buf).map((e) => Object.freeze(e)));
      return this.#cpuid;
    }
  }

  /**
   * Creates a VM (`KVM_CREATE_VM`).
   *
   * @param options The in-kernel irqchip, the TSS address, dirty ring.
   * @returns The VM.
   * @throws {IoctlError} When KVM refuses.
   */
  createVm(options: VmOptions = {}): Vm {
    return Vm.create(this, options);
  }

  /** Closes the device fd. Idempotent; VMs stay usable. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#sys.close(fd);
  }

  /** Closes through {@linkcode Kvm.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function unavailable(path: string, e: unknown): unknown {
  if (!(e instanceof SyscallError)) return e;
  switch (e.errno) {
    case ENOENT:
      return new KvmUnavailableError(path, "missing", { detail: e.code, cause: e });
    case EACCES:
    case EPERM:
      return new KvmUnavailableError(path, "denied", { detail: e.code, cause: e });
    case ENXIO:
    case ENODEV:
      return new KvmUnavailableError(path, "no-module", { detail: e.code, cause: e });
    default:
      return e;
  }
}
