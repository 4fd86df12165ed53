// The destination's accept loop: peers connect, and the first one to send a
// valid stream header becomes the source. Peers that send nothing, garbage,
// or a header for another layout are dropped while the listener goes on
// accepting, up to a bound on failed attempts; at most `maxPending` wait for
// their header at once, and a new peer displaces the oldest.

import { MigrationError } from "../engine/errors.ts";
import { peerText } from "../stream/peer_text.ts";
import type { StreamChannel, StreamListener } from "../transport/channel.ts";

export interface AcceptPolicy {
  /** How long a peer has to send its header, ms. */
  headerTimeoutMs: number;
  /** Peers dropped before giving up. */
  maxAttempts: number;
  /** Peers waiting for their header at once. */
  maxPending: number;
  /** Told of each dropped peer. */
  onRejected?: (peer: string, reason: string) => void;
  /** Tells a dropped peer why, best effort (its channel closes once this settles). */
  refuse?: (channel: StreamChannel, reason: string) => Promise<void>;
  signal?: AbortSignal;
  /** Peers that must pass `open` (default 1); the others go on waiting meanwhile. */
  count?: number;
  /**
   * Leave the listener open on success, and hand over the accept in flight
   * (`next`), for a later call's `first`: parallel channels join on the
   * same listener after the source.
   */
  keepOpen?: boolean;
  /** An accept already in flight on `listener`, to take the first peer from. */
  first?: Promise<StreamChannel>;
}

/** The peers that passed, and (with `keepOpen`) the accept in flight. */
export interface Accepted<T> {
  peers: { channel: StreamChannel; value: T }[];
  next?: Promise<StreamChannel>;
}

type Outcome<T> =
  | { kind: "conn"; channel: StreamChannel }
  | { kind: "accept-failed"; error: unknown }
  | { kind: "header"; channel: StreamChannel; value: T }
  | { kind: "header-failed"; channel: StreamChannel; error: unknown };

/**
 * Accepts peers until one passes `open` (reads and checks the header); the
 * listener is closed when this returns or throws. For a file endpoint the
 * one file is the source: its failure is final.
 */
export async function acceptSource<T>(
  listener: StreamListener,
  open: (channel: StreamChannel) => Promise<T>,
  policy: AcceptPolicy,
): Promise<{ channel: StreamChannel; value: T; next?: Promise<StreamChannel> }> {
  const got = await acceptPeers(listener, open, { ...policy, count: 1 });
  return { ...got.peers[0], next: got.next };
}

/**
 * Accepts peers until `policy.count` of them pass `open`, as
 * {@linkcode acceptSource} does for one.
 */
export async function acceptPeers<T>(
  listener: StreamListener,
  open: (channel: StreamChannel) => Promise<T>,
  policy: AcceptPolicy,
): Promise<Accepted<T>> {
  if (listener.endpoint.transport === "file") {
    const channel = await listener.accept({ signal: policy.signal });
    try {
      return { peers: [{ channel, value: await open(channel) }] };
    } catch (e) {
      channel.close();
      throw e;
    }
  }
  const pending = new Map<StreamChannel, Promise<Outcome<T>>>();
  const refusing = new Set<Promise<void>>();
  let failures = 0;
  let lastReason = "";
  const count = policy.count ?? 1;
  const passed: { channel: StreamChannel; value: T }[] = [];
  const wrap = (raw: Promise<StreamChannel>): Promise<Outcome<T>> =>
    raw.then(
      (channel) => ({ kind: "conn", channel }),
      (error) => ({ kind: "accept-failed", error }),
    );
  let raw = policy.first ?? listener.acceptNext({ signal: policy.signal });
  let accepting = wrap(raw);
  let handOver = false;
  try {
    for (;;) {
      const outcome = await Promise.race([accepting, ...pending.values()]);
      switch (outcome.kind) {
        case "accept-failed": {
          if (failures === 0) throw outcome.error;
          // Stopped while peers were being dropped: say what the last one did.
          const why = outcome.error instanceof Error
            ? outcome.error.message
            : String(outcome.error);
          throw new MigrationError(
            "destination",
            `${why} (${peers(failures)} dropped before a valid header; the last: ${
              peerText(lastReason, { max: 200 })
            })`,
            { cause: outcome.error },
          );
        }
        case "conn": {
          raw = listener.acceptNext({ signal: policy.signal });
          accepting = wrap(raw);
          const channel = outcome.channel;
          if (pending.size >= policy.maxPending) {
            // The oldest waiter makes room: a flood of silent peers cannot
            // keep a real source out.
            const [oldest] = pending.keys();
            oldest.abort(
              new Deno.errors.Interrupted(
                `Dropped for a newer peer: ${policy.maxPending} peers were waiting to send a header`,
              ),
            );
          }
          // The header has a deadline as a whole: a peer that trickles
          // bytes does not keep its slot.
          const seconds = policy.headerTimeoutMs / 1000;
          const timer = setTimeout(
            () =>
              channel.abort(
                new Deno.errors.TimedOut(`No valid stream header within ${seconds} s`),
              ),
            policy.headerTimeoutMs,
          );
          pending.set(
            channel,
            open(channel).then(
              (value): Outcome<T> => ({ kind: "header", channel, value }),
              (error): Outcome<T> => ({ kind: "header-failed", channel, error }),
            ).finally(() => clearTimeout(timer)),
          );
          break;
        }
        case "header-failed": {
          pending.delete(outcome.channel);
          failures++;
          lastReason = outcome.error instanceof Error
            ? outcome.error.message
            : String(outcome.error);
          const channel = outcome.channel;
          if (policy.refuse && !channel.closed) {
            const told = policy.refuse(channel, lastReason).catch(() => {}).finally(() => {
              channel.close();
              refusing.delete(told);
            });
            refusing.add(told);
          } else {
            channel.close();
          }
          policy.onRejected?.(outcome.channel.peer ?? "a peer", lastReason);
          if (failures >= policy.maxAttempts) {
            throw new MigrationError(
              "destination",
              `Gave up after ${peers(failures)} failed before sending a valid stream header ` +
                `(the last: ${peerText(lastReason, { max: 200 })})`,
            );
          }
          break;
        }
        case "header":
          pending.delete(outcome.channel);
          passed.push({ channel: outcome.channel, value: outcome.value });
          if (passed.length < count) break;
          handOver = policy.keepOpen === true;
          return handOver ? { peers: passed, next: raw } : { peers: passed };
      }
    }
  } catch (e) {
    for (const p of passed) p.channel.close();
    throw e;
  } finally {
    if (!handOver) listener.close();
    for (const channel of pending.keys()) channel.close();
    await Promise.allSettled([...(handOver ? [] : [accepting]), ...pending.values(), ...refusing]);
  }
}

function peers(n: number): string {
  return n === 1 ? "1 peer" : `${n} peers`;
}
