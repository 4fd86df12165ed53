// What a Vm shares with its dirty sources but not with users: its fd, its
// syscall boundary, its slots and vCPUs, and who handles full dirty rings.

import type { KvmSyscalls } from "./syscalls.ts";
import type { Vcpu } from "./vcpu.ts";
import type { MemorySlot } from "./vm.ts";

/** Harvests a vCPU whose dirty ring is full (on the VMM's thread). */
export type RingFullHandler = (vcpu: Vcpu) => void;

/** A Vm's insides. */
export interface VmInternals {
  readonly sys: KvmSyscalls;
  fd(): number;
  slots(): readonly MemorySlot[];
  vcpus(): readonly Vcpu[];
  setRingHandler(handler: RingFullHandler | undefined): void;
}

/** Registry of Vm insides. */
export const VM_INTERNALS: WeakMap<object, VmInternals> = new WeakMap();
