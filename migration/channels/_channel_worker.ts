// The Worker side of ChannelSink: one parallel channel. It connects to the
// destination itself, writes its hello, then takes page runs from the main
// thread and sends them, zero-checked and checksummed, from its own view of
// guest RAM (the same mapping, attached by its host address); iteration
// markers and COMPLETE arrive in order with the runs.

import { GuestMemory, type GuestMemoryDescriptor } from "../../memory/guest_memory.ts";
import type { GuestAddress } from "../../sys/address.ts";
import { encodeChannelHello } from "../stream/channel_hello.ts";
import type { RamAccess } from "../stream/ram.ts";
import { StreamWriter } from "../stream/writer.ts";
import type { StreamCompression } from "../stream/compression.ts";
import type { StreamChannel } from "../transport/channel.ts";
import { parseEndpoint } from "../transport/endpoint.ts";
import { connectTcp } from "../transport/tcp.ts";
import { connectUnix } from "../transport/unix.ts";
import { RateLimitedSink } from "../transport/rate_limited_sink.ts";
import type { TlsCredentials } from "../transport/tls_credentials.ts";

// The Worker global, typed here (JSR packages may not carry lib directives).
const worker = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<ChannelRequest>) => void) | null;
};

/** The start message. */
export interface ChannelStart {
  op: "start";
  id: number;
  index: number;
  count: number;
  nonce: Uint8Array;
  to: string;
  tls?: { credentials: TlsCredentials; serverName?: string };
  timeoutMs: number;
  memory: GuestMemoryDescriptor;
  pageSize: number;
  snapshotRuns: boolean;
  compress?: StreamCompression;
  bytesPerSecond?: number;
}

/** What the main thread asks of a channel. */
export type ChannelRequest =
  | ChannelStart
  | { op: "runs"; id: number; gpa: bigint; runs: number[] }
  | { op: "iteration"; id: number; n: number }
  | { op: "complete"; id: number };

/** The channel's answer to one request. */
export type ChannelReply =
  | {
    id: number;
    ok: true;
    bytes: number;
    result?: { pages: number; zeroPages: number; skippedPages: number };
    compression?: StreamWriter["compression"];
  }
  | { id: number; ok: false; name: string; message: string };

let channel: StreamChannel | undefined;

// TLS (node:tls) is loaded only for a tls: destination: it is a third of
// this Worker's load time, which the source's setup waits for.
async function connect(req: ChannelStart): Promise<StreamChannel> {
  const ep = parseEndpoint(req.to);
  const options = { timeoutMs: req.timeoutMs };
  switch (ep.transport) {
    case "tcp":
      return await connectTcp(ep, options);
    case "unix":
      return await connectUnix(ep, options);
    case "tls": {
      if (req.tls === undefined) {
        throw new TypeError(`Cannot connect to ${req.to}: TLS needs credentials`);
      }
      const { connectTls } = await import("../transport/tls.ts");
      return await connectTls(ep, { ...options, ...req.tls });
    }
    case "file":
      throw new TypeError(`Cannot open a parallel channel to ${req.to}: a file takes one stream`);
  }
}
let writer: StreamWriter | undefined;
let ram: RamAccess | undefined;

async function handle(req: ChannelRequest): Promise<ChannelReply> {
  switch (req.op) {
    case "start": {
      const memory = GuestMemory.attach(req.memory);
      ram = {
        layout: memory.regions.map((r) => ({ gpa: r.gpa, size: r.size })),
        view: (gpa, length) => memory.readView(gpa, length),
        unpopulated: (gpa, length) => memory.unpopulatedRanges(gpa, length),
      };
      channel = await connect(req);
      const sink = req.bytesPerSecond
        ? new RateLimitedSink(channel, { bytesPerSecond: req.bytesPerSecond })
        : channel;
      writer = new StreamWriter(sink, { snapshotRuns: req.snapshotRuns, compress: req.compress });
      const hello = encodeChannelHello({
        index: req.index,
        count: req.count,
        pageSize: req.pageSize,
        nonce: req.nonce,
      });
      await writer.writeChannelHeader(hello, ram.layout, req.pageSize);
      await writer.flush();
      return { id: req.id, ok: true, bytes: writer.bytesWritten };
    }
    case "runs": {
      const result = await writer!.writePageRuns(ram!, req.gpa as GuestAddress, req.runs);
      return { id: req.id, ok: true, bytes: writer!.bytesWritten, result };
    }
    case "iteration":
      await writer!.writeIteration(req.n);
      return { id: req.id, ok: true, bytes: writer!.bytesWritten };
    case "complete": {
      await writer!.writeComplete();
      const compression = writer!.compression;
      writer!.close();
      channel!.close();
      return { id: req.id, ok: true, bytes: writer!.bytesWritten, compression };
    }
  }
}

// Requests run one at a time, in the order they came: the channel's
// sections keep the main thread's order.
let queue: Promise<void> = Promise.resolve();
let failed: { name: string; message: string } | undefined;
worker.onmessage = (e) => {
  const req = e.data;
  queue = queue.then(async () => {
    if (failed !== undefined) return worker.postMessage({ id: req.id, ok: false, ...failed });
    try {
      worker.postMessage(await handle(req));
    } catch (err) {
      failed = {
        name: err instanceof Error ? err.name : "Error",
        message: err instanceof Error ? err.message : String(err),
      };
      writer?.close();
      channel?.close();
      worker.postMessage({ id: req.id, ok: false, ...failed });
    }
  });
};
