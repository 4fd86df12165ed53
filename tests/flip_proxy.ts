/**
 * A TCP proxy that forwards both directions and flips one bit of one byte
 * the source sends, at a chosen offset: an attacker on the path altering the
 * (encrypted) stream.
 *
 * @module
 */

/** A running proxy. */
export interface FlipProxy extends AsyncDisposable {
  /** Where the source should connect (`HOST:PORT`, with the target's transport prefix). */
  readonly endpoint: string;
  /** Resolves once the byte was flipped (with its offset), or the stream ended first (-1). */
  readonly flipped: Promise<number>;
}

/**
 * Starts a proxy in front of `target` (`tcp:` or `tls:HOST:PORT`) that
 * flips bit 0 of the source's byte at offset `at`, for its first connection.
 *
 * @param target The destination.
 * @param options `at`: the offset in the source-to-destination direction.
 * @returns The proxy; dispose it to stop it.
 *
 * @example
 * ```ts ignore
 * await using proxy = startFlipProxy("tls:127.0.0.1:4444", { at: 1 << 20 });
 * ```
 */
export function startFlipProxy(target: string, options: { at: number }): FlipProxy {
  const m = /^(tcp|tls):([^:]+):(\d+)$/.exec(target);
  if (m === null) throw new TypeError(`Cannot proxy ${target}: only tcp: or tls:HOST:PORT`);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns: Deno.Conn[] = [];
  let flippedAt = -1;
  const done = (async () => {
    const from = await listener.accept();
    listener.close();
    conns.push(from);
    const to = await Deno.connect({ hostname: m[2], port: Number(m[3]) });
    conns.push(to);
    const pump = async (a: Deno.Conn, b: Deno.Conn, flip: boolean) => {
      const buf = new Uint8Array(1 << 16);
      let offset = 0;
      try {
        for (;;) {
          const n = await a.read(buf);
          if (n === null) break;
          if (flip && offset <= options.at && options.at < offset + n) {
            buf[options.at - offset] ^= 1;
            flippedAt = options.at;
          }
          offset += n;
          for (let at = 0; at < n;) at += await b.write(buf.subarray(at, n));
        }
      } catch {
        // One side went away.
      } finally {
        for (const c of [a, b]) {
          try {
            c.close();
          } catch {
            // Already closed.
          }
        }
      }
    };
    await Promise.all([pump(from, to, true), pump(to, from, false)]);
    return flippedAt;
  })();
  done.catch(() => {});
  return {
    endpoint: `${m[1]}:127.0.0.1:${port}`,
    flipped: done.catch(() => flippedAt),
    async [Symbol.asyncDispose]() {
      try {
        listener.close();
      } catch {
        // Closed after the accept.
      }
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed by the pumps.
        }
      }
      await done.catch(() => {});
    },
  };
}
