/**
 * The unix-socket transport: the source connects, the destination creates
 * the socket file, accepts one connection and removes the file. Requires
 * `--allow-read` and `--allow-write` for the path.
 *
 * @module
 */

import type { Endpoint } from "./endpoint.ts";
import { SocketListener } from "./_socket_listener.ts";
import { StreamChannel, type StreamListener } from "./transport.ts";

/** A parsed unix-socket endpoint. */
export type UnixEndpoint = Extract<Endpoint, { transport: "unix" }>;

/**
 * Connects to a listening destination's socket file.
 *
 * @param endpoint The socket path.
 * @returns The connected channel.
 * @throws {Deno.errors.NotFound} If no socket exists at the path (and other `Deno.errors`).
 *
 * @example Connect to a local listener
 * ```ts
 * import { connectUnix, listenUnix } from "./transport_unix.ts";
 * const dir = await Deno.makeTempDir();
 * {
 *   using listener = listenUnix({ transport: "unix", path: `${dir}/mig.sock` });
 *   const accepted = listener.accept();
 *   using source = await connectUnix({ transport: "unix", path: `${dir}/mig.sock` });
 *   using dest = await accepted;
 *   await source.write(new Uint8Array([7]));
 *   console.log(await dest.read(new Uint8Array(1))); // 1
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function connectUnix(endpoint: UnixEndpoint): Promise<StreamChannel> {
  const conn = await Deno.connect({ transport: "unix", path: endpoint.path });
  return new StreamChannel(conn, `unix:${endpoint.path}`);
}

/**
 * Creates the socket file and listens for exactly one connection. The file
 * is removed when the listener closes (after `accept()`, on abort, or on
 * `close()`).
 *
 * @param endpoint The socket path; it must not exist yet.
 * @returns The listener.
 * @throws {Deno.errors.AddrInUse} If the path exists (and other `Deno.errors`).
 *
 * @example Listen and close again
 * ```ts
 * import { listenUnix } from "./transport_unix.ts";
 * const dir = await Deno.makeTempDir();
 * listenUnix({ transport: "unix", path: `${dir}/mig.sock` }).close();
 * await Deno.remove(dir); // empty again: the socket file is gone
 * ```
 */
export function listenUnix(endpoint: UnixEndpoint): StreamListener {
  const listener = Deno.listen({ transport: "unix", path: endpoint.path });
  return new SocketListener(listener, { transport: "unix", path: endpoint.path }, {
    onClose: () => removeSocket(endpoint.path),
  });
}

function removeSocket(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
