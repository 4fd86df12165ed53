/**
 * How much memory this machine can back right now: `MemAvailable` from
 * `/proc/meminfo`, lowered to what the process's cgroup (v2) still allows.
 * Checked before prefaulting guest RAM, so that asking for more than the
 * host has fails in one line instead of paging the host into the OOM killer.
 *
 * Requires `--allow-ffi` (the `/proc` reads go through libc).
 *
 * @module
 */

import { type ProcOptions, readProcFile } from "../sys/procfs.ts";

/** What the host can back, and where the figure comes from. */
export interface HostCapacity {
  /** Bytes that can be populated now. */
  readonly bytes: number;
  /** Where the figure comes from (`MemAvailable in /proc/meminfo`, or the cgroup file). */
  readonly source: string;
}

/**
 * Reads the memory this process could populate now.
 *
 * @param options `syscalls` for the `/proc` and `/sys` reads (default libc).
 * @returns The capacity, or `undefined` when `/proc/meminfo` cannot be read.
 *
 * @example
 * ```ts ignore
 * import { hostCapacity } from "./host_capacity.ts";
 * console.log(hostCapacity()?.bytes);
 * ```
 */
export function hostCapacity(options: ProcOptions = {}): HostCapacity | undefined {
  const read = (path: string) => readProcFile(path, options);
  let best: HostCapacity | undefined;
  try {
    const kb = /^MemAvailable:\s+(\d+) kB/m.exec(read("/proc/meminfo"))?.[1];
    if (kb !== undefined) {
      best = { bytes: Number(kb) * 1024, source: "MemAvailable in /proc/meminfo" };
    }
  } catch {
    return undefined;
  }
  try {
    const path = /^0::(\/.*)$/m.exec(read("/proc/self/cgroup"))?.[1];
    if (path !== undefined) {
      const dir = `/sys/fs/cgroup${path === "/" ? "" : path}`;
      const max = read(`${dir}/memory.max`).trim();
      if (max !== "max") {
        const left = Number(max) - Number(read(`${dir}/memory.current`).trim());
        if (best === undefined || left < best.bytes) {
          best = { bytes: Math.max(0, left), source: `${dir}/memory.max` };
        }
      }
    }
  } catch {
    // No cgroup v2 limit to read: MemAvailable stands.
  }
  return best;
}

/**
 * Throws when `bytes` of guest RAM to be populated exceed what the host can
 * back now (with `headroom` kept free for everything else).
 *
 * @param bytes The RAM to populate.
 * @param options `what` names it in the message; `headroom` (default 256 MiB);
 *   `syscalls` for the `/proc` and `/sys` reads (default libc).
 * @throws {RangeError} Naming the size, what is available, and where that
 *   figure comes from.
 *
 * @example
 * ```ts ignore
 * import { checkHostCapacity } from "./host_capacity.ts";
 * checkHostCapacity(2 ** 40, { what: "--ram 1T" }); // RangeError on most machines
 * ```
 */
export function checkHostCapacity(
  bytes: number,
  options: { what?: string; headroom?: number } & ProcOptions = {},
): void {
  const cap = hostCapacity(options.syscalls === undefined ? {} : { syscalls: options.syscalls });
  if (cap === undefined) return;
  const headroom = options.headroom ?? 256 * 2 ** 20;
  if (bytes + headroom <= cap.bytes) return;
  throw new RangeError(
    `Cannot back ${options.what ?? "the guest RAM"} (${formatBytes(bytes)}): this machine can ` +
      `populate ${formatBytes(cap.bytes)} now (${cap.source}), and ${
        formatBytes(headroom)
      } must stay free for the rest`,
  );
}

/**
 * A byte count for people: `1.5 GiB`, `640 MiB`, `12 KiB`, `100 bytes`.
 *
 * @param bytes The count.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./host_capacity.ts";
 * console.log(formatBytes(1.5 * 2 ** 30)); // "1.5 GiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  for (
    const [unit, size] of [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], [
      "KiB",
      1024,
    ]] as const
  ) {
    if (bytes >= size) return `${+(bytes / size).toFixed(1)} ${unit}`;
  }
  return `${bytes} bytes`;
}
