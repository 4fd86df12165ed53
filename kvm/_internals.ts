// What kvm/ objects share with each other but not with users: the syscall
// boundary and fds behind a Kvm or a Vm, looked up by the object.

import type { KvmSyscalls } from "./syscalls.ts";
import type { CpuidEntry } from "./uapi/cpu.ts";

/** A Kvm's insides, for the VMs made from it. */
export interface KvmInternals {
  readonly sys: KvmSyscalls;
  readonly mmapSize: number;
  readonly inline: boolean;
  checkExtension(cap: number): number;
  msrIndexList(): readonly number[];
  supportedCpuid(): readonly CpuidEntry[];
}

/** Registry of Kvm insides. */
export const KVM_INTERNALS: WeakMap<object, KvmInternals> = new WeakMap();
