/**
 * Worker for bench/limits.ts: the destination side of the loopback-TCP
 * phase, on its own thread. Each message `{ mib, raw }` makes it listen on a
 * free 127.0.0.1 port, post `{ port }`, accept one connection and either load
 * one stream with `receiveStream` into prefaulted GuestMemory (`raw: false`)
 * or drain the raw bytes into that memory (`raw: true`), then post
 * `{ bytes }` (or `{ error }`).
 *
 * @module
 */

import { GuestMemory } from "../memory/guest_memory.ts";
import { destinationRam } from "../migration/guest/guest_ram.ts";
import { listenEndpoint } from "../migration/transport/open.ts";
import { receiveStream } from "../migration/stream/reader.ts";
import { guestAddress } from "../sys/address.ts";
import { crcDigest } from "./_limits_common.ts";

/** A job from bench/limits.ts. */
export interface ReceiverJob {
  /** RAM size in MiB (the layout is one region at GPA 0). */
  mib: number;
  /** Drain raw bytes instead of parsing a stream. */
  raw: boolean;
}

const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<ReceiverJob | "close">) => void) | null;
  close(): void;
};
let memory: GuestMemory | undefined;

async function receive(job: ReceiverJob): Promise<number> {
  const size = job.mib * 2 ** 20;
  if (memory === undefined || Number(memory.size) !== size) {
    memory?.close();
    // Prefaulted, like QEMU's prealloc=on: first-touch faults would cap us at 0.36 GB/s.
    memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(size) }], {
      prefault: true,
    });
  }
  const mem = memory;
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  const ep = listener.endpoint;
  scope.postMessage({ port: ep.transport === "tcp" ? ep.port : 0 });
  using conn = await listener.accept();
  if (!job.raw) {
    const summary = await receiveStream(conn, destinationRam(mem), {
      digest: () => crcDigest(mem),
    });
    return summary.bytes;
  }
  const buf = mem.view(guestAddress(0n), 4 << 20);
  let total = 0;
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) total += n;
  return total;
}

scope.onmessage = async (e) => {
  if (e.data === "close") {
    memory?.close();
    scope.close();
    return;
  }
  try {
    scope.postMessage({ bytes: await receive(e.data) });
  } catch (err) {
    scope.postMessage({ error: String(err instanceof Error ? err.stack : err) });
  }
};
