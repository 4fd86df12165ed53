// The destination's main stream and its parallel channels, run together.

import { encodeChannelNonce } from "../stream/channel_hello.ts";
import type { ReceiveSummary } from "../stream/receive_types.ts";
import type { StreamChannel, StreamListener } from "../transport/channel.ts";
import type { ChannelReceiver } from "./channel_receiver.ts";
import { writeAck } from "../stream/ack.ts";

// How long the failure answer may take to write.
const ANSWER_TIMEOUT_MS = 1000;

// Runs the main stream and the parallel channels together: the nonce goes
// to the source, the channels join and load while the main stream runs, and
// the first failure on either side stops the other and is the one thrown.
export async function receiveWithChannels(
  receiver: ChannelReceiver,
  o: {
    main: StreamChannel;
    incoming: { receive(): Promise<ReceiveSummary> };
    listener: StreamListener;
    next: Promise<StreamChannel>;
    idleTimeoutMs: number;
    started: (done: Promise<ReceiveSummary[]>) => void;
  },
): Promise<ReceiveSummary> {
  const { main, incoming, listener, next, idleTimeoutMs, started } = o;
  try {
    await main.write(encodeChannelNonce(receiver.nonce));
  } catch (e) {
    listener.close();
    await next.then((c) => c.close(), () => {});
    throw e;
  }
  let first: unknown;
  const done = receiver.run(listener, next).catch(async (e) => {
    if (first === undefined) {
      first = e;
      // The source hears why on the main connection before it closes.
      main.timeoutMs = ANSWER_TIMEOUT_MS;
      const text = e instanceof Error ? e.message : String(e);
      await writeAck(main, { ok: false, text }).catch(() => {});
      main.abort(e);
    }
    throw e;
  });
  done.then(() => main.timeoutMs = idleTimeoutMs, () => {});
  started(done);
  let summary;
  try {
    summary = await incoming.receive();
  } catch (e) {
    first ??= e;
    receiver.abort(e);
    await done.catch(() => {});
    throw first;
  }
  for (const s of await done) {
    summary.pages += s.pages;
    summary.zeroPages += s.zeroPages;
    summary.bytes += s.bytes;
    summary.sections.ram += s.sections.ram;
    summary.sections.zero += s.sections.zero;
    summary.sections.sparse += s.sections.sparse;
    summary.sections.compressed += s.sections.compressed;
  }
  return summary;
}
