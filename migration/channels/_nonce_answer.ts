// Reading the destination's nonce answer on the main connection.

import { readAck } from "../stream/ack.ts";
import {
  CHANNEL_NONCE_ANSWER_BYTES,
  CHANNEL_NONCE_MAGIC,
  decodeChannelNonce,
} from "../stream/channel_hello.ts";
import { peerText } from "../stream/peer_text.ts";
import type { StreamChannel, StreamSource } from "../transport/channel.ts";

// The destination's first answer on the main connection: the channel nonce
// (a failure answer instead, when it refused the header), within `timeoutMs`.
export async function readChannelNonce(
  main: StreamChannel,
  o: { timeoutMs: number; count: number },
): Promise<Uint8Array> {
  const before = main.timeoutMs;
  main.timeoutMs = o.timeoutMs;
  try {
    const bytes = new Uint8Array(CHANNEL_NONCE_ANSWER_BYTES);
    let at = 0;
    while (at < 4) {
      const n = await main.read(bytes.subarray(at, 4));
      if (n === null) {
        throw new Deno.errors.UnexpectedEof("Destination closed before its channel nonce");
      }
      at += n;
    }
    if (!CHANNEL_NONCE_MAGIC.every((b, i) => bytes[i] === b)) {
      // Not a nonce: the destination's failure answer, or a stray answer.
      const ack = await readAck(prefixed(bytes.subarray(0, 4), main));
      throw new RangeError(
        ack.ok
          ? `The destination answered the header without a channel nonce: does it receive with --channels ${o.count}?`
          : `Destination refused the stream: ${peerText(ack.text)}`,
      );
    }
    while (at < bytes.length) {
      const n = await main.read(bytes.subarray(at));
      if (n === null) {
        throw new Deno.errors.UnexpectedEof("Destination closed in its channel nonce");
      }
      at += n;
    }
    return decodeChannelNonce(bytes);
  } catch (e) {
    if (e instanceof Deno.errors.TimedOut) {
      throw new Deno.errors.TimedOut(
        `The destination gave no channel nonce within ${o.timeoutMs / 1000} s: does it receive ` +
          `with --channels ${o.count}?`,
      );
    }
    throw e;
  } finally {
    main.timeoutMs = before;
  }
}

// A source that gives `head` first, then reads from `rest`.
function prefixed(head: Uint8Array, rest: StreamSource): StreamSource {
  let left = head.slice();
  return {
    read(into: Uint8Array): Promise<number | null> {
      if (left.length === 0) return rest.read(into);
      const n = Math.min(into.length, left.length);
      into.set(left.subarray(0, n));
      left = left.subarray(n);
      return Promise.resolve(n);
    },
  };
}
