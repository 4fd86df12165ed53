/**
 * What a person (or a program) watching a migration sees: its status, with
 * QEMU's meanings, and counters named after `query-migrate`'s, delivered as
 * events while it runs and kept in the report.
 *
 * @module
 */

import type { IterationRow } from "./report.ts";

/**
 * A migration's status, as QEMU's `MigrationStatus`: `setup` while sources
 * start and the stream opens, `active` during pre-copy, `device` while the
 * guest is paused and the last pages and device state go, then `completed`
 * or `failed`.
 */
export type MigrationStatus = "setup" | "active" | "device" | "completed" | "failed";

/** The engine's phases; a failure is blamed on the one running. */
export type MigrationPhase = "setup" | "iterate" | "stop-and-copy" | "complete" | "cleanup";

/** Counters, as QEMU's `query-migrate` reports them (times in ms, sizes in bytes). */
export interface MigrationCounters {
  /** The status now. */
  status: MigrationStatus;
  /** The phase now. */
  phase: MigrationPhase;
  /** From the start to now (or to the end). QEMU: `total-time`. */
  totalMs: number;
  /** From the start to the stream header: trackers started, connected. QEMU: `setup-time`. */
  setupMs: number | null;
  /** From the pause to the destination holding the whole image. QEMU: `downtime`. */
  downtimeMs: number | null;
  /** What the policy expects the downtime to be. QEMU: `expected-downtime`. */
  expectedDowntimeMs: number | null;
  /** Stream bytes written. QEMU: `ram.transferred`. */
  transferredBytes: number;
  /** RAM (and device state) still to send, as of the last harvest. QEMU: `ram.remaining`. */
  remainingBytes: number;
  /** The guest RAM size. QEMU: `ram.total`. */
  totalRamBytes: number;
  /** Zero pages sent as runs, without bytes. QEMU: `ram.duplicate`. */
  duplicatePages: number;
  /** Pages sent with their bytes. QEMU: `ram.normal`. */
  normalPages: number;
  /** Of the zero pages, those never written, sent without being read (ours alone). */
  skippedPages: number;
  /** Pages dirtied per second, over the last iteration. QEMU: `ram.dirty-pages-rate`. */
  dirtyPagesRate: number;
  /** Stream throughput over the last iteration, Mbit/s. QEMU: `ram.mbps`. */
  throughputMbps: number;
  /** How many times every dirty source was harvested. QEMU: `ram.dirty-sync-count`. */
  dirtySyncCount: number;
  /** Stream bytes written while the guest ran. QEMU: `ram.precopy-bytes`. */
  precopyBytes: number;
  /** Stream bytes written while the guest was paused. QEMU: `ram.downtime-bytes`. */
  downtimeBytes: number;
  /** The workload's throttle, percent. QEMU: `cpu-throttle-percentage`. */
  throttlePercent: number;
  /** Pre-copy iterations finished. */
  iterations: number;
  /** Device state the devices report pending, bytes (QEMU's `vfio_state_pending_exact`). */
  pendingDeviceBytes: number;
  /**
   * How far along, 0 to 100; never runs backwards. While dirtying outpaces
   * sending, it holds and {@linkcode MigrationCounters.outpaced} says so.
   */
  percent: number;
  /** The last iteration left more dirty than it sent: the guest dirties faster than we send. */
  outpaced: boolean;
}

/** What a subscriber to a migration hears. */
export type MigrationEvent =
  /** The status changed. */
  | { readonly type: "status"; readonly counters: Readonly<MigrationCounters> }
  /** Pages went out within an iteration. */
  | { readonly type: "progress"; readonly counters: Readonly<MigrationCounters> }
  /** An iteration ended (its row is in the report too). */
  | {
    readonly type: "iteration";
    readonly row: Readonly<IterationRow>;
    readonly counters: Readonly<MigrationCounters>;
  }
  /**
   * The destination acknowledged the devices' initial pre-copy data
   * (switchover ack): stop-and-copy may start.
   */
  | { readonly type: "switchover"; readonly counters: Readonly<MigrationCounters> };
