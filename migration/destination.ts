/**
 * The destination side: accept the stream, restore it into the destination's
 * own `GuestMemory`, verify the final digest, and only then report success
 * (and, on a live transport, answer the source).
 *
 * @module
 */

import type { GuestMemory } from "../memory/guest_memory.ts";
import { writeAck } from "./ack.ts";
import { MigrationError } from "./errors.ts";
import { destinationRam, ramDigest } from "./guest_ram.ts";
import { listenEndpoint } from "./open_endpoint.ts";
import { receiveStream, type ReceiveSummary } from "./stream_reader.ts";
import type { StreamListener } from "./transport.ts";

/** What a destination received and verified. */
export interface ReceivedGuest {
  /** The stream summary. */
  readonly summary: ReceiveSummary;
  /** The verified RAM digest (hex). */
  readonly digest: string;
  /** Time from the first byte to verification, ms. */
  readonly ms: number;
}

/**
 * Receives a migration into `memory`.
 *
 * @param options The RAM, where to listen (an endpoint string or a listener),
 *   progress, a signal that stops waiting for the source, the devices
 *   whose state the stream restores (by id; a state for an unknown id fails),
 *   and `zeroed` when `memory` is fresh (all zero): zero pages the stream
 *   never wrote are then left alone.
 * @returns The summary, once the image is verified.
 * @throws {MigrationError} Phase `destination`, naming the stream offset and
 *   reason: the image in `memory` is partial and must be discarded.
 *
 * @example
 * ```ts ignore
 * const got = await receiveGuest({ memory, from: "tcp:0.0.0.0:4444" });
 * ```
 */
export async function receiveGuest(options: {
  memory: GuestMemory;
  from: string | StreamListener;
  onIteration?: (n: number) => void;
  onAccepted?: () => void;
  signal?: AbortSignal;
  zeroed?: boolean;
  devices?: readonly { readonly id: string; loadState(bytes: Uint8Array): Promise<void> }[];
}): Promise<ReceivedGuest> {
  const listener = typeof options.from === "string" ? listenEndpoint(options.from) : options.from;
  const live = listener.endpoint.transport !== "file";
  let channel;
  try {
    channel = await listener.accept({ signal: options.signal });
  } finally {
    listener.close();
  }
  options.onAccepted?.();
  const t0 = performance.now();
  try {
    let digest = "";
    const summary = await receiveStream(channel, destinationRam(options.memory), {
      // Computed once, after the last byte: the reader compares it with END's.
      digest: () => {
        const d = ramDigest(options.memory);
        digest = d.hex;
        return d.bytes;
      },
      onIteration: options.onIteration,
      // The image is in: the source's downtime ends with this answer.
      onComplete: live ? () => writeAck(channel, { ok: true, text: "", image: true }) : undefined,
      zeroed: options.zeroed,
      expectEof: !live,
    });
    // Devices are restored once the RAM is verified, before the source hears "ready".
    for (const [id, chunks] of summary.deviceStates) {
      const device = options.devices?.find((d) => d.id === id);
      if (device === undefined) {
        throw new MigrationError(
          "destination",
          `The stream carries state for device ${id}, which this destination does not have`,
        );
      }
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
      let at = 0;
      for (const c of chunks) {
        bytes.set(c, at);
        at += c.byteLength;
      }
      await device.loadState(bytes);
    }
    if (live) await writeAck(channel, { ok: true, text: digest });
    return { summary, digest, ms: performance.now() - t0 };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (live) await writeAck(channel, { ok: false, text: message }).catch(() => {});
    throw new MigrationError("destination", `Cannot restore the image: ${message}`, { cause: e });
  } finally {
    channel.close();
  }
}
