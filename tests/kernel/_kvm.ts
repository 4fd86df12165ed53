// Shared set-up of the real-kernel KVM tests: a VM with guest RAM, one vCPU
// running the test guest, torn down in order. /dev/kvm must be there (the
// harness's QEMU guest loads kvm_amd or kvm_intel); without it Kvm.open()
// throws a KvmUnavailableError and the test fails.

import assert from "node:assert/strict";
import { buildGuestImage, type GuestImage } from "../../kvm/guest/build.ts";
import type { GuestCommand } from "../../kvm/guest/layout.ts";
import { type GuestCommandParams, GuestProgram } from "../../kvm/guest/program.ts";
import { Kvm } from "../../kvm/kvm.ts";
import type { Vcpu, VcpuOptions, VcpuStop } from "../../kvm/vcpu.ts";
import type { Vm, VmOptions } from "../../kvm/vm.ts";
import { GuestMemory } from "../../memory/guest_memory.ts";
import { guestAddress } from "../../sys/address.ts";

let image: Promise<GuestImage> | undefined;

/** The test guest, built once per process. */
export function guestImage(): Promise<GuestImage> {
  return image ??= buildGuestImage();
}

/** A booted test guest and everything under it. */
export interface BootedGuest extends AsyncDisposable {
  kvm: Kvm;
  memory: GuestMemory;
  vm: Vm;
  vcpu: Vcpu;
  guest: GuestProgram;
}

/**
 * Makes a VM with `ramBytes` of RAM, installs the test guest on vCPU 0,
 * starts it and waits until it is idle.
 */
export async function bootGuest(options: {
  ramBytes?: bigint;
  vm?: VmOptions;
  vcpu?: VcpuOptions;
  seed?: number;
  onLine?: (line: string) => void;
} = {}): Promise<BootedGuest> {
  const img = await guestImage();
  const kvm = Kvm.open();
  const memory = GuestMemory.create([{
    gpa: guestAddress(0n),
    size: options.ramBytes ?? 8n << 20n,
  }]);
  let vm: Vm | undefined;
  let slots: Disposable | undefined;
  let guest: GuestProgram | undefined;
  const close = () => {
    guest?.close();
    vm?.close();
    slots = undefined;
    memory.close();
    kvm.close();
  };
  try {
    vm = kvm.createVm(options.vm);
    slots = vm.addMemory(memory);
    const vcpu = vm.createVcpu(options.vcpu);
    guest = GuestProgram.install(vm, vcpu, memory, {
      image: img,
      seed: options.seed ?? 1,
      onLine: options.onLine,
    });
    await vcpu.start();
    const stop = await command({ guest, vcpu }, "idle");
    if (stop !== undefined) throw stop.error ?? new TypeError("The test guest stopped at boot");
    void slots;
    return {
      kvm,
      memory,
      vm,
      vcpu,
      guest,
      async [Symbol.asyncDispose]() {
        // A vCPU that cannot be stopped fails the test; close() then has its
        // own bound and leaves the mappings open rather than fault.
        try {
          await within("stopping the test guest's vCPUs", vm!.stop(), 30_000);
        } finally {
          close();
        }
      },
    };
  } catch (e) {
    close();
    throw e;
  }
}

/**
 * Waits for `p` at most `ms`; past that it rejects naming `what`. A bound
 * that fails with a message, not a timing assertion.
 */
export async function within<T>(what: string, p: Promise<T>, ms = 60_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Pages of slot 0 the guest writes for data page `p`. */
export function dataPageFrame(p: number): number {
  return 256 + p;
}

/**
 * Issues a guest command and waits at most `ms` for its acknowledgement (or
 * the vCPU's stop); past that the test fails with what the guest and its
 * vCPU were doing, instead of hanging the harness's guest.
 */
export async function command(
  g: { guest: GuestProgram; vcpu: Vcpu },
  cmd: GuestCommand,
  params: GuestCommandParams & { ms?: number } = {},
): Promise<VcpuStop | undefined> {
  const { ms = 60_000, ...rest } = params;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  try {
    const got = await Promise.race([g.guest.command(cmd, rest), timeout]);
    if (got !== "timeout") return got;
    const mb = g.guest.mailbox();
    return assert.fail(
      `The guest did not finish ${cmd} within ${ms} ms: acknowledged ${mb.ackSeq}, counter ` +
        `${mb.counter}; vCPU ${g.vcpu.state}, runs ${JSON.stringify(g.vcpu.runCounts)}, exits ` +
        `${JSON.stringify(g.vcpu.exitCounts)}, last ${g.vcpu.lastExit?.kind ?? "none"}`,
    );
  } finally {
    clearTimeout(timer);
  }
}
