/**
 * The part of the syscall boundary KVM uses: {@linkcode KvmSyscalls}.
 * `LibcSyscalls` and the fake kernels implement it.
 *
 * @module
 */

import type { Syscalls } from "../sys/syscalls.ts";

/**
 * The calls `kvm/` makes through the seam: open, close, ioctl (pointer and
 * value), mmap and munmap. The vCPU thread itself calls `KVM_RUN` through libc
 * on its own thread; with a custom `KvmSyscalls` the vCPU runs inline instead
 * (see `VcpuOptions.thread`).
 */
export type KvmSyscalls = Pick<
  Syscalls,
  "open" | "close" | "ioctl" | "ioctlValue" | "mmap" | "munmap"
>;
