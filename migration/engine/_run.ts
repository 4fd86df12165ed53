// One migration's shared state across the engine's phases: the options, the
// policy, the report and counters, the phase running, and the two undo
// stacks (`cleanup` always runs; `undo` runs only on failure, to hand the
// guest back to the source).

import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { RamAccess, RamRegionLayout } from "../stream/ram.ts";
import { ConvergencePolicy } from "./convergence.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import type { DirtySource } from "./dirty_source.ts";
import { MigrationError } from "./errors.ts";
import { type MigrationReport, newReport } from "./report.ts";
import type {
  MigrationCounters,
  MigrationEvent,
  MigrationPhase,
  MigrationStatus,
} from "./status.ts";
import { type MigrateOptions, type MigrationSink, PHASE_NAMES } from "./types.ts";

export const PAGE = 4096;

/** A device in `PRE_COPY`: its migrator, and what it sent so far. */
export interface PrecopyDevice {
  readonly device: DeviceMigrator;
  /** Its initial-data-sent marker is written. */
  initialSent: boolean;
  /** Pre-copy data bytes sent. */
  bytes: number;
}

export class MigrationRun {
  readonly options: MigrateOptions;
  readonly ram: RamAccess;
  readonly layout: readonly RamRegionLayout[];
  readonly pagesPerRegion: readonly number[];
  readonly totalPages: number;
  readonly policy: ConvergencePolicy;
  readonly report: MigrationReport;
  readonly counters: MigrationCounters;
  readonly t0: number;
  /** Runs whatever happens: sources stop. */
  readonly cleanup: AsyncDisposableStack = new AsyncDisposableStack();
  /** Runs on failure only: the workload and devices run again. */
  readonly undo: AsyncDisposableStack = new AsyncDisposableStack();
  phase: MigrationPhase = "setup";
  sink: MigrationSink | undefined;
  /** Pages resent in full at stop-and-copy (all-mapped device sources). */
  fixed: DirtyBitmap[] | undefined;
  fixedBytes = 0;
  /** Per device-side source, the regions it serves (absent: every region). */
  serves: Map<DirtySource, boolean[]> | undefined;
  /** The devices in `PRE_COPY`, by id. */
  readonly precopy: Map<string, PrecopyDevice> = new Map();
  #percent = 0;

  constructor(options: MigrateOptions) {
    this.options = options;
    this.ram = options.ram;
    this.layout = options.ram.layout;
    this.pagesPerRegion = this.layout.map((r) => Number(r.size) / PAGE);
    this.totalPages = this.pagesPerRegion.reduce((a, b) => a + b, 0);
    this.policy = new ConvergencePolicy(options.limits);
    this.t0 = options.startedAt ?? performance.now();
    const ramBytes = this.totalPages * PAGE;
    this.report = newReport({
      transport: options.transport,
      ramBytes,
      imprecise: options.imprecise ?? "refuse",
      applied: "precise sources only",
      limits: this.policy.limits,
    });
    this.report.devices = (options.devices ?? []).map((d) => ({
      id: d.id,
      migrated: false,
      ...(d.supported ? {} : { reason: d.reason ?? "not supported" }),
    }));
    this.counters = {
      status: "setup",
      phase: "setup",
      totalMs: 0,
      setupMs: null,
      downtimeMs: null,
      expectedDowntimeMs: null,
      transferredBytes: 0,
      remainingBytes: ramBytes,
      totalRamBytes: ramBytes,
      duplicatePages: 0,
      normalPages: 0,
      skippedPages: 0,
      dirtyPagesRate: 0,
      throughputMbps: 0,
      dirtySyncCount: 0,
      precopyBytes: 0,
      downtimeBytes: 0,
      throttlePercent: 0,
      iterations: 0,
      pendingDeviceBytes: 0,
      percent: 0,
      outpaced: false,
    };
    this.report.counters = this.counters;
  }

  /** One 4 KiB bitmap per region, clear. */
  bitmaps(): DirtyBitmap[] {
    return this.pagesPerRegion.map((p) => new DirtyBitmap(p));
  }

  /** Stream bytes so far. */
  get bytes(): number {
    return this.sink?.bytesWritten ?? 0;
  }

  /** Starts a phase: a failure from now on is blamed on it. */
  enter(phase: MigrationPhase): void {
    this.phase = phase;
    this.counters.phase = phase;
  }

  /** Checks the migration's signal (its deadline, a caller's abort). */
  checkSignal(): void {
    this.options.signal?.throwIfAborted();
  }

  /**
   * Updates the counters that follow from the stream and the clock, and the
   * progress: `remaining` RAM bytes left, out of the guest's RAM. The
   * percentage holds (never goes back) while dirtying outpaces sending.
   */
  refresh(remaining?: number): void {
    const c = this.counters;
    c.totalMs = performance.now() - this.t0;
    c.transferredBytes = this.bytes;
    if (c.status === "device" || c.status === "completed") {
      c.downtimeBytes = c.transferredBytes - c.precopyBytes;
    } else c.precopyBytes = c.transferredBytes;
    if (remaining !== undefined) {
      c.remainingBytes = remaining + c.pendingDeviceBytes;
      const done = 100 * (1 - remaining / Math.max(1, c.totalRamBytes));
      this.#percent = Math.max(this.#percent, Math.min(c.status === "completed" ? 100 : 99, done));
    }
    c.percent = Math.floor(this.#percent * 10) / 10;
  }

  /** Sets the status and tells the subscriber. */
  status(status: MigrationStatus): void {
    this.counters.status = status;
    if (status === "completed") this.#percent = 100;
    this.refresh();
    this.emit({ type: "status", counters: { ...this.counters } });
  }

  /** Tells the subscriber; a subscriber that throws is recorded, not fatal. */
  emit(event: MigrationEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (e) {
      (this.report.warnings ??= []).push(
        `An event subscriber threw: ${e instanceof Error ? e.message : e}`,
      );
    }
  }

  /** The failure, blamed on the phase running, with the signal's reason when it aborted. */
  failure(e: unknown): MigrationError {
    const signal = this.options.signal;
    const cause = signal?.aborted ? signal.reason : e;
    const message = cause instanceof Error ? cause.message : String(cause);
    if (cause instanceof MigrationError) {
      return new MigrationError(this.phase, cause.message, { cause: cause.cause ?? cause });
    }
    return new MigrationError(
      this.phase,
      `Migration failed in ${PHASE_NAMES[this.phase]}: ${message}`,
      { cause },
    );
  }
}
