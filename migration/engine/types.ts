/**
 * The inputs of the pre-copy engine and its failure: the sink it writes the
 * stream to, its options, and {@linkcode MigrationFailure}.
 *
 * @module
 */

import type { GuestAddress } from "../../sys/address.ts";
import type { RamAccess, RamRegionLayout } from "../stream/ram.ts";
import type { WritePagesResult } from "../stream/writer.ts";
import type { CompressionStats } from "../stream/compression.ts";
import type { ConvergenceLimits } from "./convergence.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import type { DirtySource } from "./dirty_source.ts";
import type { UnavailableSource } from "./source_selection.ts";
import { MigrationError } from "./errors.ts";
import type { MigrationReport } from "./report.ts";
import type { MigrationEvent, MigrationPhase } from "./status.ts";
import type { Workload } from "./workload.ts";

/** Where the stream goes (a `StreamWriter`). */
export interface MigrationSink {
  /** Bytes written so far. */
  readonly bytesWritten: number;
  /** What compression did, when the sink compresses (`StreamWriter`'s `compress`). */
  readonly compression?: CompressionStats;
  /** Writes the header. */
  writeHeader(layout: readonly RamRegionLayout[], pageSize: number): Promise<void>;
  /** Writes a page range, eliding zero pages. */
  writePages(ram: RamAccess, gpa: GuestAddress, pages: number): Promise<WritePagesResult>;
  /**
   * Writes many page runs of one region (pairs of first page after `gpa`
   * and count), eliding zero pages. Optional: without it each run is a
   * `writePages` call.
   */
  writePageRuns?(
    ram: RamAccess,
    gpa: GuestAddress,
    runs: readonly number[],
  ): Promise<WritePagesResult>;
  /** Writes a device's state. */
  writeDeviceState(id: string, bytes: Uint8Array): Promise<void>;
  /**
   * Writes the next bytes of a device's pre-copy data (an empty first one
   * announces the device). Optional: without it, and
   * `writeDeviceInitialSent`, devices do not pre-copy.
   */
  writeDevicePrecopy?(id: string, bytes: Uint8Array): Promise<void>;
  /** Marks a device's initial pre-copy data as sent. */
  writeDeviceInitialSent?(id: string): Promise<void>;
  /** Hands batched bytes to the transport (before waiting for the destination). */
  flush?(): Promise<void>;
  /** Marks the end of an iteration. */
  writeIteration(n: number): Promise<void>;
  /** Marks the image complete (every page and device state sent) and flushes. */
  writeComplete(): Promise<void>;
  /** Writes the end marker with the source digest. */
  writeEnd(digest: Uint8Array): Promise<void>;
}

/** Options of `migrate()`. */
export interface MigrateOptions {
  /** The RAM. */
  ram: RamAccess;
  /**
   * The stream sink, or a function that opens it: called once the dirty
   * sources are started and their scope is known, just before the header
   * is written, so a destination does not wait while tracking starts.
   */
  sink: MigrationSink | (() => Promise<MigrationSink>);
  /** Dirty sources, merged each iteration (CPU tracker, VFIO container…). */
  sources: DirtySource[];
  /** The running workload, paused at stop-and-copy and throttled by auto-converge. */
  workload?: Workload;
  /** Devices whose state migrates. */
  devices?: DeviceMigrator[];
  /** Convergence limits. */
  limits?: ConvergenceLimits;
  /**
   * Device pre-copy bytes sent per iteration, over all devices in
   * `PRE_COPY` (default {@linkcode DEFAULT_DEVICE_PRECOPY_BYTES}).
   */
  devicePrecopyBytes?: number;
  /**
   * Resolves once the destination answered "switchover ack": every device
   * that announced pre-copy has its initial data loaded (live transports;
   * QEMU's `MIG_RP_MSG_SWITCHOVER_ACK`). Bounded by the caller (the peer
   * timeout). Stop-and-copy waits for it when devices pre-copy; without it
   * (a file) it does not wait.
   */
  switchoverAck?: (devices: readonly string[]) => Promise<void>;
  /**
   * Device-side sources that could not be created, and why (an iommufd HWPT
   * the IOMMU cannot track dirty pages in, a container without a migration
   * capability): the report lists them next to the ones selected.
   */
  unavailableSources?: UnavailableSource[];
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
  /**
   * Aborting stops the migration at the next step (the caller also wires it
   * to the transport, so a pending write or read stops at once): the
   * workload is resumed and the failure names the signal's reason.
   */
  signal?: AbortSignal;
  /**
   * Hears the migration: each status change, progress within an iteration,
   * and each iteration's row, with the counters as of then.
   */
  onEvent?: (event: MigrationEvent) => void;
}

/** Device pre-copy bytes sent per iteration by default, over all devices: 8 MiB. */
export const DEFAULT_DEVICE_PRECOPY_BYTES: number = 8 << 20;

/** A migration that failed carries its report, and the phase that was running. */
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

/** The phase names, for messages. */
export const PHASE_NAMES: Readonly<Record<MigrationPhase, string>> = {
  setup: "setup",
  iterate: "pre-copy",
  "stop-and-copy": "stop-and-copy",
  complete: "completion",
  cleanup: "cleanup",
};
