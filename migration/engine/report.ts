/**
 * The migration report: per-iteration rows, downtime, digests, dirty scope and
 * the policy applied, as written by `migrate --report FILE`.
 *
 * @module
 */

import type { ConvergenceLimits } from "./convergence.ts";
import type { DirtyScope } from "./dirty_source.ts";
import type { SourceSelection } from "./source_selection.ts";
import type { MigrationCounters } from "./status.ts";
import type { CompressionStats } from "../stream/compression.ts";

/** One pre-copy iteration (iteration 0 is the bulk pass). */
export interface IterationRow {
  /** The iteration number. */
  iteration: number;
  /** Pages each source reported dirty at the end of the iteration. */
  dirtyPagesBySource: Record<string, number>;
  /** The merged dirty pages the next iteration must send. */
  dirtyPages: number;
  /** Pages sent in this iteration. */
  sentPages: number;
  /** Of those, zero pages sent without bytes (QEMU's "duplicate"). */
  zeroPages: number;
  /** Of the zero pages, never-written ones sent without being read (absent in older reports). */
  skippedPages?: number;
  /** Stream bytes written in this iteration. */
  bytes: number;
  /** Sending time, ms. */
  durationMs: number;
  /** Measured bandwidth, MB/s (10^6 bytes). */
  bandwidthMBps: number;
  /** Expected downtime if stop-and-copy followed, ms. */
  expectedDowntimeMs: number;
  /** Workload throttle in force, percent. */
  throttle: number;
  /** Device state the devices reported pending at its end, bytes (absent in older reports). */
  pendingDeviceBytes?: number;
  /** Stream bytes of device pre-copy sections in this iteration (absent without pre-copy devices). */
  deviceBytes?: number;
  /** Stream bytes of everything else (RAM and markers): `bytes - deviceBytes`. */
  ramBytes?: number;
  /** Pre-copy data bytes each device sent in this iteration, by id. */
  precopyBytesByDevice?: Record<string, number>;
}

/** One device's state migration, in the report. */
export interface DeviceReport {
  /** The device id. */
  id: string;
  /** Whether its state reached the stream. */
  migrated: boolean;
  /** Why not, when it cannot migrate. */
  reason?: string;
  /** Its state bytes in all: pre-copy and stop-and-copy. */
  stateBytes?: number;
  /** Of them, bytes sent during pre-copy while the guest ran (devices in `PRE_COPY`). */
  precopyBytes?: number;
  /** Of them, bytes sent at stop-and-copy. */
  stopCopyBytes?: number;
}

/** A whole migration's report (`version` 1). */
export interface MigrationReport {
  /** The report format version. */
  version: 1;
  /** `completed`, or `failed` with `error`. */
  result: "completed" | "failed";
  /** Why it failed. */
  error?: string;
  /** The phase that failed. */
  failedPhase?: string;
  /** Problems that did not fail the migration. */
  warnings?: string[];
  /** The source process's peak resident set size, bytes (set by the CLI). */
  peakRssBytes?: number | null;
  /** Where the stream went (`tcp:…`, `unix:…`, `file:…`). */
  transport: string;
  /** Guest RAM bytes. */
  ramBytes: number;
  /** The dirty page size, bytes. */
  pageSize: number;
  /** The pre-copy iterations. */
  iterations: IterationRow[];
  /** Stop-and-copy: pages sent while paused. */
  stopCopyPages: number;
  /**
   * From pause to the destination holding the whole image, ms (its answer
   * to COMPLETE; on a file, COMPLETE written). Null when it did not get that far.
   */
  downtimeMs: number | null;
  /** What the policy expected the downtime to be, ms. */
  expectedDowntimeMs: number | null;
  /** From start (dirty tracking and connect included) to the destination holding the whole image, ms. */
  imageMs?: number;
  /**
   * The source's digest of its RAM at the stop point, ms: verification runs
   * after the downtime, while the destination digests its own RAM.
   */
  verifyMs?: number;
  /** From start to end (the destination verified the image), ms. */
  totalMs: number;
  /** From start to the stream header (trackers started, connected), ms. */
  setupMs?: number;
  /**
   * With devices in `PRE_COPY` on a live transport: from "ready to switch
   * over" (converged, every device's initial data sent) to the
   * destination's switchover ack, ms.
   */
  switchoverWaitMs?: number;
  /** The counters at the end, as `query-migrate` names them (absent in older reports). */
  counters?: MigrationCounters;
  /** Bytes written to the stream. */
  totalBytes: number;
  /**
   * With `--compress zstd`: the runs tried, those sent compressed, their raw
   * payload bytes and the bytes they took on the wire (absent without it).
   */
  compression?: CompressionStats;
  /** The source RAM digest at the stop point (hex). */
  sourceDigest: string | null;
  /** The digest the destination computed (hex), when it reported one. */
  destinationDigest: string | null;
  /** Each dirty source's scope. */
  dirtyScope: Record<string, DirtyScope>;
  /**
   * Which device-side dirty source served which RAM region, and why the
   * others were not used (absent without device-side sources).
   */
  sourceSelection?: SourceSelection;
  /** The policy applied. */
  policy: {
    imprecise: "refuse" | "allow";
    applied: string;
    downtimeLimitMs: number;
    maxIterations: number;
    maxTotalMs: number;
    autoConverge: boolean;
  };
  /** Device state migration. */
  devices: DeviceReport[];
}

/**
 * Checks that a parsed JSON value is a version-1 report.
 *
 * @param value The parsed JSON.
 * @param source Where it came from, for the message.
 * @returns The report.
 * @throws {TypeError} Naming the first missing or mistyped field.
 *
 * @example
 * ```ts ignore
 * const report = parseReport(JSON.parse(text), "report.json");
 * ```
 */
export function parseReport(value: unknown, source: string): MigrationReport {
  const r = value as Record<string, unknown>;
  const fail = (field: string) => {
    throw new TypeError(`Cannot read the migration report ${source}: ${field} is missing or wrong`);
  };
  if (typeof r !== "object" || r === null) fail("the top-level object");
  if (r.version !== 1) fail("version (1)");
  if (!Array.isArray(r.iterations)) fail("iterations");
  for (const [i, row] of (r.iterations as Record<string, unknown>[]).entries()) {
    for (
      const k of ["iteration", "dirtyPages", "sentPages", "bytes", "durationMs", "bandwidthMBps"]
    ) {
      if (typeof row?.[k] !== "number") fail(`iterations[${i}].${k}`);
    }
  }
  if (typeof r.totalMs !== "number") fail("totalMs");
  if (r.result !== "completed" && r.result !== "failed") fail("result");
  return value as MigrationReport;
}

/**
 * A report with nothing done yet (`result` is `failed` until a migration completes).
 *
 * @param fields Where to, how much RAM, the device policy and the limits in force.
 * @returns The report.
 *
 * @example
 * ```ts
 * import { newReport } from "./report.ts";
 * const r = newReport({
 *   transport: "tcp:127.0.0.1:4444",
 *   ramBytes: 1 << 30,
 *   imprecise: "refuse",
 *   applied: "precise sources only",
 *   limits: { downtimeLimitMs: 300, maxIterations: 30, maxTotalMs: 120_000, autoConverge: false },
 * });
 * console.log(r.result); // "failed"
 * ```
 */
export function newReport(fields: {
  transport: string;
  ramBytes: number;
  imprecise: "refuse" | "allow";
  applied: string;
  limits: Readonly<
    Pick<
      Required<ConvergenceLimits>,
      "downtimeLimitMs" | "maxIterations" | "maxTotalMs" | "autoConverge"
    >
  >;
}): MigrationReport {
  const { limits } = fields;
  return {
    version: 1,
    result: "failed",
    transport: fields.transport,
    ramBytes: fields.ramBytes,
    pageSize: 4096,
    iterations: [],
    stopCopyPages: 0,
    downtimeMs: null,
    expectedDowntimeMs: null,
    totalMs: 0,
    totalBytes: 0,
    sourceDigest: null,
    destinationDigest: null,
    dirtyScope: {},
    policy: {
      imprecise: fields.imprecise,
      applied: fields.applied,
      downtimeLimitMs: limits.downtimeLimitMs,
      maxIterations: limits.maxIterations,
      maxTotalMs: limits.maxTotalMs,
      autoConverge: limits.autoConverge,
    },
    devices: [],
  };
}
