/**
 * What {@linkcode receiveStream} takes and reports.
 *
 * @module
 */

import type { RamAccess } from "./ram.ts";

/** Options for `receiveStream()`. */
export interface ReceiveOptions {
  /**
   * Computes the destination's RAM digest, compared with the END section's.
   * Called once, at COMPLETE, while the source computes its own.
   */
  digest(ram: RamAccess): Uint8Array | Promise<Uint8Array>;
  /** The destination's page size; the stream's must equal it. Default 4096. */
  pageSize?: number;
  /**
   * The ids of the devices this destination restores. A device-state section
   * for any other id is refused when it arrives. Default: none (a stream
   * carrying device state is refused).
   */
  devices?: readonly string[];
  /**
   * Cap on device-state bytes kept from the stream, each section counted
   * with its id and 64 bytes of overhead; default 64 MiB.
   */
  maxDeviceStateBytes?: number;
  /** Cap on device-state sections in the stream; default 4096. */
  maxDeviceStateChunks?: number;
  /** Cap on device-state sections for one device; default 1024. */
  maxDeviceStateChunksPerDevice?: number;
  /**
   * Devices (a subset of `devices`) whose device-state and pre-copy chunks
   * are handed to `onDeviceChunk` as each section's checksum holds, in
   * stream order, instead of being kept in the summary. Default: none.
   */
  streamDevices?: readonly string[];
  /** Takes a chunk of a `streamDevices` device (an empty one announces its pre-copy). */
  onDeviceChunk?: (id: string, bytes: Uint8Array) => void | Promise<void>;
  /**
   * Called once, when every device that announced pre-copy has sent its
   * initial-data-sent marker (and its chunks were taken): a live destination
   * answers "switchover ack" here.
   */
  onSwitchoverReady?: () => void | Promise<void>;
  /** Size of the read buffer for small sections; default 256 KiB. */
  bufferBytes?: number;
  /**
   * Called at the COMPLETE section, before the digest: the destination holds
   * the whole image. A live destination answers the source here, which ends
   * the downtime.
   */
  onComplete?: () => void | Promise<void>;
  /**
   * The RAM is all zero before the stream (fresh anonymous or memfd memory).
   * Zero pages the stream has not written are then left alone, not read;
   * default false.
   */
  zeroed?: boolean;
  /** Called at each iteration marker, for progress. */
  onIteration?: (iteration: number) => void;
  /**
   * Wait for end of stream after END and reject any byte that follows
   * (default true). A live transport passes `false`: its source keeps the
   * connection open for the destination's answer, so only bytes already
   * received after END are rejected.
   */
  expectEof?: boolean;
}

/** Section counts by type. */
export interface SectionCounts {
  /** RAM page runs. */
  ram: number;
  /** Zero-page runs. */
  zero: number;
  /** Sparse runs (pages sent and zero pages interleaved). */
  sparse: number;
  /** Compressed RAM runs. */
  compressed: number;
  /** Device-state sections. */
  deviceState: number;
  /** Device pre-copy sections. */
  devicePrecopy: number;
  /** Initial-data-sent markers. */
  deviceInitialSent: number;
  /** Iteration markers. */
  iteration: number;
  /** END markers (always 1 on success). */
  end: number;
}

/** What a verified stream carried. */
export interface ReceiveSummary {
  /** Sections by type. */
  sections: SectionCounts;
  /** Pages received with their bytes (a page sent twice counts twice). */
  pages: number;
  /** Pages received as zero runs. */
  zeroPages: number;
  /** Length of the stream in bytes. */
  bytes: number;
  /**
   * Device-state and pre-copy chunks by device id, in stream order (not
   * for `streamDevices`, whose chunks went to `onDeviceChunk`).
   */
  deviceStates: Map<string, Uint8Array[]>;
  /** How many iteration markers were seen. */
  iterations: number;
  /** The last iteration number seen, or `undefined`. */
  lastIteration: number | undefined;
  /** The verified digest from the END section. */
  digest: Uint8Array;
}
