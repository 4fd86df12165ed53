/**
 * Whether a process listens on a unix socket file, asked of the kernel with
 * a non-blocking `connect(2)`: a socket file left behind by a process that
 * died answers `ECONNREFUSED`.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

import { errno, libc } from "./_libc.ts";
import { EAGAIN, ECONNREFUSED } from "./errno.ts";
import { SyscallError } from "./errors.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
/** `sizeof(struct sockaddr_un)`: `sa_family_t` then 108 bytes of path. */
const SOCKADDR_UN_BYTES = 110;

/**
 * Asks whether something accepts connections on the unix socket at `path`.
 *
 * @param path The socket file.
 * @returns `true` if a process listens there (the connection is dropped at
 *   once), `false` if the kernel refuses the connection (nobody listens).
 * @throws {RangeError} If the path does not fit `sockaddr_un` (107 bytes).
 * @throws {SyscallError} For any other answer (`ENOENT`, `EACCES`...), naming the path.
 *
 * @example A path nobody listens on
 * ```ts ignore
 * import { unixSocketListening } from "./unix_socket.ts";
 * console.log(unixSocketListening("/tmp/stale.sock")); // false
 * ```
 */
export function unixSocketListening(path: string): boolean {
  const addr = new Uint8Array(SOCKADDR_UN_BYTES);
  const { written } = new TextEncoder().encodeInto(path, addr.subarray(2, SOCKADDR_UN_BYTES - 1));
  if (written === undefined || written >= SOCKADDR_UN_BYTES - 3 || path.length === 0) {
    throw new RangeError(`Cannot reach unix socket ${path}: the path is empty or too long`);
  }
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError("socket", errno());
  try {
    if (c.connect(fd, addr, SOCKADDR_UN_BYTES) === 0) return true;
    const e = errno();
    if (e === ECONNREFUSED) return false;
    if (e === EAGAIN) return true; // a listener whose backlog is full
    throw new SyscallError("connect", e, { path });
  } finally {
    c.close(fd);
  }
}
