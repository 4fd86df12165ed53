/**
 * KVM ioctl request numbers (`linux/kvm.h`, x86_64), each paired with its
 * name. Requests are `_IO`/`_IOR`/`_IOW`/`_IOWR` on `KVMIO` (0xAE); the struct
 * size is part of the number, so each constant names the struct it carries.
 *
 * @module
 */

import type { IoctlRequest } from "../../sys/syscalls.ts";

/** `KVMIO`, the ioctl type byte of KVM. */
export const KVMIO = 0xae;

const IOC_NONE = 0n;
const IOC_WRITE = 1n;
const IOC_READ = 2n;

function ioc(dir: bigint, nr: number, size: number): bigint {
  if (size < 0 || size >= 1 << 14) throw new RangeError(`Cannot encode an ioctl size of ${size}`);
  return (dir << 30n) | (BigInt(size) << 16n) | (BigInt(KVMIO) << 8n) | BigInt(nr);
}

/**
 * Builds a KVM request: `_IO` for `size` 0 with no direction, else the
 * direction given.
 *
 * @param name The name in `linux/kvm.h`.
 * @param nr The request number.
 * @param options `dir`: `"none"` (`_IO`), `"r"` (`_IOR`), `"w"` (`_IOW`) or
 *   `"rw"` (`_IOWR`); `size`: the struct size (0 for `_IO`).
 * @returns The frozen request.
 * @throws {RangeError} For a size that does not fit the 14-bit field.
 *
 * @example
 * ```ts
 * import { kvmIoctl } from "./ioctls.ts";
 * console.log(kvmIoctl("KVM_RUN", 0x80).code); // 44672n
 * ```
 */
export function kvmIoctl(
  name: string,
  nr: number,
  options: { dir?: "none" | "r" | "w" | "rw"; size?: number } = {},
): IoctlRequest {
  const dir = { none: IOC_NONE, r: IOC_READ, w: IOC_WRITE, rw: IOC_READ | IOC_WRITE }[
    options.dir ?? "none"
  ];
  return Object.freeze({ name, code: ioc(dir, nr, options.size ?? 0) });
}

// System ioctls, on the /dev/kvm fd.
/** `KVM_GET_API_VERSION`: returns 12. */
export const KVM_GET_API_VERSION: IoctlRequest = kvmIoctl("KVM_GET_API_VERSION", 0x00);
/** `KVM_CREATE_VM`: returns a VM fd. */
export const KVM_CREATE_VM: IoctlRequest = kvmIoctl("KVM_CREATE_VM", 0x01);
/** `KVM_GET_MSR_INDEX_LIST` (`struct kvm_msr_list`). */
export const KVM_GET_MSR_INDEX_LIST: IoctlRequest = kvmIoctl("KVM_GET_MSR_INDEX_LIST", 0x02, {
  dir: "rw",
  size: 4,
});
/** `KVM_CHECK_EXTENSION`: on the system fd or (with `KVM_CAP_CHECK_EXTENSION_VM`) a VM fd. */
export const KVM_CHECK_EXTENSION: IoctlRequest = kvmIoctl("KVM_CHECK_EXTENSION", 0x03);
/** `KVM_GET_VCPU_MMAP_SIZE`: bytes to mmap from a vCPU fd at offset 0. */
export const KVM_GET_VCPU_MMAP_SIZE: IoctlRequest = kvmIoctl("KVM_GET_VCPU_MMAP_SIZE", 0x04);
/** `KVM_GET_SUPPORTED_CPUID` (`struct kvm_cpuid2`). */
export const KVM_GET_SUPPORTED_CPUID: IoctlRequest = kvmIoctl("KVM_GET_SUPPORTED_CPUID", 0x05, {
  dir: "rw",
  size: 8,
});

// VM ioctls.
/** `KVM_CREATE_VCPU`: returns a vCPU fd. */
export const KVM_CREATE_VCPU: IoctlRequest = kvmIoctl("KVM_CREATE_VCPU", 0x41);
/** `KVM_GET_DIRTY_LOG` (`struct kvm_dirty_log`). */
export const KVM_GET_DIRTY_LOG: IoctlRequest = kvmIoctl("KVM_GET_DIRTY_LOG", 0x42, {
  dir: "w",
  size: 16,
});
/** `KVM_SET_USER_MEMORY_REGION` (`struct kvm_userspace_memory_region`). */
export const KVM_SET_USER_MEMORY_REGION: IoctlRequest = kvmIoctl(
  "KVM_SET_USER_MEMORY_REGION",
  0x46,
  { dir: "w", size: 32 },
);
/** `KVM_SET_TSS_ADDR`: three pages the VMX real-mode emulation uses. */
export const KVM_SET_TSS_ADDR: IoctlRequest = kvmIoctl("KVM_SET_TSS_ADDR", 0x47);
/** `KVM_SET_IDENTITY_MAP_ADDR` (`__u64`). */
export const KVM_SET_IDENTITY_MAP_ADDR: IoctlRequest = kvmIoctl("KVM_SET_IDENTITY_MAP_ADDR", 0x48, {
  dir: "w",
  size: 8,
});
/** `KVM_CREATE_IRQCHIP`: the in-kernel PIC, IOAPIC and local APICs. */
export const KVM_CREATE_IRQCHIP: IoctlRequest = kvmIoctl("KVM_CREATE_IRQCHIP", 0x60);
/** `KVM_SET_CLOCK` (`struct kvm_clock_data`). */
export const KVM_SET_CLOCK: IoctlRequest = kvmIoctl("KVM_SET_CLOCK", 0x7b, { dir: "w", size: 48 });
/** `KVM_GET_CLOCK` (`struct kvm_clock_data`). */
export const KVM_GET_CLOCK: IoctlRequest = kvmIoctl("KVM_GET_CLOCK", 0x7c, { dir: "r", size: 48 });
/** `KVM_ENABLE_CAP` (`struct kvm_enable_cap`), on a VM or vCPU fd. */
export const KVM_ENABLE_CAP: IoctlRequest = kvmIoctl("KVM_ENABLE_CAP", 0xa3, {
  dir: "w",
  size: 104,
});
/** `KVM_CLEAR_DIRTY_LOG` (`struct kvm_clear_dirty_log`). */
export const KVM_CLEAR_DIRTY_LOG: IoctlRequest = kvmIoctl("KVM_CLEAR_DIRTY_LOG", 0xc0, {
  dir: "rw",
  size: 24,
});
/** `KVM_RESET_DIRTY_RINGS`: re-protects the pages harvested from every ring. */
export const KVM_RESET_DIRTY_RINGS: IoctlRequest = kvmIoctl("KVM_RESET_DIRTY_RINGS", 0xc7);

// vCPU ioctls.
/** `KVM_RUN`. */
export const KVM_RUN: IoctlRequest = kvmIoctl("KVM_RUN", 0x80);
/** `KVM_GET_REGS` (`struct kvm_regs`). */
export const KVM_GET_REGS: IoctlRequest = kvmIoctl("KVM_GET_REGS", 0x81, { dir: "r", size: 144 });
/** `KVM_SET_REGS` (`struct kvm_regs`). */
export const KVM_SET_REGS: IoctlRequest = kvmIoctl("KVM_SET_REGS", 0x82, { dir: "w", size: 144 });
/** `KVM_GET_SREGS` (`struct kvm_sregs`). */
export const KVM_GET_SREGS: IoctlRequest = kvmIoctl("KVM_GET_SREGS", 0x83, { dir: "r", size: 312 });
/** `KVM_SET_SREGS` (`struct kvm_sregs`). */
export const KVM_SET_SREGS: IoctlRequest = kvmIoctl("KVM_SET_SREGS", 0x84, { dir: "w", size: 312 });
/** `KVM_GET_MSRS` (`struct kvm_msrs`). */
export const KVM_GET_MSRS: IoctlRequest = kvmIoctl("KVM_GET_MSRS", 0x88, { dir: "rw", size: 8 });
/** `KVM_SET_MSRS` (`struct kvm_msrs`). */
export const KVM_SET_MSRS: IoctlRequest = kvmIoctl("KVM_SET_MSRS", 0x89, { dir: "w", size: 8 });
/** `KVM_SET_SIGNAL_MASK` (`struct kvm_signal_mask`). */
export const KVM_SET_SIGNAL_MASK: IoctlRequest = kvmIoctl("KVM_SET_SIGNAL_MASK", 0x8b, {
  dir: "w",
  size: 4,
});
/** `KVM_GET_FPU` (`struct kvm_fpu`). */
export const KVM_GET_FPU: IoctlRequest = kvmIoctl("KVM_GET_FPU", 0x8c, { dir: "r", size: 416 });
/** `KVM_SET_FPU` (`struct kvm_fpu`). */
export const KVM_SET_FPU: IoctlRequest = kvmIoctl("KVM_SET_FPU", 0x8d, { dir: "w", size: 416 });
/** `KVM_GET_LAPIC` (`struct kvm_lapic_state`). */
export const KVM_GET_LAPIC: IoctlRequest = kvmIoctl("KVM_GET_LAPIC", 0x8e, {
  dir: "r",
  size: 1024,
});
/** `KVM_SET_LAPIC` (`struct kvm_lapic_state`). */
export const KVM_SET_LAPIC: IoctlRequest = kvmIoctl("KVM_SET_LAPIC", 0x8f, {
  dir: "w",
  size: 1024,
});
/** `KVM_SET_CPUID2` (`struct kvm_cpuid2`). */
export const KVM_SET_CPUID2: IoctlRequest = kvmIoctl("KVM_SET_CPUID2", 0x90, { dir: "w", size: 8 });
/** `KVM_GET_CPUID2` (`struct kvm_cpuid2`). */
export const KVM_GET_CPUID2: IoctlRequest = kvmIoctl("KVM_GET_CPUID2", 0x91, {
  dir: "rw",
  size: 8,
});
/** `KVM_GET_MP_STATE` (`struct kvm_mp_state`). */
export const KVM_GET_MP_STATE: IoctlRequest = kvmIoctl("KVM_GET_MP_STATE", 0x98, {
  dir: "r",
  size: 4,
});
/** `KVM_SET_MP_STATE` (`struct kvm_mp_state`). */
export const KVM_SET_MP_STATE: IoctlRequest = kvmIoctl("KVM_SET_MP_STATE", 0x99, {
  dir: "w",
  size: 4,
});
/** `KVM_GET_VCPU_EVENTS` (`struct kvm_vcpu_events`). */
export const KVM_GET_VCPU_EVENTS: IoctlRequest = kvmIoctl("KVM_GET_VCPU_EVENTS", 0x9f, {
  dir: "r",
  size: 64,
});
/** `KVM_SET_VCPU_EVENTS` (`struct kvm_vcpu_events`). */
export const KVM_SET_VCPU_EVENTS: IoctlRequest = kvmIoctl("KVM_SET_VCPU_EVENTS", 0xa0, {
  dir: "w",
  size: 64,
});
/** `KVM_GET_DEBUGREGS` (`struct kvm_debugregs`). */
export const KVM_GET_DEBUGREGS: IoctlRequest = kvmIoctl("KVM_GET_DEBUGREGS", 0xa1, {
  dir: "r",
  size: 128,
});
/** `KVM_SET_DEBUGREGS` (`struct kvm_debugregs`). */
export const KVM_SET_DEBUGREGS: IoctlRequest = kvmIoctl("KVM_SET_DEBUGREGS", 0xa2, {
  dir: "w",
  size: 128,
});
/** `KVM_SET_TSC_KHZ`: the vCPU's TSC frequency. */
export const KVM_SET_TSC_KHZ: IoctlRequest = kvmIoctl("KVM_SET_TSC_KHZ", 0xa2);
/** `KVM_GET_TSC_KHZ`: returns the vCPU's TSC frequency. */
export const KVM_GET_TSC_KHZ: IoctlRequest = kvmIoctl("KVM_GET_TSC_KHZ", 0xa3);
/** `KVM_GET_XSAVE` (`struct kvm_xsave`, 4096 bytes). */
export const KVM_GET_XSAVE: IoctlRequest = kvmIoctl("KVM_GET_XSAVE", 0xa4, {
  dir: "r",
  size: 4096,
});
/** `KVM_SET_XSAVE` (`struct kvm_xsave`). */
export const KVM_SET_XSAVE: IoctlRequest = kvmIoctl("KVM_SET_XSAVE", 0xa5, {
  dir: "w",
  size: 4096,
});
/** `KVM_GET_XCRS` (`struct kvm_xcrs`). */
export const KVM_GET_XCRS: IoctlRequest = kvmIoctl("KVM_GET_XCRS", 0xa6, { dir: "r", size: 392 });
/** `KVM_SET_XCRS` (`struct kvm_xcrs`). */
export const KVM_SET_XCRS: IoctlRequest = kvmIoctl("KVM_SET_XCRS", 0xa7, { dir: "w", size: 392 });
/** `KVM_GET_XSAVE2` (`struct kvm_xsave` of `KVM_CAP_XSAVE2` bytes). */
export const KVM_GET_XSAVE2: IoctlRequest = kvmIoctl("KVM_GET_XSAVE2", 0xcf, {
  dir: "r",
  size: 4096,
});
