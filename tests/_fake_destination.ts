// Destinations that speak the real protocol but misbehave, for testing the
// source: silent at COMPLETE, silent after it, a wrong or malformed verdict,
// one that stops reading, one that reads too slowly.

import { writeAck } from "../migration/stream/ack.ts";
import { formatEndpoint } from "../migration/transport/endpoint.ts";
import { listenEndpoint } from "../migration/transport/open.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { destinationRam, ramDigest } from "../migration/guest/guest_ram.ts";
import { guestAddress } from "../sys/address.ts";
import { receiveStream } from "../migration/stream/reader.ts";
import type { StreamChannel, StreamSource } from "../migration/transport/channel.ts";

/** How a fake destination behaves. */
export interface Misbehaviour {
  /** Never answer COMPLETE (the source's guest is paused meanwhile). */
  silentAtComplete?: boolean;
  /** Answer COMPLETE, then never give a verdict. */
  silentVerdict?: boolean;
  /** The verdict's text bytes instead of the real digest. */
  verdict?: Uint8Array;
  /** Read this many bytes, then stop reading (keep the connection open). */
  stopReadingAfter?: number;
  /** Read at most this many bytes per second. */
  readBytesPerSecond?: number;
  /** Answer COMPLETE with a refusal carrying this text. */
  rejectWith?: string;
}

/** A running fake destination. */
export interface FakeDestination extends AsyncDisposable {
  /** Where the source connects. */
  readonly endpoint: string;
  /** Settles when the fake is done with its one connection. */
  readonly done: Promise<void>;
}

const encoder = new TextEncoder();

/**
 * Listens on TCP, takes one source, and misbehaves as told. Its RAM is
 * `ramBytes` at GPA 0, digested as `receiveGuest()` does, so a well-behaved
 * run would verify.
 */
export function fakeDestination(ramBytes: number, how: Misbehaviour): FakeDestination {
  const listener = listenEndpoint("tcp:127.0.0.1:0");
  const endpoint = formatEndpoint(listener.endpoint);
  let channel: StreamChannel | undefined;
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const done = (async () => {
    channel = await listener.accept();
    const ch = channel;
    if (how.stopReadingAfter !== undefined) {
      const buf = new Uint8Array(65536);
      for (let got = 0; got < how.stopReadingAfter;) {
        const n = await ch.read(buf.subarray(0, Math.min(buf.length, how.stopReadingAfter - got)));
        if (n === null) return;
        got += n;
      }
      await held; // connection open, nothing read: the source's writes block
      return;
    }
    const source: StreamSource = how.readBytesPerSecond === undefined
      ? ch
      : throttled(ch, how.readBytesPerSecond);
    using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(ramBytes) }]);
    let ours = "";
    await receiveStream(source, destinationRam(memory), {
      digest: () => {
        const d = ramDigest(memory);
        ours = d.hex;
        return d.bytes;
      },
      expectEof: false,
      onComplete: async () => {
        if (how.rejectWith !== undefined) {
          await writeAck(ch, { ok: false, text: how.rejectWith });
          return;
        }
        if (how.silentAtComplete) return void await held;
        await writeAck(ch, { ok: true, text: "", image: true });
      },
    }).catch(() => {});
    if (how.silentVerdict) return void await held;
    if (how.verdict !== undefined) {
      await rawAck(ch, how.verdict);
      return void await held;
    }
    await writeAck(ch, { ok: true, text: ours });
  })().catch(() => {});
  return {
    endpoint,
    done,
    async [Symbol.asyncDispose]() {
      release();
      listener.close();
      channel?.close();
      await done;
    },
  };
}

// A verdict frame whose text is any bytes (not necessarily UTF-8).
async function rawAck(ch: StreamChannel, text: Uint8Array): Promise<void> {
  const frame = new Uint8Array(12 + text.length);
  const v = new DataView(frame.buffer);
  v.setUint32(0, 0x414d5644, true);
  v.setUint32(4, 0, true);
  v.setUint32(8, text.length, true);
  frame.set(text, 12);
  await ch.write(frame);
}

// Reads at most `rate` bytes per second from `inner`.
function throttled(inner: StreamSource, rate: number): StreamSource {
  const t0 = performance.now();
  let taken = 0;
  return {
    async read(into: Uint8Array) {
      const chunk = Math.max(1, Math.min(into.length, Math.floor(rate / 20)));
      const due = t0 + (taken / rate) * 1000 - performance.now();
      if (due > 0) await new Promise((r) => setTimeout(r, due));
      const n = await inner.read(into.subarray(0, chunk));
      if (n !== null) taken += n;
      return n;
    },
  };
}

/** A digest of the text a verdict carries. */
export function verdictText(text: string): Uint8Array {
  return encoder.encode(text);
}
