/**
 * What pre-copy needs of the running workload (the vCPUs): pause and resume
 * it for stop-and-copy, and throttle it for auto-converge.
 *
 * @module
 */

/** Something that can be paused and resumed, as Cloud Hypervisor's `Pausable`. */
export interface Pausable {
  /** Pauses; resolves once no more writes will happen. */
  pause(): Promise<void>;
  /** Resumes after a pause; resolves once it runs again. */
  resume(): void | Promise<void>;
}

/** A workload that auto-converge can slow down. */
export interface Workload extends Pausable {
  /**
   * Throttles the workload: it runs only `100 - percent` % of the time.
   *
   * @param percent 0 to 99.
   */
  setThrottle(percent: number): void;
}

/**
 * Runs several workloads as one (for example vCPU writers and a device doing DMA).
 *
 * @param workloads The workloads.
 * @returns One workload that pauses, resumes and throttles them all.
 *
 * @example
 * ```ts ignore
 * const both = combineWorkloads([cpuWriters, deviceDma]);
 * ```
 */
export function combineWorkloads(workloads: readonly Workload[]): Workload {
  return {
    pause: async () => {
      await Promise.all(workloads.map((w) => w.pause()));
    },
    resume: async () => {
      await Promise.all(workloads.map((w) => w.resume()));
    },
    setThrottle: (percent) => workloads.forEach((w) => w.setThrottle(percent)),
  };
}
