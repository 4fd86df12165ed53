/**
 * The pre-copy convergence policy: measure bandwidth per iteration, estimate
 * the downtime the remaining dirty bytes would cost, and decide between
 * another iteration, stop-and-copy, and failure. Optional auto-converge
 * throttles the workload in QEMU's steps (20 %, then +10 %, up to 99 %) when
 * dirtying outpaces sending.
 *
 * @module
 */

/** Limits for {@linkcode ConvergencePolicy}. */
export interface ConvergenceLimits {
  /** Stop-and-copy once the expected downtime is at most this (default 300 ms). */
  downtimeLimitMs?: number;
  /** Fail after this many pre-copy iterations (default 30). */
  maxIterations?: number;
  /** Fail once pre-copy has run this long (default 120 000 ms). */
  maxTotalMs?: number;
  /** Throttle the workload when dirtying outpaces sending (default off). */
  autoConverge?: boolean;
  /** First throttle step, percent (default 20, as QEMU's cpu-throttle-initial). */
  throttleInitial?: number;
  /** Later throttle steps, percent (default 10, as QEMU's cpu-throttle-increment). */
  throttleIncrement?: number;
  /** Dirty bytes above this share of the bytes sent count as outpacing (default 0.5). */
  throttleTriggerRatio?: number;
}

/** What one pre-copy iteration did. */
export interface IterationSample {
  /** Bytes sent in the iteration. */
  readonly sentBytes: number;
  /** How long sending took, in ms. */
  readonly durationMs: number;
  /** Dirty bytes harvested at its end: what the next iteration must send. */
  readonly dirtyBytes: number;
  /** Bytes resent in full at stop-and-copy whatever the bitmaps say (imprecise device scope). */
  readonly fixedBytes: number;
  /** Time stop-and-copy costs whatever is sent (verifying the image), ms (default 0). */
  readonly overheadMs?: number;
  /** Time since pre-copy started, in ms. */
  readonly elapsedMs: number;
}

/** What to do next. */
export type ConvergenceDecision =
  | { readonly action: "iterate"; readonly expectedDowntimeMs: number; readonly throttle: number }
  | {
    readonly action: "stop-and-copy";
    readonly expectedDowntimeMs: number;
    readonly throttle: number;
  }
  | { readonly action: "fail"; readonly expectedDowntimeMs: number; readonly reason: string };

/**
 * Decides, iteration by iteration, when pre-copy has converged.
 *
 * @example
 * ```ts
 * import { ConvergencePolicy } from "./convergence.ts";
 * const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
 * const d = p.decide({ sentBytes: 1e9, durationMs: 500, dirtyBytes: 1e6, fixedBytes: 0, elapsedMs: 500 });
 * console.log(d.action); // "stop-and-copy"
 * ```
 */
export class ConvergencePolicy {
  /** The limits in force, defaults filled in. */
  readonly limits: Readonly<Required<ConvergenceLimits>>;
  #iterations = 0;
  #bandwidth = 0;
  #throttle = 0;
  #highCount = 0;

  /**
   * Creates the policy.
   *
   * @param limits The limits.
   * @throws {RangeError} For a non-positive limit.
   */
  constructor(limits: ConvergenceLimits = {}) {
    this.limits = {
      downtimeLimitMs: limits.downtimeLimitMs ?? 300,
      maxIterations: limits.maxIterations ?? 30,
      maxTotalMs: limits.maxTotalMs ?? 120_000,
      autoConverge: limits.autoConverge ?? false,
      throttleInitial: limits.throttleInitial ?? 20,
      throttleIncrement: limits.throttleIncrement ?? 10,
      throttleTriggerRatio: limits.throttleTriggerRatio ?? 0.5,
    };
    for (const key of ["downtimeLimitMs", "maxIterations", "maxTotalMs"] as const) {
      if (!(this.limits[key] > 0)) {
        throw new RangeError(`Cannot use ${key} ${this.limits[key]}: not positive`);
      }
    }
  }

  /** The bandwidth estimate in bytes per ms (0 before the first sample). */
  get bandwidth(): number {
    return this.#bandwidth;
  }

  /** The current workload throttle, percent. */
  get throttle(): number {
    return this.#throttle;
  }

  /** Iterations recorded so far. */
  get iterations(): number {
    return this.#iterations;
  }

  /**
   * Expected downtime for a number of bytes at the current bandwidth.
   *
   * @param bytes Bytes to send while paused.
   * @returns Milliseconds (Infinity before any bandwidth is known).
   */
  expectedDowntimeMs(bytes: number): number {
    if (bytes === 0) return 0;
    return this.#bandwidth > 0 ? bytes / this.#bandwidth : Infinity;
  }

  /**
   * Records an iteration and decides what comes next.
   *
   * @param s What the iteration did.
   * @returns The decision, with the throttle to apply when iterating.
   */
  decide(s: IterationSample): ConvergenceDecision {
    this.#iterations++;
    // Small iterations say little about the link; keep the earlier estimate.
    if (s.sentBytes >= 1 << 20 || this.#bandwidth === 0) {
      if (s.sentBytes > 0) this.#bandwidth = s.sentBytes / Math.max(s.durationMs, 0.001);
    }
    const remaining = s.dirtyBytes + s.fixedBytes;
    const overhead = s.overheadMs ?? 0;
    const expectedDowntimeMs = this.expectedDowntimeMs(remaining) + overhead;
    const L = this.limits;
    if (overhead > L.downtimeLimitMs) {
      return {
        action: "fail",
        expectedDowntimeMs,
        reason: `verifying the image at the stop point alone takes about ${
          ms(overhead)
        }, over the ${L.downtimeLimitMs} ms downtime limit (raise the limit)`,
      };
    }
    if (expectedDowntimeMs <= L.downtimeLimitMs) {
      return { action: "stop-and-copy", expectedDowntimeMs, throttle: this.#throttle };
    }
    if (s.fixedBytes > 0 && this.expectedDowntimeMs(s.fixedBytes) + overhead > L.downtimeLimitMs) {
      return {
        action: "fail",
        expectedDowntimeMs,
        reason: `the ${mib(s.fixedBytes)} resent in full at stop-and-copy alone need ${
          ms(this.expectedDowntimeMs(s.fixedBytes) + overhead)
        }, over the ${L.downtimeLimitMs} ms downtime limit`,
      };
    }
    if (this.#iterations >= L.maxIterations || s.elapsedMs >= L.maxTotalMs) {
      const which = this.#iterations >= L.maxIterations
        ? `${this.#iterations} iterations`
        : `${ms(s.elapsedMs)}`;
      return {
        action: "fail",
        expectedDowntimeMs,
        reason: `did not converge after ${which}: ${
          mib(remaining)
        } still dirty, expected downtime ${
          ms(expectedDowntimeMs)
        } over the ${L.downtimeLimitMs} ms limit${
          L.autoConverge ? ` (throttle at ${this.#throttle} %)` : " (try auto-converge)"
        }`,
      };
    }
    if (L.autoConverge && s.dirtyBytes > s.sentBytes * L.throttleTriggerRatio) {
      // QEMU throttles after the dirty rate was high in two periods.
      if (++this.#highCount >= 2) {
        this.#highCount = 0;
        this.#throttle = this.#throttle === 0
          ? L.throttleInitial
          : Math.min(99, this.#throttle + L.throttleIncrement);
      }
    }
    return { action: "iterate", expectedDowntimeMs, throttle: this.#throttle };
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function ms(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(0)} ms` : "unbounded time";
}
