/**
 * The pre-copy convergence policy: measure per iteration how fast RAM was
 * sent and how fast the stream was written, estimate the downtime the
 * remaining dirty RAM and device state would cost, and decide between
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

/**
 * What one pre-copy iteration did. RAM bytes and stream bytes are kept apart:
 * a zero page costs a scan, not a wire transfer, so a zero-heavy pass moves
 * RAM far faster than its stream bytes suggest. Pages resent in full (fixed
 * bytes) are the same mix as the pass, so they are estimated at the rate RAM
 * was sent; pages the guest dirtied are data it just wrote, so they are
 * estimated at the slower of that rate and the wire's (as if they neither
 * were zero nor compressed), as QEMU estimates its pending RAM at the
 * bandwidth it measured on the wire.
 */
export interface IterationSample {
  /** RAM bytes the iteration sent (data, zero and never-written pages alike). */
  readonly ramBytes: number;
  /** Stream bytes it wrote. */
  readonly wireBytes: number;
  /** How long sending took, in ms. */
  readonly durationMs: number;
  /** RAM bytes dirty at its end: what the next iteration must send. */
  readonly dirtyBytes: number;
  /** RAM bytes resent in full at stop-and-copy whatever the bitmaps say (imprecise device scope). */
  readonly fixedBytes: number;
  /** Device state still to send at stop-and-copy, stream bytes (default 0). */
  readonly deviceBytes?: number;
  /**
   * Device state of devices in `PRE_COPY` not sent yet (initial and dirty
   * bytes, default 0): counted in the expected downtime like `deviceBytes`,
   * but never a reason to fail, since pre-copy goes on sending it.
   */
  readonly precopyDeviceBytes?: number;
  /** Time since the migration started, in ms. */
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

// Iterations that moved less than this say little about the rates.
const MIN_SAMPLE_BYTES = 1 << 20;

/**
 * Decides, iteration by iteration, when pre-copy has converged: the RAM left
 * dirty (at the slower of the RAM and wire rates), the RAM resent in full (at
 * the rate RAM was sent), plus the pending device state at the wire's rate,
 * must fit the downtime limit.
 *
 * @example
 * ```ts
 * import { ConvergencePolicy } from "./convergence.ts";
 * const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
 * const d = p.decide({
 *   ramBytes: 1e9,
 *   wireBytes: 1e9,
 *   durationMs: 500,
 *   dirtyBytes: 1e6,
 *   fixedBytes: 0,
 *   elapsedMs: 500,
 * });
 * console.log(d.action); // "stop-and-copy"
 * ```
 */
export class ConvergencePolicy {
  /** The limits in force, defaults filled in. */
  readonly limits: Readonly<Required<ConvergenceLimits>>;
  #iterations = 0;
  #ramRate = 0;
  #wireRate = 0;
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

  /** How fast RAM was sent, in RAM bytes per ms (0 before the first sample). */
  get ramRate(): number {
    return this.#ramRate;
  }

  /** How fast the stream was written, in bytes per ms (0 before the first sample). */
  get wireRate(): number {
    return this.#wireRate;
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
   * Expected downtime for RAM and device state left to send.
   *
   * @param ramBytes RAM bytes to send while paused, of the bulk pass's mix
   *   (pages resent in full), at the rate RAM was sent.
   * @param deviceBytes Device state to send while paused (default 0), at the wire's rate.
   * @param dirtyBytes RAM bytes the guest dirtied (default 0), at the slower of
   *   the two rates: written data, neither zero nor compressible for all we know.
   * @returns Milliseconds (Infinity while a needed rate is unknown).
   */
  expectedDowntimeMs(ramBytes: number, deviceBytes = 0, dirtyBytes = 0): number {
    const at = (bytes: number, rate: number) =>
      bytes === 0 ? 0 : rate > 0 ? bytes / rate : Infinity;
    const dataRate = this.#wireRate > 0 && this.#ramRate > 0
      ? Math.min(this.#ramRate, this.#wireRate)
      : this.#ramRate;
    return at(ramBytes, this.#ramRate) + at(dirtyBytes, dataRate) +
      at(deviceBytes, this.#wireRate);
  }

  /**
   * Records an iteration and decides what comes next.
   *
   * @param s What the iteration did.
   * @returns The decision, with the throttle to apply when iterating.
   */
  decide(s: IterationSample): ConvergenceDecision {
    this.#iterations++;
    const ms = Math.max(s.durationMs, 0.001);
    if (s.ramBytes > 0 && (s.ramBytes >= MIN_SAMPLE_BYTES || this.#ramRate === 0)) {
      this.#ramRate = s.ramBytes / ms;
    }
    if (s.wireBytes > 0 && (s.wireBytes >= MIN_SAMPLE_BYTES || this.#wireRate === 0)) {
      this.#wireRate = s.wireBytes / ms;
    }
    const device = s.deviceBytes ?? 0;
    const remaining = s.dirtyBytes + s.fixedBytes;
    const expectedDowntimeMs = this.expectedDowntimeMs(
      s.fixedBytes,
      device + (s.precopyDeviceBytes ?? 0),
      s.dirtyBytes,
    );
    const L = this.limits;
    if (expectedDowntimeMs <= L.downtimeLimitMs) {
      return { action: "stop-and-copy", expectedDowntimeMs, throttle: this.#throttle };
    }
    const floor = this.expectedDowntimeMs(s.fixedBytes, device);
    if ((s.fixedBytes > 0 || device > 0) && floor > L.downtimeLimitMs) {
      const what = [
        s.fixedBytes > 0 ? `the ${mib(s.fixedBytes)} resent in full at stop-and-copy` : "",
        device > 0 ? `${mib(device)} of device state` : "",
      ].filter((x) => x).join(" and ");
      return {
        action: "fail",
        expectedDowntimeMs,
        reason: `${what} alone need ${
          fmtMs(floor)
        }, over the ${L.downtimeLimitMs} ms downtime limit`,
      };
    }
    if (this.#iterations >= L.maxIterations || s.elapsedMs >= L.maxTotalMs) {
      const which = this.#iterations >= L.maxIterations
        ? `${this.#iterations} iterations`
        : `${fmtMs(s.elapsedMs)}`;
      return {
        action: "fail",
        expectedDowntimeMs,
        reason: `did not converge after ${which}: ${
          mib(remaining)
        } still dirty, expected downtime ${
          fmtMs(expectedDowntimeMs)
        } over the ${L.downtimeLimitMs} ms limit${
          L.autoConverge ? ` (throttle at ${this.#throttle} %)` : " (try auto-converge)"
        }`,
      };
    }
    if (L.autoConverge && s.dirtyBytes > s.ramBytes * L.throttleTriggerRatio) {
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

function fmtMs(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(0)} ms` : "unbounded time";
}
