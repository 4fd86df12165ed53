/**
 * The source's side of parallel channels (QEMU's multifd): a
 * {@linkcode MigrationSink} that keeps the main stream for its header,
 * iteration markers, device state, COMPLETE and END, and sends every RAM
 * page on one of `count` extra connections, each fed by its own Worker that
 * zero-checks, checksums and sends a disjoint share of each call's pages.
 * At each iteration marker every channel writes its own marker and the sink
 * waits for all of them (QEMU's `multifd_send_sync_main`); COMPLETE goes on
 * the main stream only after every channel has sent its COMPLETE. See
 * `STREAM.md`, "Parallel channels".
 *
 * @module
 */

import type { GuestMemoryDescriptor } from "../../memory/guest_memory.ts";
import type { GuestAddress } from "../../sys/address.ts";
import type { CompressionStats, StreamCompression } from "../stream/compression.ts";
import { findRegion } from "../stream/format.ts";
import type { RamAccess, RamRegionLayout } from "../stream/ram.ts";
import type { StreamWriter, WritePagesResult } from "../stream/writer.ts";
import type { StreamChannel } from "../transport/channel.ts";
import type { TlsCredentials } from "../transport/tls_credentials.ts";
import type { MigrationSink } from "../engine/types.ts";
import { ChannelFailure, ChannelPool } from "./_channel_pool.ts";
import { readChannelNonce } from "./_nonce_answer.ts";

export { ChannelFailure };
import { splitRuns } from "./_partition.ts";

/** Options of {@linkcode ChannelSink}. */
export interface ChannelSinkOptions {
  /** Extra connections carrying RAM, 2 to 64. */
  count: number;
  /** The destination, as the main connection dialled it. */
  to: string;
  /** For `tls:`: the source's credentials and the destination's expected name. */
  tls?: { credentials: TlsCredentials; serverName?: string };
  /** The guest RAM the Workers attach to (`GuestMemory.describe()`). */
  memory: GuestMemoryDescriptor;
  /** Bound on the destination's nonce answer, each connect, and each write, ms. */
  timeoutMs: number;
  /** Copy large runs before checksumming them (RAM may change meanwhile). */
  snapshotRuns?: boolean;
  /** Compress RAM runs on every channel. */
  compress?: StreamCompression;
  /** A cap on all channels together, bytes per second (each gets its share). */
  bytesPerSecond?: number;
}

/**
 * Writes a migration over a main stream and `count` parallel channels.
 * Guest RAM must be mapped memory (a `GuestMemory`), which each Worker
 * attaches to by address.
 *
 * @example Migrate over 4 channels
 * ```ts ignore
 * const sink = new ChannelSink({
 *   count: 4, to: "tcp:127.0.0.1:4444", memory: memory.describe(), timeoutMs: 10_000,
 * }).attach(new StreamWriter(channel), channel);
 * await migrate({ ram: sourceRam(memory), sink, ... });
 * sink.close();
 * ```
 */
export class ChannelSink implements MigrationSink, Disposable {
  #main: StreamWriter | undefined;
  #mainChannel: StreamChannel | undefined;
  #options: ChannelSinkOptions;
  #pool: ChannelPool;
  #layout: readonly RamRegionLayout[] = [];
  #pageSize = 4096n;

  /**
   * Creates the sink and starts its Workers (they load while the caller
   * sets up); nothing is connected or written until `writeHeader()`.
   *
   * @param options The channels: count, destination, RAM, bounds.
   * @throws {RangeError} If the count is not in 2 to 64.
   */
  constructor(options: ChannelSinkOptions) {
    if (!Number.isInteger(options.count) || options.count < 2 || options.count > 64) {
      throw new RangeError(`Cannot open ${options.count} parallel channels: expected 2 to 64`);
    }
    this.#options = options;
    this.#pool = new ChannelPool(options.count);
  }

  /**
   * Sets the main stream, once connected.
   *
   * @param main The main stream's writer.
   * @param mainChannel Its connection, where the destination's answers arrive.
   * @returns This sink.
   */
  attach(main: StreamWriter, mainChannel: StreamChannel): this {
    this.#main = main;
    this.#mainChannel = mainChannel;
    return this;
  }

  #mainWriter(): StreamWriter {
    if (this.#main === undefined) throw new TypeError("Cannot write: no main stream is attached");
    return this.#main;
  }

  /** Bytes of the main stream and every channel so far. */
  get bytesWritten(): number {
    return this.#pool.bytes + (this.#main?.bytesWritten ?? 0);
  }

  /** What compression did on all channels, with `compress: "zstd"`. */
  get compression(): CompressionStats | undefined {
    return this.#pool.compression;
  }

  /**
   * Writes the main header, reads the destination's channel nonce, and
   * opens every channel (each Worker connects and sends its hello).
   *
   * @param layout The source's RAM regions.
   * @param pageSize The page size.
   * @returns Nothing, once every channel is open.
   * @throws {Deno.errors.TimedOut} If the destination gives no nonce within the bound.
   * @throws {ChannelFailure} If a channel cannot connect.
   */
  async writeHeader(layout: readonly RamRegionLayout[], pageSize: number): Promise<void> {
    this.#layout = layout;
    this.#pageSize = BigInt(pageSize);
    await this.#mainWriter().writeHeader(layout, pageSize);
    await this.#mainWriter().flush();
    const nonce = await readChannelNonce(this.#mainChannel!, this.#options);
    const o = this.#options;
    await this.#pool.all((index) => ({
      op: "start",
      id: 0,
      index,
      count: o.count,
      nonce,
      to: o.to,
      tls: o.tls,
      timeoutMs: o.timeoutMs,
      memory: o.memory,
      pageSize,
      snapshotRuns: o.snapshotRuns ?? false,
      compress: o.compress,
      bytesPerSecond: o.bytesPerSecond === undefined ? undefined : o.bytesPerSecond / o.count,
    }));
  }

  /**
   * Sends a page range: as {@linkcode writePageRuns}, region by region.
   *
   * @param ram The source's RAM (the Workers read the same memory).
   * @param gpa The first page.
   * @param pages How many pages.
   * @returns What went as data and as zero pages.
   */
  async writePages(ram: RamAccess, gpa: GuestAddress, pages: number): Promise<WritePagesResult> {
    const total = { pages: 0, zeroPages: 0, skippedPages: 0 };
    let at = gpa as bigint;
    let left = pages;
    while (left > 0) {
      const i = findRegion(this.#layout, at, 1n);
      if (i < 0) {
        throw new RangeError(`Cannot send pages: GPA 0x${at.toString(16)} is in no region`);
      }
      const r = this.#layout[i];
      const n = Math.min(left, Number((r.gpa + r.size - at) / this.#pageSize));
      const got = await this.writePageRuns(ram, at as GuestAddress, [0, n]);
      total.pages += got.pages;
      total.zeroPages += got.zeroPages;
      total.skippedPages += got.skippedPages;
      at += BigInt(n) * this.#pageSize;
      left -= n;
    }
    return total;
  }

  /**
   * Sends many page runs of one region: each channel gets a contiguous
   * share of about equal pages, and all send at once.
   *
   * @param _ram The source's RAM (the Workers read the same memory).
   * @param gpa GPA the runs count from.
   * @param runs Pairs of first page after `gpa` and count.
   * @returns What went as data and as zero pages, over all channels.
   */
  async writePageRuns(
    _ram: RamAccess,
    gpa: GuestAddress,
    runs: readonly number[],
  ): Promise<WritePagesResult> {
    const pieces = splitRuns(runs, this.#pool.count);
    const replies = await this.#pool.all((i) =>
      pieces[i].length === 0 ? undefined : { op: "runs", id: 0, gpa, runs: pieces[i] }
    );
    const total = { pages: 0, zeroPages: 0, skippedPages: 0 };
    for (const r of replies) {
      if (r?.result === undefined) continue;
      total.pages += r.result.pages;
      total.zeroPages += r.result.zeroPages;
      total.skippedPages += r.result.skippedPages;
    }
    return total;
  }

  /**
   * Writes a device's state on the main stream.
   *
   * @param id The device id.
   * @param bytes The state.
   * @returns Nothing.
   */
  writeDeviceState(id: string, bytes: Uint8Array): Promise<void> {
    return this.#mainWriter().writeDeviceState(id, bytes);
  }

  /**
   * Sends what the main stream holds back (the device sections before the
   * engine waits for the switchover ack); the channels send on their own.
   *
   * @returns Nothing.
   */
  flush(): Promise<void> {
    return this.#mainWriter().flush();
  }

  /**
   * Writes a chunk of a device's pre-copy data on the main stream (an empty
   * chunk announces the device).
   *
   * @param id The device id.
   * @param bytes The chunk.
   * @returns Nothing.
   */
  writeDevicePrecopy(id: string, bytes: Uint8Array): Promise<void> {
    return this.#mainWriter().writeDevicePrecopy(id, bytes);
  }

  /**
   * Marks on the main stream that a device has sent its initial data.
   *
   * @param id The device id.
   * @returns Nothing.
   */
  writeDeviceInitialSent(id: string): Promise<void> {
    return this.#mainWriter().writeDeviceInitialSent(id);
  }

  /**
   * Marks the end of an iteration on every channel and on the main stream,
   * and waits until every channel has sent its marker.
   *
   * @param n The iteration number.
   * @returns Nothing.
   */
  async writeIteration(n: number): Promise<void> {
    await this.#pool.all(() => ({ op: "iteration", id: 0, n }));
    await this.#mainWriter().writeIteration(n);
  }

  /**
   * Ends every channel (COMPLETE, flushed, closed), then writes COMPLETE on
   * the main stream.
   *
   * @returns Nothing.
   */
  async writeComplete(): Promise<void> {
    await this.#pool.all(() => ({ op: "complete", id: 0 }));
    await this.#mainWriter().writeComplete();
  }

  /**
   * Writes END on the main stream.
   *
   * @param digest The source's RAM digest.
   * @returns Nothing.
   */
  writeEnd(digest: Uint8Array): Promise<void> {
    return this.#mainWriter().writeEnd(digest);
  }

  /** Stops every Worker (their connections close with them). Idempotent. */
  close(): void {
    this.#pool.close();
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
