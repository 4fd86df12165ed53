/**
 * The destination's side of parallel channels: accepts the extra
 * connections on the main stream's listener, lets in only those whose hello
 * carries this migration's nonce, count and page size, and loads their RAM
 * sections into guest RAM, each channel checked as the main stream is
 * (bounds, CRCs, pages inside regions, its idle bound). At each iteration
 * marker a channel waits until every channel has delivered it. See
 * `STREAM.md`, "Parallel channels".
 *
 * @module
 */

import { type ChannelRole, SectionLoader } from "../stream/_section_loader.ts";
import { StreamBuffer } from "../stream/_stream_buffer.ts";
import type { WrittenPages } from "../stream/_written_pages.ts";
import {
  CHANNEL_HELLO_BYTES,
  CHANNEL_NONCE_BYTES,
  decodeChannelHello,
} from "../stream/channel_hello.ts";
import { StreamError } from "../stream/error.ts";
import { MAX_RUN_BYTES, SPARSE_HEAD_BYTES, sparseBitmapBytes } from "../stream/format.ts";
import type { RamAccess } from "../stream/ram.ts";
import type { ReceiveSummary } from "../stream/receive_types.ts";
import type { StreamChannel, StreamListener } from "../transport/channel.ts";
import { acceptPeers, type AcceptPolicy } from "../guest/_source_acceptor.ts";
import { IterationBarrier } from "./_iteration_barrier.ts";

/** Options of {@linkcode ChannelReceiver}. */
export interface ChannelReceiverOptions {
  /** How many parallel channels the source opens, 2 to 64. */
  count: number;
  /** The stream's page size. */
  pageSize: number;
  /**
   * The RAM started zeroed: the written-pages map all streams of the
   * migration share (the main stream's too).
   */
  written?: WrittenPages;
  /** How long a joined channel may send nothing, ms. */
  idleTimeoutMs: number;
  /** How long all channels have to join, and each connected peer its hello, ms. */
  helloTimeoutMs: number;
  /** Peers waiting for their hello at once. */
  maxPending: number;
  /** Peers refused before giving up. */
  maxAttempts: number;
  /** Told of each refused peer. */
  onRejected?: (peer: string, reason: string) => void;
  /** Tells a refused peer why (best effort). */
  refuse?: (channel: StreamChannel, reason: string) => Promise<void>;
  /** Aborting stops accepting and loading. */
  signal?: AbortSignal;
}

interface Joined {
  index: number;
  buf: StreamBuffer;
}

/**
 * Receives the parallel channels of one migration.
 *
 * @example
 * ```ts ignore
 * const receiver = new ChannelReceiver(ram, { count: 4, pageSize: 4096, ... });
 * await main.write(encodeChannelNonce(receiver.nonce));
 * const summaries = await receiver.run(listener, next);
 * ```
 */
export class ChannelReceiver {
  /** The nonce every channel's hello must carry (random, per migration). */
  readonly nonce: Uint8Array = crypto.getRandomValues(new Uint8Array(CHANNEL_NONCE_BYTES));
  #ram: RamAccess;
  #options: ChannelReceiverOptions;
  #barrier: IterationBarrier;
  #written: WrittenPages | undefined;
  #taken: boolean[];
  #channels: StreamChannel[] = [];
  #stop = new AbortController();

  /**
   * Creates the receiver.
   *
   * @param ram The destination's RAM (the main stream's header matched it).
   * @param options The count, page size and bounds.
   */
  constructor(ram: RamAccess, options: ChannelReceiverOptions) {
    this.#ram = ram;
    this.#options = options;
    this.#barrier = new IterationBarrier(options.count);
    this.#taken = new Array(options.count).fill(false);
    this.#written = options.written;
  }

  /**
   * Accepts every channel on `listener` (closed once they all joined or on
   * failure), then loads them all until each has sent COMPLETE.
   *
   * @param listener The main stream's listener, still open.
   * @param first The accept already in flight on it.
   * @returns Each channel's summary, by channel index.
   * @throws {StreamError} Naming the channel, when one is malformed or cut.
   * @throws {MigrationError} When not every channel joins in time.
   */
  async run(listener: StreamListener, first: Promise<StreamChannel>): Promise<ReceiveSummary[]> {
    const o = this.#options;
    const deadline = new AbortController();
    const timer = setTimeout(
      () =>
        deadline.abort(
          new Deno.errors.TimedOut(
            `Not every one of ${o.count} parallel channels joined within ${
              o.helloTimeoutMs / 1000
            } s (does the source migrate with --channels ${o.count}?)`,
          ),
        ),
      o.helloTimeoutMs,
    );
    const signals = [deadline.signal, this.#stop.signal];
    if (o.signal) signals.push(o.signal);
    const policy: AcceptPolicy = {
      headerTimeoutMs: o.helloTimeoutMs,
      maxAttempts: o.maxAttempts,
      maxPending: o.maxPending,
      onRejected: o.onRejected,
      refuse: o.refuse,
      signal: AbortSignal.any(signals),
      count: o.count,
      first,
    };
    // The accept already in flight has no signal of its own: closing the
    // listener stops it.
    const stopListening = () => listener.close();
    policy.signal!.addEventListener("abort", stopListening, { once: true });
    let joined;
    try {
      joined = await acceptPeers(listener, (channel) => this.#hello(channel), policy);
    } catch (e) {
      const stopped = signals.find((s) => s.aborted);
      throw stopped === undefined ? e : stopped.reason;
    } finally {
      clearTimeout(timer);
      policy.signal!.removeEventListener("abort", stopListening);
    }
    this.#channels = joined.peers.map((p) => p.channel);
    try {
      const runs = joined.peers.map(({ channel, value }) => {
        channel.timeoutMs = o.idleTimeoutMs;
        return this.#load(value);
      });
      const out: ReceiveSummary[] = [];
      for (const [i, s] of (await this.#firstFailure(runs)).entries()) {
        out[joined.peers[i].value.index] = s;
      }
      const problem = this.#barrier.endProblem();
      if (problem !== undefined) {
        throw new RangeError(`Cannot receive parallel channels: ${problem}`);
      }
      return out;
    } finally {
      for (const c of this.#channels) c.close();
    }
  }

  /**
   * Stops accepting and aborts every channel.
   *
   * @param reason Why.
   */
  abort(reason: unknown): void {
    this.#stop.abort(reason);
    const e = reason instanceof Error ? reason : new Deno.errors.Interrupted(String(reason));
    this.#barrier.fail(e);
    for (const c of this.#channels) c.abort(reason);
  }

  // The first failure aborts the other channels, and is the one reported.
  async #firstFailure(runs: Promise<ReceiveSummary>[]): Promise<ReceiveSummary[]> {
    let first: unknown;
    const guarded = runs.map((p) =>
      p.catch((e) => {
        if (first === undefined) {
          first = e;
          this.abort(e);
        }
        throw e;
      })
    );
    const settled = await Promise.allSettled(guarded);
    if (first !== undefined) throw first;
    return settled.map((s) => (s as PromiseFulfilledResult<ReceiveSummary>).value);
  }

  async #load({ index, buf }: Joined): Promise<ReceiveSummary> {
    const o = this.#options;
    const role: ChannelRole = {
      written: this.#written,
      iterationBarrier: (n) => this.#barrier.arrive(index, n),
    };
    const loader = new SectionLoader(
      buf,
      this.#ram,
      { digest: () => new Uint8Array(0), pageSize: o.pageSize, zeroed: o.written !== undefined },
      role,
    );
    try {
      const summary = await loader.run();
      this.#barrier.finish(index);
      return summary;
    } catch (e) {
      if (e instanceof StreamError) {
        throw new StreamError(e.offset, `Parallel channel ${index} of ${o.count}: ${e.reason}`, {
          cause: e,
        });
      }
      throw e;
    }
  }

  // Reads and checks a peer's hello: the format, then that it belongs to
  // this migration (nonce, count, page size) and takes a free channel.
  async #hello(channel: StreamChannel): Promise<Joined> {
    const o = this.#options;
    const largest = Math.max(
      8192,
      SPARSE_HEAD_BYTES + sparseBitmapBytes(MAX_RUN_BYTES / o.pageSize),
      o.pageSize,
    );
    const buf = new StreamBuffer(channel, Math.max(256 << 10, largest));
    const bytes = await buf.take(CHANNEL_HELLO_BYTES, "a channel hello");
    const hello = decodeChannelHello(bytes);
    if (!hello.nonce.every((b, i) => b === this.nonce[i])) {
      throw new RangeError("Channel hello carries another migration's nonce");
    }
    if (hello.count !== o.count) {
      throw new RangeError(
        `Channel hello is for ${hello.count} channels, this destination receives ${o.count}`,
      );
    }
    if (hello.pageSize !== o.pageSize) {
      throw new RangeError(`Channel hello page size ${hello.pageSize} is not ${o.pageSize}`);
    }
    if (this.#taken[hello.index]) {
      throw new RangeError(`Channel ${hello.index} has already joined`);
    }
    this.#taken[hello.index] = true;
    return { index: hello.index, buf };
  }
}
