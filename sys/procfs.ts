/**
 * Reads `/proc` and `/sys` through libc. Deno asks for `--allow-all` to read
 * anything under them with its file API; the FFI boundary needs only
 * `--allow-ffi`.
 *
 * @module
 */

import { libc } from "./_libc.ts";
import { O_CLOEXEC, O_RDONLY } from "./constants.ts";
import { errno } from "./_libc.ts";
import { SyscallError } from "./errors.ts";

/** `O_DIRECTORY`. */
const O_DIRECTORY = 0o200000;
/** `__NR_getdents64` on x86_64. */
const SYS_GETDENTS64 = 217n;
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

/**
 * Lists a directory such as `/sys/kernel/iommu_groups/26/devices`
 * (`getdents64(2)`), without `.` and `..`.
 *
 * @param path The directory.
 * @returns The entry names, sorted.
 * @throws {SyscallError} When it cannot be opened or read.
 *
 * @example
 * ```ts ignore
 * import { listDirectory } from "./procfs.ts";
 * console.log(listDirectory("/sys/kernel/iommu_groups"));
 * ```
 */
export function listDirectory(path: string): string[] {
  const sys = defaultSyscalls();
  const fd = sys.open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  const names: string[] = [];
  const buf = new Uint8Array(32768);
  const view = new DataView(buf.buffer);
  const decoder = new TextDecoder();
  try {
    for (;;) {
      // SAFETY: buf outlives the call; the kernel writes at most buf.length bytes.
      const n = Number(
        libc().syscall3(
          SYS_GETDENTS64,
          BigInt(fd),
          Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)),
          BigInt(buf.length),
        ),
      );
      if (n < 0) throw new SyscallError("getdents64", errno(), { path });
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
