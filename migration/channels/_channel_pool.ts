// The source's Workers, one per parallel channel: requests go to each in
// order and their answers come back by id; a channel that fails stays
// failed, and so does every later request to the pool.

import type { CompressionStats } from "../stream/compression.ts";
import type { ChannelReply, ChannelRequest } from "./_channel_worker.ts";

/** A parallel channel failed: names the channel; the Worker's error is the message's tail. */
export class ChannelFailure extends Error {
  /** The channel, 0 to count - 1. */
  readonly channel: number;
  /** The error's class in the Worker (`BrokenPipe`, `TimedOut`…). */
  readonly errorName: string;

  /**
   * Creates the error.
   *
   * @param channel The channel.
   * @param count How many channels the migration has.
   * @param name The error class in the Worker.
   * @param message Its message.
   */
  constructor(channel: number, count: number, name: string, message: string) {
    super(`Channel ${channel} of ${count} failed: ${message}`);
    this.name = "ChannelFailure";
    this.channel = channel;
    this.errorName = name;
  }
}

interface Channel {
  worker: Worker;
  bytes: number;
  compression?: CompressionStats;
  error?: ChannelFailure;
  waiting: Map<
    number,
    { resolve: (r: ChannelReply & { ok: true }) => void; reject: (e: Error) => void }
  >;
}

export class ChannelPool {
  #channels: Channel[] = [];
  #nextId = 1;
  #failure: Error | undefined;

  // Starts `count` Workers; they load while the caller goes on.
  constructor(count: number) {
    for (let index = 0; index < count; index++) {
      const worker = new Worker(new URL("./_channel_worker.ts", import.meta.url), {
        type: "module",
      });
      const ch: Channel = { worker, bytes: 0, waiting: new Map() };
      worker.onmessage = (e: MessageEvent<ChannelReply>) => {
        const reply = e.data;
        const w = ch.waiting.get(reply.id);
        if (w === undefined) return;
        ch.waiting.delete(reply.id);
        if (reply.ok) {
          ch.bytes = reply.bytes;
          if (reply.compression !== undefined) ch.compression = reply.compression;
          w.resolve(reply);
        } else w.reject(new ChannelFailure(index, count, reply.name, reply.message));
      };
      // A Worker that dies (it cannot load, say) fails what waits on it and
      // everything asked of it later.
      worker.onerror = (e) => {
        e.preventDefault();
        ch.error = new ChannelFailure(index, count, "Error", e.message);
        for (const w of ch.waiting.values()) w.reject(ch.error);
        ch.waiting.clear();
      };
      this.#channels.push(ch);
    }
  }

  get count(): number {
    return this.#channels.length;
  }

  // Bytes every channel has written, as of its last answer.
  get bytes(): number {
    return this.#channels.reduce((n, c) => n + c.bytes, 0);
  }

  // What compression did on all channels (each says at its COMPLETE).
  get compression(): CompressionStats | undefined {
    const all = this.#channels.map((c) => c.compression).filter((c) => c !== undefined);
    if (all.length === 0) return undefined;
    const sum = { ...all[0] };
    for (const c of all.slice(1)) {
      for (const k of Object.keys(sum) as (keyof CompressionStats)[]) {
        if (typeof sum[k] === "number") {
          (sum as Record<string, unknown>)[k] = (sum[k] as number) + (c[k] as number);
        }
      }
    }
    return sum;
  }

  // Sends each channel its request (none where `make` gives undefined) and
  // waits for every answer; the first failure fails the call, and every
  // later one (a failed channel stays failed).
  async all(
    make: (index: number) => ChannelRequest | undefined,
  ): Promise<((ChannelReply & { ok: true }) | undefined)[]> {
    if (this.#failure !== undefined) throw this.#failure;
    const waits = this.#channels.map((ch, i) => {
      const req = make(i);
      if (req === undefined) return Promise.resolve(undefined);
      const id = this.#nextId++;
      if (ch.error !== undefined) return Promise.reject(ch.error);
      return new Promise<ChannelReply & { ok: true }>((resolve, reject) => {
        ch.waiting.set(id, { resolve, reject });
        ch.worker.postMessage({ ...req, id });
      });
    });
    try {
      return await Promise.all(waits);
    } catch (e) {
      this.#failure = e as Error;
      throw e;
    }
  }

  // Stops every Worker (their connections close with them); what waits fails.
  close(): void {
    for (const [i, ch] of this.#channels.entries()) {
      ch.worker.terminate();
      const err = new ChannelFailure(i, this.#channels.length, "Interrupted", "the sink closed");
      for (const w of ch.waiting.values()) w.reject(err);
      ch.waiting.clear();
    }
    this.#channels = [];
  }
}
