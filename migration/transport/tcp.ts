/**
 * The TCP transport: the source connects, the destination listens and
 * accepts. Requires `--allow-net`.
 *
 * @module
 */

import { type Endpoint, formatEndpoint } from "./endpoint.ts";
import { SocketListener } from "./_socket_listener.ts";
import {
  type ConnectOptions,
  connectSignal,
  rethrowNamed,
  StreamChannel,
  type StreamListener,
} from "./channel.ts";

/** A parsed TCP endpoint. */
export type TcpEndpoint = Extract<Endpoint, { transport: "tcp" }>;

/**
 * Connects to a listening destination. Nagle is off (the stream writer
 * batches small sections itself) and TCP keepalive is on, so a peer host
 * that vanishes is noticed (after the system's `tcp_keepalive_time`).
 *
 * @param endpoint Host and port to connect to.
 * @param options Bound on the connect and the channel's calls, abort signal.
 * @returns The connected channel.
 * @throws {Deno.errors.ConnectionRefused} If nothing listens there (and other
 *   `Deno.errors`), its message naming the endpoint.
 *
 * @example Connect to a local listener
 * ```ts
 * import { connectTcp, listenTcp, type TcpEndpoint } from "./tcp.ts";
 * using listener = listenTcp({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * const accepted = listener.accept();
 * using source = await connectTcp(listener.endpoint as TcpEndpoint);
 * using dest = await accepted;
 * await source.write(new Uint8Array([7]));
 * const b = new Uint8Array(1);
 * console.log(await dest.read(b), b[0]); // 1 7
 * ```
 */
export async function connectTcp(
  endpoint: TcpEndpoint,
  options: ConnectOptions = {},
): Promise<StreamChannel> {
  const label = formatEndpoint(endpoint);
  const signal = connectSignal(options, label);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: endpoint.hostname, port: endpoint.port, signal });
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    rethrowNamed(e, `connect to ${label}`);
  }
  try {
    tune(conn);
  } catch (e) {
    conn.close();
    throw e;
  }
  return new StreamChannel(conn, label, {
    peer: label.slice(4),
    timeoutMs: options.timeoutMs,
    signal: options.signal,
  });
}

function tune(conn: Deno.TcpConn): void {
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
}

/**
 * Listens on a TCP address. Accepted connections have Nagle off and
 * keepalive on.
 *
 * @param endpoint Host and port; port 0 picks a free port, reported in the
 *   listener's `endpoint`.
 * @returns The listener; close it (or `using`) if `accept()` is never called.
 * @throws {Deno.errors.AddrInUse} If the port is taken (and other `Deno.errors`),
 *   its message naming the endpoint.
 *
 * @example Listen on a free port
 * ```ts
 * import { listenTcp } from "./tcp.ts";
 * using listener = listenTcp({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * console.log(listener.endpoint); // { transport: "tcp", hostname: "127.0.0.1", port: 4xxxx }
 * ```
 */
export function listenTcp(endpoint: TcpEndpoint): StreamListener {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: endpoint.hostname, port: endpoint.port });
  } catch (e) {
    rethrowNamed(e, `listen on ${formatEndpoint(endpoint)}`);
  }
  const bound: TcpEndpoint = {
    transport: "tcp",
    hostname: endpoint.hostname,
    port: listener.addr.port,
  };
  return new SocketListener(listener, bound, {
    onAccept: (conn) => tune(conn as Deno.TcpConn),
  });
}
