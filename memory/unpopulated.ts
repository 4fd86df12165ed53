/**
 * Which guest pages hold no memory yet: never written, so they read as zero
 * without being touched. Reading them would cost a page fault each, and on
 * shared memory (memfd) would allocate them.
 *
 * - memfd regions: the file's holes (`lseek` `SEEK_DATA`/`SEEK_HOLE`); a
 *   page swapped out counts as data.
 * - anonymous regions: `/proc/self/pagemap` entries neither present nor
 *   swapped. Once a PAGEMAP_SCAN tracker write-protects them, never-written
 *   anonymous pages map the shared zero page and count as populated, though
 *   reading them then costs neither a fault nor memory.
 * - huge-page regions, and regions attached without their fd: none known.
 *
 * @module
 */

import { fileHoles } from "../sys/memfd.ts";
import { PagemapReader } from "../sys/pagemap.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import type { GuestRegion } from "./guest_region.ts";

const PAGE = 4096;
const PAGEMAP_CHUNK_PAGES = 16384; // 128 KiB of pagemap entries a read
// Finely interleaved holes cost two lseek calls each: past this many, the
// rest of the range is reported populated (reading it costs less).
const MAX_HOLES = 4096;

/**
 * The unpopulated pages of `[offset, offset + length)` in `region`.
 *
 * @param region The region.
 * @param range `offset` in the region (page-aligned) and `length` (whole pages), in bytes.
 * @param options `syscalls` for `lseek` and the pagemap reads (default libc).
 * @returns `[from, length]` byte ranges relative to `offset`, ascending and page-aligned.
 * @throws {RangeError} If the range is unaligned or leaves the region.
 * @throws {SyscallError} If `lseek` or the pagemap read fails.
 *
 * @example
 * ```ts ignore
 * const holes = unpopulatedRanges(memory.regions[0], { offset: 0, length: 1 << 20 });
 * ```
 */
export function unpopulatedRanges(
  region: GuestRegion,
  range: { offset: number; length: number },
  options: { syscalls?: Syscalls } = {},
): [number, number][] {
  const { offset, length } = range;
  const sys = options.syscalls ?? defaultSyscalls();
  if (offset % PAGE !== 0 || length % PAGE !== 0 || offset < 0 || length < 0) {
    throw new RangeError(
      `Cannot look for unpopulated pages at ${offset}+${length}: not whole pages`,
    );
  }
  if (BigInt(offset + length) > region.size) {
    throw new RangeError(
      `Cannot look for unpopulated pages at ${offset}+${length}: past ${region}`,
    );
  }
  if (length === 0) return [];
  if (region.backing === "memfd" && region.unsafeFd >= 0) {
    const out: [number, number][] = [];
    const holes = fileHoles(region.unsafeFd, {
      start: BigInt(offset),
      end: BigInt(offset + length),
    }, { limit: MAX_HOLES, syscalls: sys });
    for (const [from, to] of holes) {
      // Whole pages only (tmpfs holes are whole pages already).
      const a = Math.ceil((Number(from) - offset) / PAGE) * PAGE;
      const b = Math.floor((Number(to) - offset) / PAGE) * PAGE;
      if (b > a) out.push([a, b - a]);
    }
    return out;
  }
  if (region.backing === "anonymous") return pagemapHoles(sys, region, range);
  return [];
}

// Pages whose pagemap entry is neither present (bit 63) nor swapped (bit 62).
function pagemapHoles(
  sys: Syscalls,
  region: GuestRegion,
  range: { offset: number; length: number },
): [number, number][] {
  const { offset, length } = range;
  const out: [number, number][] = [];
  const pages = length / PAGE;
  const words = new Uint32Array(2 * Math.min(pages, PAGEMAP_CHUNK_PAGES));
  using pm = new PagemapReader({ syscalls: sys });
  let runStart = -1;
  for (let first = 0; first < pages; first += PAGEMAP_CHUNK_PAGES) {
    const n = Math.min(PAGEMAP_CHUNK_PAGES, pages - first);
    const view = words.subarray(0, 2 * n);
    pm.read(BigInt(region.hostAddress) + BigInt(offset + first * PAGE), view);
    for (let i = 0; i < n; i++) {
      const empty = (view[2 * i + 1] & 0xc000_0000) === 0;
      const p = first + i;
      if (empty && runStart < 0) runStart = p;
      else if (!empty && runStart >= 0) {
        out.push([runStart * PAGE, (p - runStart) * PAGE]);
        runStart = -1;
      }
    }
  }
  if (runStart >= 0) out.push([runStart * PAGE, (pages - runStart) * PAGE]);
  return out;
}
