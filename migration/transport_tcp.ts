/**
 * The TCP transport: the source connects, the destination listens and
 * accepts one connection. Requires `--allow-net`.
 *
 * @module
 */

import type { Endpoint } from "./endpoint.ts";
import { SocketListener } from "./_socket_listener.ts";
import { StreamChannel, type StreamListener } from "./transport.ts";

/** A parsed TCP endpoint. */
export type TcpEndpoint = Extract<Endpoint, { transport: "tcp" }>;

/**
 * Connects to a listening destination. Nagle is off: the stream writer
 * batches small sections itself.
 *
 * @param endpoint Host and port to connect to.
 * @returns The connected channel.
 * @throws {Deno.errors.ConnectionRefused} If nothing listens there (and other `Deno.errors`).
 *
 * @example Connect to a local listener
 * ```ts
 * import { connectTcp, listenTcp, type TcpEndpoint } from "./transport_tcp.ts";
 * using listener = listenTcp({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * const accepted = listener.accept();
 * using source = await connectTcp(listener.endpoint as TcpEndpoint);
 * using dest = await accepted;
 * await source.write(new Uint8Array([7]));
 * const b = new Uint8Array(1);
 * console.log(await dest.read(b), b[0]); // 1 7
 * ```
 */
export async function connectTcp(endpoint: TcpEndpoint): Promise<StreamChannel> {
  const conn = await Deno.connect({ hostname: endpoint.hostname, port: endpoint.port });
  try {
    conn.setNoDelay(true);
  } catch (e) {
    conn.close();
    throw e;
  }
  return new StreamChannel(conn, `tcp:${endpoint.hostname}:${endpoint.port}`);
}

/**
 * Listens on a TCP address for exactly one connection.
 *
 * @param endpoint Host and port; port 0 picks a free port, reported in the
 *   listener's `endpoint`.
 * @returns The listener; close it (or `using`) if `accept()` is never called.
 * @throws {Deno.errors.AddrInUse} If the port is taken (and other `Deno.errors`).
 *
 * @example Listen on a free port
 * ```ts
 * import { listenTcp } from "./transport_tcp.ts";
 * using listener = listenTcp({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * console.log(listener.endpoint); // { transport: "tcp", hostname: "127.0.0.1", port: 4xxxx }
 * ```
 */
export function listenTcp(endpoint: TcpEndpoint): StreamListener {
  const listener = Deno.listen({ hostname: endpoint.hostname, port: endpoint.port });
  const bound: TcpEndpoint = {
    transport: "tcp",
    hostname: endpoint.hostname,
    port: listener.addr.port,
  };
  return new SocketListener(listener, bound, {
    onAccept: (conn) => (conn as Deno.TcpConn).setNoDelay(true),
  });
}
