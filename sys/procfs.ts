/**
 * Reads `/proc` and `/sys` through the syscall boundary. Deno asks for
 * `--allow-all` to read anything under them with its file API; the FFI
 * boundary needs only `--allow-ffi`. Every function takes `syscalls`, so a
 * fake kernel can answer (or refuse) the reads.
 *
 * @module
 */

import { O_CLOEXEC, O_RDONLY } from "./constants.ts";
import { SyscallError } from "./errors.ts";
import { defaultSyscalls } from "./libc.ts";
import type { ProcSyscalls } from "./syscalls.ts";

/** `O_DIRECTORY`. */
const O_DIRECTORY = 0o200000;
/** `O_WRONLY`. */
const O_WRONLY = 1;

/** Runs a call on an open file, naming the path in a failure. */
function onPath<T>(path: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    if (e instanceof SyscallError && e.path === undefined) {
      throw new SyscallError(e.syscall, e.errno, { path, cause: e });
    }
    throw e;
  }
}

/** Options of the `/proc` and `/sys` helpers. */
export interface ProcOptions {
  /** The syscall boundary (default libc). */
  syscalls?: ProcSyscalls;
}

/**
 * Reads a text file such as `/proc/meminfo` or `/proc/self/status`.
 *
 * @param path The path.
 * @param options `syscalls` (default libc).
 * @returns Its text.
 * @throws {SyscallError} When it cannot be opened or read.
 *
 * @example
 * ```ts ignore
 * import { readProcFile } from "./procfs.ts";
 * console.log(readProcFile("/proc/self/status"));
 * ```
 */
export function readProcFile(path: string, options: ProcOptions = {}): string {
  const sys = options.syscalls ?? defaultSyscalls();
  const fd = sys.open(path, O_RDONLY | O_CLOEXEC);
  try {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const buf = new Uint8Array(65536);
      const n = onPath(path, () => sys.read(fd, buf));
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
 * Writes text to a file such as `/proc/self/clear_refs` in one `write(2)`.
 *
 * @param path The path.
 * @param text The text.
 * @param options `syscalls` (default libc).
 * @throws {SyscallError} When it cannot be opened or written, naming the path.
 *
 * @example
 * ```ts ignore
 * import { writeProcFile } from "./procfs.ts";
 * writeProcFile("/proc/self/clear_refs", "4\n");
 * ```
 */
export function writeProcFile(path: string, text: string, options: ProcOptions = {}): void {
  const sys = options.syscalls ?? defaultSyscalls();
  const fd = sys.open(path, O_WRONLY | O_CLOEXEC);
  try {
    onPath(path, () => sys.write(fd, new TextEncoder().encode(text)));
  } finally {
    sys.close(fd);
  }
}

/**
 * This process's peak resident set size (`VmHWM`).
 *
 * @param options `syscalls` (default libc).
 * @returns Bytes, or `null` when it cannot be read.
 *
 * @example
 * ```ts ignore
 * import { peakRssBytes } from "./procfs.ts";
 * console.log(peakRssBytes());
 * ```
 */
export function peakRssBytes(options: ProcOptions = {}): number | null {
  try {
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(readProcFile("/proc/self/status", options))?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}

/**
 * This process's real user id.
 *
 * @param options `syscalls` (default libc).
 * @returns The uid.
 *
 * @example
 * ```ts ignore
 * import { currentUid } from "./procfs.ts";
 * console.log(currentUid());
 * ```
 */
export function currentUid(options: ProcOptions = {}): number {
  return (options.syscalls ?? defaultSyscalls()).getuid();
}

/**
 * Lists a directory such as `/sys/kernel/iommu_groups/26/devices`
 * (`getdents64(2)`), without `.` and `..`.
 *
 * @param path The directory.
 * @param options `syscalls` (default libc).
 * @returns The entry names, sorted.
 * @throws {SyscallError} When it cannot be opened or read.
 *
 * @example
 * ```ts ignore
 * import { listDirectory } from "./procfs.ts";
 * console.log(listDirectory("/sys/kernel/iommu_groups"));
 * ```
 */
export function listDirectory(path: string, options: ProcOptions = {}): string[] {
  const sys = options.syscalls ?? defaultSyscalls();
  const fd = sys.open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  const names: string[] = [];
  const buf = new Uint8Array(32768);
  const view = new DataView(buf.buffer);
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const n = onPath(path, () => sys.getdents64(fd, buf));
      if (n === 0) break;
      // struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name[]
      for (let at = 0; at < n;) {
        const reclen = view.getUint16(at + 16, true);
        const name = buf.subarray(at + 19, at + reclen);
        const end = name.indexOf(0);
        const s = decoder.decode(end < 0 ? name : name.subarray(0, end));
        if (s !== "." && s !== "..") names.push(s);
        at += reclen;
      }
    }
  } finally {
    sys.close(fd);
  }
  return names.sort();
}
