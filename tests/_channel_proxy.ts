/**
 * A TCP proxy for migrations over parallel channels: it forwards every
 * connection to the destination and tells them apart by their first bytes
 * (the main stream's `DVMM-MIG`, or a channel hello and its index), so a
 * test can hold one channel's bytes until an event of its choosing, see
 * what a channel has carried, or cut one channel part way through.
 *
 * @module
 */

import { CHANNEL_HELLO_BYTES, CHANNEL_MAGIC } from "../migration/stream/channel_hello.ts";

/** What a connection is, from its first bytes. */
export type ProxiedStream = "main" | number;

/** Options of {@linkcode startChannelProxy}. */
export interface ChannelProxyOptions {
  /**
   * Holds a stream's bytes from offset `from` (0: everything, 48: what
   * follows a channel's hello) until `until` resolves.
   */
  hold?: (stream: ProxiedStream) => { from: number; until: Promise<void> } | undefined;
  /** Called with each chunk forwarded from the source, and the stream's bytes so far. */
  onForward?: (stream: ProxiedStream, chunk: Uint8Array, total: number) => void;
  /** Called with each chunk the destination answers on a stream (once the stream is known). */
  onAnswer?: (stream: ProxiedStream, chunk: Uint8Array) => void;
  /** Cuts both sides of a stream once this many of its bytes were forwarded. */
  cut?: { stream: ProxiedStream; after: number };
}

/** A running proxy. */
export interface ChannelProxy extends AsyncDisposable {
  /** Where the source should connect (`tcp:127.0.0.1:PORT`). */
  readonly endpoint: string;
}

async function writeAll(to: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await to.write(bytes.subarray(at));
}

/**
 * Starts the proxy in front of `target`.
 *
 * @param target The destination's `tcp:HOST:PORT`.
 * @param options Holds, observers and cuts.
 * @returns The proxy; dispose it to stop it and close every connection.
 *
 * @example
 * ```ts ignore
 * await using proxy = startChannelProxy("tcp:127.0.0.1:4444", { cut: { stream: 1, after: 1 << 20 } });
 * ```
 */
export function startChannelProxy(target: string, options: ChannelProxyOptions): ChannelProxy {
  const m = /^tcp:([^:]+):(\d+)$/.exec(target);
  if (m === null) throw new TypeError(`Cannot proxy ${target}: only tcp:HOST:PORT`);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const close = (c: Deno.Conn) => {
    if (!conns.delete(c)) return;
    try {
      c.close();
    } catch {
      // Already closed.
    }
  };
  const pipe = async (from: Deno.Conn) => {
    conns.add(from);
    let to: Deno.Conn | undefined;
    try {
      to = await Deno.connect({ hostname: m[1], port: Number(m[2]) });
      conns.add(to);
      const dest = to;
      // The destination's answers flow back untouched.
      const answers: { to?: (chunk: Uint8Array) => void } = {};
      const early: Uint8Array[] = [];
      const back = (async () => {
        const buf = new Uint8Array(1 << 16);
        try {
          for (let n; (n = await dest.read(buf)) !== null;) {
            const chunk = buf.slice(0, n);
            if (answers.to) answers.to(chunk);
            else early.push(chunk);
            await writeAll(from, chunk);
          }
        } catch {
          // Closed.
        }
      })();
      const head = new Uint8Array(CHANNEL_HELLO_BYTES);
      let got = 0;
      while (got < 8) {
        const n = await from.read(head.subarray(got));
        if (n === null) break;
        got += n;
      }
      let stream: ProxiedStream = "main";
      if (got >= 8 && CHANNEL_MAGIC.every((b, i) => head[i] === b)) {
        while (got < CHANNEL_HELLO_BYTES) {
          const n = await from.read(head.subarray(got));
          if (n === null) break;
          got += n;
        }
        stream = new DataView(head.buffer).getUint32(12, true);
      }
      const seen = stream;
      answers.to = (chunk) => options.onAnswer?.(seen, chunk);
      for (const chunk of early.splice(0)) answers.to(chunk);
      const hold = options.hold?.(stream);
      const cut = options.cut?.stream === stream ? options.cut.after : Infinity;
      let total = 0;
      const forward = async (chunk: Uint8Array) => {
        let piece = chunk;
        if (hold !== undefined && total < hold.from && total + piece.length > hold.from) {
          const k = hold.from - total;
          await forward(piece.subarray(0, k));
          piece = piece.subarray(k);
        }
        if (hold !== undefined && total >= hold.from) await hold.until;
        if (total + piece.length >= cut) {
          await writeAll(dest, piece.subarray(0, cut - total));
          throw new Deno.errors.Interrupted("cut");
        }
        await writeAll(dest, piece);
        total += piece.length;
        options.onForward?.(stream, piece, total);
      };
      await forward(head.slice(0, got));
      const buf = new Uint8Array(1 << 16);
      for (let n; (n = await from.read(buf)) !== null;) await forward(buf.slice(0, n));
      await back;
    } catch {
      // Cut, or a side went away: both close below.
    } finally {
      close(from);
      if (to !== undefined) close(to);
    }
  };
  const accepting = (async () => {
    try {
      for (;;) {
        const c = await listener.accept();
        const t = pipe(c).finally(() => tasks.delete(t));
        tasks.add(t);
      }
    } catch {
      // The listener closed.
    }
  })();
  return {
    endpoint: `tcp:127.0.0.1:${port}`,
    async [Symbol.asyncDispose]() {
      try {
        listener.close();
      } catch {
        // Closed.
      }
      for (const c of [...conns]) close(c);
      await accepting;
      await Promise.allSettled([...tasks]);
    },
  };
}
