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
  /** Resumes after a pause. */
  resume(): void;
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
