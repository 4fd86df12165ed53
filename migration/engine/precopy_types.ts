/**
 * The inputs of the pre-copy engine and its failure: the RAM, the sink,
 * progress events, options, and {@linkcode MigrationFailure}.
 *
 * @module
 */

import type { RamAccess } from "../stream/ram.ts";
import type { ConvergenceLimits } from "./convergence.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import type { DirtySource } from "./dirty_source.ts";
import { MigrationError } from "./errors.ts";
import type { IterationRow, MigrationReport } from "./report.ts";
import type { Workload } from "./workload.ts";

/** The RAM being migrated: its regions, and zero-copy views. */
export interface MigrationRam {
  /** The regions, in order. */
  readonly regions: readonly {
    readonly gpa: bigint;
    readonly size: bigint;
    readonly pages: number;
  }[];
  /** A zero-copy view of guest RAM. */
  view(gpa: bigint, length: number): Uint8Array;
  /** Optional: never-written ranges of `[gpa, gpa + length)` (see `RamAccess.unpopulated`). */
  unpopulated?(gpa: bigint, length: number): [number, number][];
}

/** Where the stream goes (a `StreamWriter`). */
export interface MigrationSink {
  /** Bytes written so far. */
  readonly bytesWritten: number;
  /** Writes the header. */
  writeHeader(layout: readonly { gpa: bigint; size: bigint }[], pageSize: number): Promise<void>;
  /** Writes a page range, eliding zero pages. */
  writePages(
    ram: RamAccess,
    gpa: bigint,
    pages: number,
  ): Promise<unknown>;
  /**
   * Writes many page runs of one region (pairs of first page after `gpa`
   * and count), eliding zero pages. Optional: without it each run is a
   * `writePages` call.
   */
  writePageRuns?(
    ram: RamAccess,
    gpa: bigint,
    runs: readonly number[],
  ): Promise<unknown>;
  /** Writes a device's state. */
  writeDeviceState(id: string, bytes: Uint8Array): Promise<void>;
  /** Marks the end of an iteration. */
  writeIteration(n: number): Promise<void>;
  /** Marks the image complete (every page and device state sent) and flushes. */
  writeComplete(): Promise<void>;
  /** Writes the end marker with the source digest. */
  writeEnd(digest: Uint8Array): Promise<void>;
}

/** Progress, once per iteration and at each phase. */
export interface MigrationProgress {
  /** `precopy`, `stop-and-copy` or `done`. */
  readonly phase: string;
  /** The iteration row, during pre-copy. */
  readonly row?: IterationRow;
  /** Bytes written so far. */
  readonly bytes: number;
}

/** Options of `migrate`. */
export interface MigrateOptions {
  /** The RAM. */
  ram: MigrationRam;
  /**
   * The stream sink, or a function that opens it: called once the dirty
   * sources are started and their scope is known, just before the header
   * is written, so a destination does not wait while tracking starts.
   */
  sink: MigrationSink | (() => Promise<MigrationSink>);
  /**
   * Aborting stops the migration at the next step (the caller also wires it
   * to the transport, so a pending write or read stops at once): the
   * workload is resumed and the failure names the signal's reason.
   */
  signal?: AbortSignal;
  /** Dirty sources, merged each iteration (CPU tracker, VFIO container…). */
  sources: DirtySource[];
  /** The running workload, paused at stop-and-copy and throttled by auto-converge. */
  workload?: Workload;
  /** Devices whose state migrates. */
  devices?: DeviceMigrator[];
  /** Convergence limits. */
  limits?: ConvergenceLimits;
  /** What to do with an `all-mapped` (imprecise) device source: refuse (default) or allow. */
  imprecise?: "refuse" | "allow";
  /** The source RAM digest at the stop point (taken while paused). */
  digest: () => { bytes: Uint8Array; hex: string };
  /**
   * Resolves once the destination holds the whole image (live transports):
   * downtime ends there. Verification follows, outside the downtime.
   */
  destinationImage?: () => Promise<void>;
  /**
   * Resolves with the destination's digest once it verified the image (live
   * transports). A digest other than the source's fails the migration.
   */
  destinationReady?: () => Promise<string | null>;
  /** Where the stream goes, for the report. */
  transport: string;
  /**
   * When the migration started (`performance.now()`), if before this call:
   * the caller's setup (starting dirty tracking, connecting) then counts in
   * `imageMs` and `totalMs`. Default: now.
   */
  startedAt?: number;
  /** Called with progress. */
  onProgress?: (p: MigrationProgress) => void;
}

/** A migration that failed carries its report. */
export class MigrationFailure extends MigrationError {
  /** The report up to the failure. */
  readonly report: MigrationReport;

  /**
   * Creates the error.
   *
   * @param error The failure.
   * @param report The report.
   */
  constructor(error: MigrationError, report: MigrationReport) {
    super(error.phase, error.message, { cause: error.cause });
    this.name = "MigrationFailure";
    this.report = report;
  }
}
