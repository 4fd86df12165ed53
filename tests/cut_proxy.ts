/**
 * A TCP proxy that forwards a set number of bytes and then cuts both
 * connections, to test a transport failing part way through a migration.
 *
 * @module
 */

/** A running proxy. */
export interface CutProxy extends AsyncDisposable {
  /** Where the source should connect (`tcp:127.0.0.1:PORT`). */
  readonly endpoint: string;
  /** Bytes forwarded before the cut (or in all, if the stream was shorter). */
  readonly forwarded: Promise<number>;
}

/**
 * Starts a proxy in front of `target` that cuts the connection after
 * `cutAfter` bytes from the source.
 *
 * @param target The destination's `tcp:HOST:PORT`.
 * @param options `cutAfter`: bytes to forward before cutting.
 * @returns The proxy; dispose it to stop listening.
 *
 * @example
 * ```ts ignore
 * await using proxy = await startCutProxy("tcp:127.0.0.1:4444", { cutAfter: 1 << 20 });
 * ```
 */
export function startCutProxy(
  target: string,
  options: { cutAfter: number },
): Promise<CutProxy> {
  const m = /^tcp:([^:]+):(\d+)$/.exec(target);
  if (m === null) throw new TypeError(`Cannot proxy ${target}: only tcp:HOST:PORT`);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const forwarded = (async () => {
    const from = await listener.accept();
    listener.close();
    const to = await Deno.connect({ hostname: m[1], port: Number(m[2]) });
    let total = 0;
    const buf = new Uint8Array(1 << 16);
    // The destination's answer flows back unless the cut comes first.
    const back = (async () => {
      try {
        for await (const chunk of to.readable) await writeAll(from, chunk);
      } catch {
        // Cut: the connection is gone.
      }
    })();
    try {
      while (total < options.cutAfter) {
        const n = await from.read(buf.subarray(0, Math.min(buf.length, options.cutAfter - total)));
        if (n === null) break;
        await writeAll(to, buf.subarray(0, n));
        total += n;
      }
    } finally {
      from.close();
      try {
        to.close();
      } catch {
        // Already closed by the reader above.
      }
    }
    await back;
    return total;
  })();
  forwarded.catch(() => {});
  return Promise.resolve({
    endpoint: `tcp:127.0.0.1:${port}`,
    forwarded,
    async [Symbol.asyncDispose]() {
      try {
        listener.close();
      } catch {
        // Closed after the accept.
      }
      await forwarded.catch(() => 0);
    },
  });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}
