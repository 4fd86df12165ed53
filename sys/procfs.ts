/**
 * Reads `/proc` files through libc. Deno asks for `--allow-all` to read
 * anything under `/proc` with its file API; the FFI boundary needs only
 * `--allow-ffi`.
 *
 * @module
 */

import { libc } from "./_libc.ts";
import { O_CLOEXEC, O_RDONLY } from "./constants.ts";
import { defaultSyscalls } from "./libc.ts";

/**
 * Reads a text file such as `/proc/meminfo` or `/proc/self/status`.
 *
 * @param path The path.
 * @returns Its text.
 * @throws {SyscallError} When it cannot be opened or read.
 *
 * @example
 * ```ts ignore
 * import { readProcFile } from "./procfs.ts";
 * console.log(readProcFile("/proc/self/status"));
 * ```
 */
export function readProcFile(path: string): string {
  const sys = defaultSyscalls();
  const fd = sys.open(path, O_RDONLY | O_CLOEXEC);
  try {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const buf = new Uint8Array(65536);
      const n = sys.read(fd, buf);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
    }
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new TextDecoder().decode(all);
  } finally {
    sys.close(fd);
  }
}

/**
 * This process's peak resident set size (`VmHWM`).
 *
 * @returns Bytes, or `null` when it cannot be read.
 *
 * @example
 * ```ts ignore
 * import { peakRssBytes } from "./procfs.ts";
 * console.log(peakRssBytes());
 * ```
 */
export function peakRssBytes(): number | null {
  try {
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(readProcFile("/proc/self/status"))?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}

/**
 * This process's real user id.
 *
 * @returns The uid.
 *
 * @example
 * ```ts ignore
 * import { currentUid } from "./procfs.ts";
 * console.log(currentUid());
 * ```
 */
export function currentUid(): number {
  return libc().getuid();
}
