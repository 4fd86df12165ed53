/**
 * A KVM guest's vCPUs as the pre-copy {@linkcode Workload}: stop-and-copy
 * pauses them, and auto-converge throttles them the way QEMU's cpu-throttle
 * does, by taking them out of `KVM_RUN` for a share of each period.
 *
 * @module
 */

import type { Workload } from "../engine/workload.ts";

/** What {@linkcode KvmWorkload} needs of a VM (a `Vm`). */
export interface PausableVm {
  /** Pauses every vCPU; resolves once all are parked outside `KVM_RUN`. */
  pause(): Promise<void>;
  /** Resumes every paused vCPU. */
  resume(): void;
}

/** Options of {@linkcode KvmWorkload}. */
export interface KvmWorkloadOptions {
  /**
   * How long the vCPUs run in each throttle period, ms (default 10, QEMU's
   * `CPU_THROTTLE_TIMESLICE_NS`). At `p` % they then sleep
   * `timesliceMs * p / (100 - p)`, so they run `100 - p` % of the time.
   */
  timesliceMs?: number;
}

/** What the throttle has done so far. */
export interface KvmThrottleStats {
  /** The throttle in force, percent. */
  readonly percent: number;
  /** Throttle periods in which the vCPUs were put to sleep. */
  readonly periods: number;
  /** Time the throttle kept the vCPUs out of `KVM_RUN`, ms. */
  readonly sleptMs: number;
}

/**
 * Pauses, resumes and throttles every vCPU of a VM.
 *
 * Throttling to `p` % (1 to 99) runs a period of `timesliceMs / (1 - p/100)`:
 * the vCPUs run for `timesliceMs`, then are paused (`immediate_exit` and a
 * kick, within milliseconds) for the rest. A pause for stop-and-copy holds
 * them whatever the throttle does; `setThrottle(0)` lets them run freely again.
 *
 * @example Auto-converge on a KVM guest
 * ```ts ignore
 * using workload = new KvmWorkload(vm);
 * await migrateGuest({ memory, to, workload, limits: { autoConverge: true }, guestSources });
 * ```
 */
export class KvmWorkload implements Workload, Disposable {
  #vm: PausableVm;
  #timesliceMs: number;
  #percent = 0;
  #held = false; // paused for the engine (stop-and-copy)
  #sleeping = false; // paused by the throttle
  #generation = 0;
  #timer?: { id: ReturnType<typeof setTimeout>; resolve: () => void };
  #periods = 0;
  #sleptMs = 0;

  /**
   * Wraps a VM whose vCPUs run (or will).
   *
   * @param vm The VM.
   * @param options The throttle's timeslice.
   * @throws {RangeError} For a timeslice that is not positive.
   */
  constructor(vm: PausableVm, options: KvmWorkloadOptions = {}) {
    const slice = options.timesliceMs ?? 10;
    if (!(slice > 0)) throw new RangeError(`Cannot throttle vCPUs with a timeslice of ${slice} ms`);
    this.#vm = vm;
    this.#timesliceMs = slice;
  }

  /**
   * What the throttle has done so far.
   *
   * @returns The counts.
   */
  get stats(): KvmThrottleStats {
    return { percent: this.#percent, periods: this.#periods, sleptMs: this.#sleptMs };
  }

  /**
   * Pauses every vCPU (for stop-and-copy); resolves once none runs.
   *
   * @returns A promise.
   */
  async pause(): Promise<void> {
    this.#held = true;
    await this.#vm.pause();
  }

  /** Lets the vCPUs run again (or go on with the throttle's period). */
  resume(): void {
    this.#held = false;
    if (!this.#sleeping) this.#vm.resume();
  }

  /**
   * Throttles the vCPUs: they run only `100 - percent` % of the time.
   *
   * @param percent 0 (full speed) to 99.
   * @throws {RangeError} For a percentage outside 0 to 99.
   */
  setThrottle(percent: number): void {
    if (!(percent >= 0 && percent <= 99)) {
      throw new RangeError(`Cannot throttle vCPUs to ${percent} %: not within 0 to 99`);
    }
    const was = this.#percent;
    this.#percent = percent;
    if (percent === 0) this.#stopThrottle();
    else if (was === 0) void this.#throttle(++this.#generation);
  }

  #stopThrottle(): void {
    this.#generation++;
    const t = this.#timer;
    if (t !== undefined) {
      clearTimeout(t.id);
      this.#timer = undefined;
      t.resolve();
    }
    if (this.#sleeping) {
      this.#sleeping = false;
      if (!this.#held) this.#vm.resume();
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const id = setTimeout(() => {
        this.#timer = undefined;
        resolve();
      }, ms);
      this.#timer = { id, resolve };
    });
  }

  async #throttle(generation: number): Promise<void> {
    const live = () => generation === this.#generation;
    while (live()) {
      await this.#sleep(this.#timesliceMs);
      if (!live()) return;
      const p = this.#percent / 100;
      const sleepMs = (this.#timesliceMs * p) / (1 - p);
      const t0 = performance.now();
      this.#sleeping = true;
      if (!this.#held) await this.#vm.pause();
      if (!live()) {
        // The throttle ended while they were being paused: they run again.
        if (!this.#held) this.#vm.resume();
        return;
      }
      this.#periods++;
      await this.#sleep(sleepMs);
      this.#sleptMs += performance.now() - t0;
      if (!live()) return;
      this.#sleeping = false;
      if (!this.#held) this.#vm.resume();
    }
  }

  /** Ends the throttle (the vCPUs run unless paused). Idempotent. */
  close(): void {
    if (this.#percent !== 0) this.setThrottle(0);
  }

  /** Closes through {@linkcode KvmWorkload.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
