/**
 * Worker writers (modelled vCPUs) as a pre-copy {@linkcode Workload}.
 *
 * @module
 */

import type { WorkerWriter } from "../../memory/worker_writer.ts";
import type { Workload } from "../engine/workload.ts";

/**
 * Pauses, resumes and throttles a set of `WorkerWriter`s together.
 *
 * Throttling to `p` % runs the writers at `100 - p` % of their base rate: the
 * rate they were given, or, for unthrottled writers, the rate they were seen
 * writing at when throttling first began.
 *
 * @example
 * ```ts ignore
 * const workload = new WorkerWorkload([await WorkerWriter.start(memory, { pattern: "random" })]);
 * ```
 */
export class WorkerWorkload implements Workload {
  #writers: WorkerWriter[];
  #baseRate: number;
  #givenRate: number;
  #startedAt = performance.now();
  #startPages: number;

  /**
   * Wraps writers.
   *
   * @param writers The writers, already started.
   * @param options `pagesPerSecond`: their combined base rate (0 or absent: measured).
   */
  constructor(writers: WorkerWriter[], options: { pagesPerSecond?: number } = {}) {
    this.#writers = writers;
    this.#baseRate = options.pagesPerSecond ?? 0;
    this.#givenRate = this.#baseRate;
    this.#startPages = this.#pages();
  }

  #pages(): number {
    return this.#writers.reduce((n, w) => n + w.writes, 0);
  }

  /** Pages written so far by all writers. */
  get pagesWritten(): number {
    return this.#pages();
  }

  /** Pauses every writer. */
  async pause(): Promise<void> {
    await Promise.all(this.#writers.map((w) => w.pause()));
  }

  /** Resumes every writer; resolves once each has acknowledged. */
  async resume(): Promise<void> {
    await Promise.all(this.#writers.map((w) => w.resume()));
  }

  /**
   * Throttles every writer.
   *
   * @param percent 0 (full speed) to 99.
   */
  setThrottle(percent: number): void {
    if (this.#baseRate === 0) {
      const seconds = (performance.now() - this.#startedAt) / 1000;
      this.#baseRate = Math.max(1, (this.#pages() - this.#startPages) / Math.max(seconds, 0.001));
    }
    const n = this.#writers.length;
    // Back to the rate they were given (0: as fast as they can).
    const each = percent <= 0
      ? this.#givenRate / n
      : Math.max(1, (this.#baseRate * (100 - Math.min(99, percent))) / 100 / n);
    for (const w of this.#writers) w.throttle(each);
  }
}
