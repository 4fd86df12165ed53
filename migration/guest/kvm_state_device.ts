/**
 * A KVM VM's CPU state (every vCPU and the guest clock) as migration device
 * state: saved at stop-and-copy with the vCPUs paused, encoded with
 * `encodeVmState` (versioned, CRC-32 checked), carried in the stream as the
 * state of device {@linkcode KVM_STATE_DEVICE_ID}, and restored on the
 * destination's VM before its vCPUs start.
 *
 * @module
 */

import { decodeVmState, encodeVmState, type VmState } from "../../kvm/state_codec.ts";
import type { Vm } from "../../kvm/vm.ts";
import type { DeviceMigrator } from "../engine/device_migrator.ts";

/** The device id of a VM's CPU state in the stream: `kvm-vm`. */
export const KVM_STATE_DEVICE_ID = "kvm-vm" as const;

/**
 * The CPU state of a VM, on either side of a migration: `saveState()` on the
 * source (a `DeviceMigrator`), `loadState()` on the destination (a device of
 * `receiveGuest()`).
 *
 * @example Both sides
 * ```ts ignore
 * // source
 * await migrateGuest({ memory, to, workload, devices: [new KvmStateDevice(vm)], guestSources });
 * // destination: restore RAM and CPU state, then run the guest
 * const cpu = new KvmStateDevice(vm2);
 * await receiveGuest({ memory: memory2, from, devices: [cpu] });
 * await vm2.start();
 * ```
 */
export class KvmStateDevice implements DeviceMigrator {
  /** {@linkcode KVM_STATE_DEVICE_ID}. */
  readonly id: "kvm-vm" = KVM_STATE_DEVICE_ID;
  /** Always: KVM's state is complete enough to go on in another VM. */
  readonly supported = true;
  #vm: Vm;
  #saved?: VmState;
  #loaded?: VmState;

  /**
   * Wraps a VM.
   *
   * @param vm The source's VM (its vCPUs are paused before `saveState()`),
   *   or the destination's (its vCPUs not started).
   */
  constructor(vm: Vm) {
    this.#vm = vm;
  }

  /**
   * The ids of the vCPUs `saveState()` saved or `loadState()` restored.
   *
   * @returns The ids (empty before either).
   */
  get vcpuIds(): readonly number[] {
    return (this.#loaded ?? this.#saved)?.vcpus.map((v) => v.id) ?? [];
  }

  /**
   * Saves every vCPU and the guest clock. The vCPUs must be paused (the
   * engine pauses the workload before it saves device state).
   *
   * @returns The encoded state.
   * @throws {TypeError} While a vCPU runs.
   * @throws {IoctlError} Naming the ioctl that failed.
   */
  saveState(): Promise<Uint8Array> {
    try {
      const state = this.#vm.saveState();
      this.#saved = state;
      return Promise.resolve(encodeVmState(state));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Decodes the state and restores it: vCPUs the VM lacks are created with
   * their ids first, then the clock and each vCPU. RAM must already hold
   * the image (the destination restores devices once it is verified).
   *
   * @param bytes What the source's `saveState()` returned.
   * @returns A promise resolved once restored.
   * @throws {KvmStateError} For a bad encoding or a piece KVM refuses.
   * @throws {IoctlError} Naming the ioctl that failed.
   */
  loadState(bytes: Uint8Array): Promise<void> {
    try {
      const state = decodeVmState(bytes);
      for (const v of state.vcpus) {
        if (!this.#vm.vcpus.some((x) => x.id === v.id)) this.#vm.createVcpu({ id: v.id });
      }
      this.#vm.restoreState(state);
      this.#loaded = state;
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Nothing to do: the vCPUs run again with the workload. */
  resumeRunning(): void {}
}
