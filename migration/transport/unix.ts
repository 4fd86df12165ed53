/**
 * The unix-socket transport: the source connects, the destination creates
 * the socket file, accepts, and removes the file when it stops listening.
 * Requires `--allow-read` and `--allow-write` for the path, and
 * `--allow-ffi` to replace a socket file a dead process left behind.
 *
 * @module
 */

import type { Endpoint } from "./endpoint.ts";
import { SocketListener } from "./_socket_listener.ts";
import { unixSocketListening } from "../../sys/unix_socket.ts";
import {
  type ConnectOptions,
  rethrowNamed,
  StreamChannel,
  type StreamListener,
} from "./channel.ts";

/** A parsed unix-socket endpoint. */
export type UnixEndpoint = Extract<Endpoint, { transport: "unix" }>;

/**
 * Connects to a listening destination's socket file.
 *
 * @param endpoint The socket path.
 * @param options Bound on the channel's calls, abort signal.
 * @returns The connected channel.
 * @throws {Deno.errors.NotFound} If no socket exists at the path (and other `Deno.errors`).
 *
 * @example Connect to a local listener
 * ```ts
 * import { connectUnix, listenUnix } from "./unix.ts";
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
export async function connectUnix(
  endpoint: UnixEndpoint,
  options: ConnectOptions = {},
): Promise<StreamChannel> {
  const label = `unix:${endpoint.path}`;
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: endpoint.path });
  } catch (e) {
    rethrowNamed(e, `connect to ${label}`);
  }
  return new StreamChannel(conn, label, { timeoutMs: options.timeoutMs, signal: options.signal });
}

/**
 * Creates the socket file, mode 0600 (only this user may connect), and
 * listens. The socket is bound in a private 0700 directory beside `path`,
 * made 0600 there and only then renamed into place, so it is never
 * reachable with wider permissions. The file is removed when the listener
 * closes (after `accept()`, on abort, or on `close()`). A socket file left
 * behind by a process that died is replaced; a live socket, or any other
 * file at the path, is refused.
 *
 * @param endpoint The socket path.
 * @returns The listener.
 * @throws {Deno.errors.AddrInUse} If another process listens on the path.
 * @throws {Deno.errors.AlreadyExists} If the path is a file that is not a socket.
 * @throws {Deno.errors.NotFound} If the directory does not exist (and other
 *   `Deno.errors`), each naming the path.
 *
 * @example Listen and close again
 * ```ts
 * import { listenUnix } from "./unix.ts";
 * const dir = await Deno.makeTempDir();
 * listenUnix({ transport: "unix", path: `${dir}/mig.sock` }).close();
 * await Deno.remove(dir); // empty again: the socket file is gone
 * ```
 */
export function listenUnix(endpoint: UnixEndpoint): StreamListener {
  const { path } = endpoint;
  removeStaleSocket(path);
  let listener: Deno.UnixListener;
  let stage: string | undefined;
  try {
    const slash = path.lastIndexOf("/");
    const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
    stage = Deno.makeTempDirSync({ dir, prefix: ".dv" }); // mode 0700
    const inner = `${stage}/s`;
    listener = Deno.listen({ transport: "unix", path: inner });
    try {
      Deno.chmodSync(inner, 0o600);
      Deno.renameSync(inner, path);
    } catch (e) {
      listener.close();
      throw e;
    }
  } catch (e) {
    rethrowNamed(e, `listen on unix:${path}`);
  } finally {
    if (stage !== undefined) Deno.removeSync(stage, { recursive: true });
  }
  return new SocketListener(listener, { transport: "unix", path }, {
    onClose: () => removeSocket(path),
  });
}

// A socket file nobody listens on is what a killed destination leaves: it
// goes. Anything else at the path stays, and listening fails naming it.
function removeStaleSocket(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    rethrowNamed(e, `listen on unix:${path}`);
  }
  if (!info.isSocket) {
    throw new Deno.errors.AlreadyExists(
      `Cannot listen on unix:${path}: ${path} exists and is not a socket (remove it or choose another path)`,
    );
  }
  if (socketAnswers(path)) {
    throw new Deno.errors.AddrInUse(
      `Cannot listen on unix:${path}: another process is listening on ${path}`,
    );
  }
  removeSocket(path);
}

// Whether something accepts connections on the socket file. Without
// --allow-ffi nobody can tell: the socket is then taken as live.
function socketAnswers(path: string): boolean {
  try {
    return unixSocketListening(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new Deno.errors.AddrInUse(
        `Cannot listen on unix:${path}: a socket file exists there, and without --allow-ffi ` +
          `it cannot be told whether a process still listens (remove it if none does)`,
      );
    }
    throw e;
  }
}

function removeSocket(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
