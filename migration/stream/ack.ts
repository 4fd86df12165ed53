/**
 * The destination's answers on a live transport, written back on the same
 * connection: once every device that announced pre-copy has had its initial
 * data loaded, a "switchover ack" frame (QEMU's `MIG_RP_MSG_SWITCHOVER_ACK`:
 * the source may stop the guest now); at the COMPLETE section an interim
 * frame saying it holds the whole image (downtime ends when the source reads
 * it), then after END a
 * final frame saying whether it verified the image and with which digest. A
 * destination that fails at any point writes a failure frame instead.
 *
 * Frame: magic `DVMA` (4 bytes), status u32 (0 = verified, 1 = failed,
 * 2 = image complete, 3 = switchover ack), length u32, then that many bytes of UTF-8 text (the
 * digest in hex, the error message, or nothing).
 *
 * @module
 */

import type { StreamSink, StreamSource } from "../transport/channel.ts";
import { looksLikeTls } from "./_tls_hint.ts";

const MAGIC = 0x414d5644; // "DVMA" little-endian
const CHANNEL_NONCE_MAGIC = 0x434d5644; // "DVMC": a parallel-channel nonce (channel_hello.ts)
const MAX_TEXT = 4096;

/** What the destination answered. */
export interface DestinationAck {
  /** Whether the destination verified the image. */
  readonly ok: boolean;
  /** The destination digest (hex) when verified, else its error message. */
  readonly text: string;
  /**
   * True for the interim answer to COMPLETE: the image is in and is being
   * verified (`ok` is true, `text` empty).
   */
  readonly image?: boolean;
  /**
   * True for the switchover ack: every device that announced pre-copy has
   * its initial data loaded (`ok` is true, `text` empty).
   */
  readonly switchover?: boolean;
}

/**
 * Writes the answer frame.
 *
 * @param sink The connection.
 * @param ack The answer.
 *
 * @example
 * ```ts ignore
 * await writeAck(channel, { ok: true, text: digestHex });
 * ```
 */
export async function writeAck(sink: StreamSink, ack: DestinationAck): Promise<void> {
  const text = new TextEncoder().encode(ack.text.slice(0, MAX_TEXT));
  const frame = new Uint8Array(12 + text.byteLength);
  const v = new DataView(frame.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, !ack.ok ? 1 : ack.switchover ? 3 : ack.image ? 2 : 0, true);
  v.setUint32(8, text.byteLength, true);
  frame.set(text, 12);
  await sink.write(frame);
}

async function readFull(source: StreamSource, into: Uint8Array): Promise<void> {
  let at = 0;
  while (at < into.byteLength) {
    const n = await source.read(into.subarray(at));
    if (n === null) {
      if (looksLikeTls(into.subarray(0, at))) throw tlsAnswer();
      throw new RangeError(
        `Destination closed the connection after ${at} of ${into.byteLength} answer bytes`,
      );
    }
    at += n;
  }
}

// A plaintext source reading a TLS destination's alert.
function tlsAnswer(): Error {
  return new Deno.errors.InvalidData(
    "Destination answered with TLS: it listens on tls:, so connect with tls:HOST:PORT and " +
      "TLS credentials",
  );
}

/**
 * Reads the answer frame.
 *
 * @param source The connection.
 * @returns The answer.
 * @throws {Deno.errors.InvalidData} When the answer is a TLS record (a
 *   plaintext source dialled a TLS destination).
 * @throws {RangeError} When the frame is cut short or malformed, or its text
 *   is not valid UTF-8.
 *
 * @example
 * ```ts ignore
 * const ack = await readAck(channel);
 * ```
 */
export async function readAck(source: StreamSource): Promise<DestinationAck> {
  const head = new Uint8Array(12);
  await readFull(source, head);
  const v = new DataView(head.buffer);
  if (v.getUint32(0, true) !== MAGIC) {
    if (looksLikeTls(head)) throw tlsAnswer();
    if (v.getUint32(0, true) === CHANNEL_NONCE_MAGIC) {
      throw new RangeError(
        "Destination answered with a channel nonce: it receives over parallel channels, so " +
          "migrate with the --channels it receives with",
      );
    }
    throw new RangeError("Destination answer has a bad magic");
  }
  const status = v.getUint32(4, true);
  const length = v.getUint32(8, true);
  if (length > MAX_TEXT) throw new RangeError(`Destination answer of ${length} bytes is too long`);
  const text = new Uint8Array(length);
  await readFull(source, text);
  if (status > 3) throw new RangeError(`Destination answer has an unknown status ${status}`);
  let decoded: string;
  try {
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(text);
  } catch {
    throw new RangeError(`Destination answer of ${length} bytes is not valid UTF-8`);
  }
  if (status === 3) return { ok: true, text: decoded, switchover: true };
  return status === 2
    ? { ok: true, text: decoded, image: true }
    : { ok: status === 0, text: decoded };
}
