/**
 * The destination side: accept a source, restore its stream into the
 * destination's own `GuestMemory`, verify the final digest, and only then
 * report success (and, on a live transport, answer the source).
 *
 * @module
 */

import type { GuestMemory } from "../../memory/guest_memory.ts";
import { acceptSource } from "./_source_acceptor.ts";
import { writeAck } from "../stream/ack.ts";
import { MigrationError } from "../engine/errors.ts";
import type { DeviceRestorer } from "../engine/device_migrator.ts";
import { destinationRam, ramDigest } from "./guest_ram.ts";
import { openListener } from "../transport/open.ts";
import type { TlsListenOptions } from "../transport/tls.ts";
import { peerText } from "../stream/peer_text.ts";
import { openStreamSharing, type ReceiveSummary } from "../stream/reader.ts";
import { WrittenPages } from "../stream/_written_pages.ts";
import type { StreamListener } from "../transport/channel.ts";
import { checkChannelCount } from "../stream/channel_hello.ts";
import { receiveWithChannels } from "../channels/_with_channels.ts";
import { ChannelReceiver } from "../channels/channel_receiver.ts";

/** What a destination received and verified. */
export interface ReceivedGuest {
  /** The stream summary. */
  readonly summary: ReceiveSummary;
  /** The verified RAM digest (hex). */
  readonly digest: string;
  /** Time from the accepted header to verification, ms. */
  readonly ms: number;
  /** The source's address (`HOST:PORT` over TCP), when known. */
  readonly peer?: string;
  /** The source's authenticated identity (over TLS, its certificate's subject). */
  readonly peerIdentity?: string;
}

/** How long a connected peer has to send a valid stream header: 10 s. */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
/** Peers dropped before a valid header before the destination gives up: 100. */
export const DEFAULT_MAX_ATTEMPTS = 100;
// How long a dropped peer's refusal may take to write.
const REFUSAL_TIMEOUT_MS = 1000;

/** Peers waiting to send their header at once; a new one displaces the oldest: 8. */
export const DEFAULT_MAX_PENDING = 8;

/**
 * The default bound on how long an established source may send nothing:
 * 30 s, plus 0.25 s per GiB of guest RAM (the source's harvests between
 * iterations and its digest at the end take longer on larger RAM).
 *
 * @param ramBytes The guest RAM size.
 * @returns Milliseconds.
 *
 * @example
 * ```ts
 * import { defaultIdleTimeoutMs } from "./destination.ts";
 * console.log(defaultIdleTimeoutMs(2 ** 40)); // 286000 (1 TiB)
 * ```
 */
export function defaultIdleTimeoutMs(ramBytes: number): number {
  return 30_000 + Math.ceil(ramBytes / 2 ** 30) * 250;
}

/** Options of {@linkcode receiveGuest}. */
export interface ReceiveGuestOptions {
  /** The destination's RAM. */
  memory: GuestMemory;
  /** Where to listen: an endpoint string, or a listener (closed when this returns). */
  from: string | StreamListener;
  /** For a `tls:` endpoint string (required there): credentials, authorization list, bounds. */
  tls?: TlsListenOptions;
  /** Called at each iteration marker. */
  onIteration?: (n: number) => void;
  /**
   * Called once a peer has sent a valid header and became the source, with
   * its address and (over TLS) its authenticated identity.
   */
  onAccepted?: (peer: string | undefined, identity: string | undefined) => void;
  /** Called for each peer dropped before a valid header, with its escaped reason. */
  onRejected?: (peer: string, reason: string) => void;
  /** Aborting stops waiting for a source (and stops a stream in progress). */
  signal?: AbortSignal;
  /** `memory` is fresh (all zero): zero pages the stream never wrote are left alone. */
  zeroed?: boolean;
  /**
   * The devices whose state the stream restores, by id; a state for any
   * other id fails. A device with `beginResume`, `loadChunk` and
   * `finishResume` takes its chunks as they arrive; once every device that
   * announced pre-copy has its initial data loaded, a live destination
   * answers "switchover ack".
   */
  devices?: readonly DeviceRestorer[];
  /** A connected peer's deadline for a valid header; default {@linkcode DEFAULT_HEADER_TIMEOUT_MS}. */
  headerTimeoutMs?: number;
  /** How long the source may send nothing; default {@linkcode defaultIdleTimeoutMs}. */
  idleTimeoutMs?: number;
  /** Failed peers before giving up; default {@linkcode DEFAULT_MAX_ATTEMPTS}. */
  maxAttempts?: number;
  /** Peers waiting for their header at once; default {@linkcode DEFAULT_MAX_PENDING}. */
  maxPending?: number;
  /**
   * Connections the source sends RAM over besides the main one (QEMU's
   * multifd channels), 2 to 64; the source must use the same count. Default
   * 1: one connection, no extra ones. Not for `file:`.
   */
  channels?: number;
}

// Writes an interim answer; a source that has hung up gets named as such
// instead of surfacing as the write's broken pipe.
async function answer(
  channel: Parameters<typeof writeAck>[0],
  what: string,
  ack: Parameters<typeof writeAck>[1],
): Promise<void> {
  try {
    await writeAck(channel, ack);
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset) {
      throw new Deno.errors.ConnectionReset(
        `the source closed the connection before the destination could answer ${what} (${
          (e as Error).message
        })`,
        { cause: e },
      );
    }
    throw e;
  }
}

/**
 * The destination failed; `imageTouched` says whether a source had begun
 * writing the destination's RAM (its image is partial and must be discarded)
 * or no valid stream ever arrived.
 */
export class DestinationFailure extends MigrationError {
  /** Whether RAM may hold part of an image. */
  readonly imageTouched: boolean;

  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param options Whether RAM was touched, and the lower error.
   */
  constructor(message: string, options: { imageTouched: boolean; cause?: unknown }) {
    super("destination", message, { cause: options.cause });
    this.name = "DestinationFailure";
    this.imageTouched = options.imageTouched;
  }
}

/**
 * Receives a migration into `memory`.
 *
 * Peers that connect and fail before a valid stream header (silent, garbage,
 * another layout) are dropped while the listener goes on accepting; the
 * first peer with a valid header is the source. From then on the source must
 * keep making progress (`idleTimeoutMs`), every allocation the stream can
 * cause is bounded (see `STREAM.md`), and the image is verified before
 * success is reported.
 *
 * @param options The RAM, where to listen, devices, bounds and callbacks.
 * @returns The summary, once the image is verified.
 * @throws {DestinationFailure} Naming the stream offset and reason; when
 *   `imageTouched`, the image in `memory` is partial and must be discarded.
 *
 * @example
 * ```ts ignore
 * const got = await receiveGuest({ memory, from: "tcp:0.0.0.0:4444" });
 * ```
 */
export async function receiveGuest(options: ReceiveGuestOptions): Promise<ReceivedGuest> {
  const { memory } = options;
  const listener = typeof options.from === "string"
    ? await openListener(options.from, { tls: options.tls })
    : options.from;
  const live = listener.endpoint.transport !== "file";
  const ram = destinationRam(memory);
  const devices = options.devices ?? [];
  const streamed = devices.filter((d) =>
    d.beginResume !== undefined && d.loadChunk !== undefined && d.finishResume !== undefined
  );
  // Streamed devices in RESUMING, until finished.
  const resuming = new Set<DeviceRestorer>();
  const onDeviceChunk = async (id: string, bytes: Uint8Array) => {
    const d = streamed.find((x) => x.id === id)!;
    if (!resuming.has(d)) {
      resuming.add(d);
      await d.beginResume!();
    }
    if (bytes.byteLength > 0) await d.loadChunk!(bytes);
  };
  const channels = checkChannelCount(options.channels ?? 1, "receive");
  if (channels > 1 && !live) {
    listener.close();
    throw new RangeError("Cannot receive parallel channels from a file: use tcp:, tls: or unix:");
  }
  const idleTimeoutMs = options.idleTimeoutMs ?? defaultIdleTimeoutMs(Number(memory.size));
  const headerTimeoutMs = options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
  // With parallel channels, COMPLETE on the main stream waits for them all.
  let channelsDone: Promise<ReceiveSummary[]> | undefined;
  // Every stream of the migration fills the same RAM: one written-pages map.
  const written = channels > 1 && options.zeroed ? new WrittenPages(ram.layout, 4096) : undefined;
  let digest = "";
  let accepted;
  try {
    accepted = await acceptSource(
      listener,
      (channel) =>
        openStreamSharing(channel, ram, {
          written,
          // Computed once, after the last byte: the reader compares it with END's.
          digest: () => {
            const d = ramDigest(memory);
            digest = d.hex;
            return d.bytes;
          },
          onIteration: options.onIteration,
          // The image is in: the source's downtime ends with this answer.
          onComplete: live
            ? async () => {
              if (channelsDone !== undefined) await channelsDone;
              await answer(channel, "that it holds the image", { ok: true, text: "", image: true });
            }
            : undefined,
          // Every device that announced pre-copy has its initial data loaded.
          onSwitchoverReady: live
            ? () => answer(channel, "the switchover ack", { ok: true, text: "", switchover: true })
            : undefined,
          streamDevices: streamed.map((d) => d.id),
          onDeviceChunk,
          zeroed: options.zeroed,
          expectEof: !live,
          devices: devices.map((d) => d.id),
        }),
      {
        headerTimeoutMs,
        maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        maxPending: options.maxPending ?? DEFAULT_MAX_PENDING,
        onRejected: options.onRejected &&
          ((peer, reason) => options.onRejected!(peerText(peer), peerText(reason))),
        // A source with the wrong layout learns why instead of a broken pipe.
        refuse: live
          ? (channel, reason) => {
            channel.timeoutMs = REFUSAL_TIMEOUT_MS;
            return writeAck(channel, { ok: false, text: `Refused: ${reason}` });
          }
          : undefined,
        signal: options.signal,
        keepOpen: channels > 1,
      },
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new DestinationFailure(`No migration stream was received: ${message}`, {
      imageTouched: false,
      cause: e,
    });
  }
  const { channel, value: incoming } = accepted;
  options.onAccepted?.(channel.peer, channel.peerIdentity);
  const t0 = performance.now();
  const stop = () => channel.abort(options.signal!.reason);
  options.signal?.addEventListener("abort", stop, { once: true });
  let receiver: ChannelReceiver | undefined;
  try {
    channel.timeoutMs = idleTimeoutMs;
    let summary: ReceiveSummary;
    if (channels > 1) {
      receiver = new ChannelReceiver(ram, {
        count: channels,
        pageSize: 4096,
        written,
        idleTimeoutMs,
        helloTimeoutMs: headerTimeoutMs,
        maxPending: options.maxPending ?? DEFAULT_MAX_PENDING,
        maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        onRejected: options.onRejected &&
          ((peer, reason) => options.onRejected!(peerText(peer), peerText(reason))),
        refuse: (c, reason) => {
          c.timeoutMs = REFUSAL_TIMEOUT_MS;
          return writeAck(c, { ok: false, text: `Refused: ${reason}` });
        },
        signal: options.signal,
      });
      summary = await receiveWithChannels(receiver, {
        main: channel,
        incoming,
        listener,
        next: accepted.next!,
        idleTimeoutMs,
        started: (p) => {
          channelsDone = p;
          // The main stream idles while the channels carry the pages: their
          // own idle bounds hold until they end.
          channel.timeoutMs = 0;
        },
      });
    } else summary = await incoming.receive();
    // Devices are restored (or run, when their chunks are in) once the RAM
    // is verified, before the source hears "ready".
    for (const d of [...resuming]) {
      await d.finishResume!();
      resuming.delete(d);
    }
    for (const [id, chunks] of summary.deviceStates) {
      const device = devices.find((d) => d.id === id)!;
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
      let at = 0;
      for (const c of chunks) {
        bytes.set(c, at);
        at += c.byteLength;
      }
      await device.loadState(bytes);
    }
    if (live) await writeAck(channel, { ok: true, text: digest });
    return {
      summary,
      digest,
      ms: performance.now() - t0,
      peer: channel.peer,
      peerIdentity: channel.peerIdentity,
    };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // No device runs with a partial state.
    for (const d of resuming) {
      try {
        await d.abortResume?.();
      } catch {
        // The failure reported is the stream's; the device was left not running its partial state.
      }
    }
    if (live) await writeAck(channel, { ok: false, text: message }).catch(() => {});
    throw new DestinationFailure(`Cannot restore the image: ${message}`, {
      imageTouched: true,
      cause: e,
    });
  } finally {
    options.signal?.removeEventListener("abort", stop);
    receiver?.abort(new Deno.errors.Interrupted("The migration ended"));
    channel.close();
  }
}
