// Shared by memory tests (host and in-guest): random write sets, and a
// Syscalls wrapper that counts mappings and injects failures.

import { guestAddress } from "../sys/address.ts";
import { SyscallError } from "../sys/errors.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { ForwardingSyscalls } from "./forwarding_syscalls.ts";
import { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export type WriteKind = "byte" | "page" | "span2m" | "edge";

/**
 * Makes random writes through the API and returns the expected bitmaps.
 * Regions must be at least 4 MiB for "span2m".
 */
export function randomWrites(
  memory: GuestMemory,
  options: { seed: number; count: number; kinds: WriteKind[] },
): DirtyBitmap[] {
  const rand = mulberry32(options.seed);
  const regions = memory.regions;
  const expected = regions.map((r) => new DirtyBitmap(r.pages));
  function mark(gpa: bigint, length: number): void {
    let left = length;
    let at = gpa;
    while (left > 0) {
      const r = regions.find((x) => x.contains(at))!;
      const off = Number(at - r.gpa);
      const n = Math.min(left, Number(r.size) - off);
      const first = Math.floor(off / 4096);
      expected[r.index].setRange(first, Math.floor((off + n - 1) / 4096) - first + 1);
      left -= n;
      at += BigInt(n);
    }
  }
  for (let k = 0; k < options.count; k++) {
    const kind = options.kinds[rand() % options.kinds.length];
    const r = regions[rand() % regions.length];
    const size = Number(r.size);
    let off: number;
    let len: number;
    switch (kind) {
      case "byte":
        off = rand() % size;
        len = 1;
        break;
      case "page":
        off = (rand() % r.pages) * 4096;
        len = 4096;
        break;
      case "span2m":
        len = Math.min(2 << 20, size);
        off = (rand() % (size - len + 1)) & ~0xfff;
        off += rand() % 2 === 0 ? 0 : Math.min(0x800, size - len - off); // sometimes unaligned
        break;
      case "edge": {
        const which = rand() % 3;
        len = 1 + (rand() % 16);
        if (which === 0) off = 0;
        else if (which === 1) off = size - len;
        else {
          // straddle into the next region when it is adjacent, else the last bytes
          const next = regions[r.index + 1];
          off = next !== undefined && next.gpa === r.end ? size - Math.ceil(len / 2) : size - len;
        }
        break;
      }
    }
    const gpa = guestAddress(r.gpa + BigInt(off));
    const data = new Uint8Array(len);
    for (let i = 0; i < len; i += 997) data[i] = rand() & 0xff;
    data[0] = (rand() & 0xfe) + 1;
    memory.write(gpa, data);
    mark(gpa, len);
  }
  return expected;
}

/** Pages set in `expected` but not in `actual`, as "region:page" strings. */
export function missing(expected: DirtyBitmap[], actual: DirtyBitmap[]): string[] {
  const out: string[] = [];
  expected.forEach((bm, r) => {
    for (const p of bm.pageIndexes()) if (!actual[r].test(p)) out.push(`${r}:${p}`);
  });
  return out;
}

export function orInto(acc: DirtyBitmap[], more: DirtyBitmap[]): void {
  acc.forEach((bm, i) => bm.orMerge(more[i]));
}

/** Libc syscalls that count mappings and can fail the n-th mmap. */
export class CountingSyscalls extends ForwardingSyscalls {
  mapped = new Map<bigint, bigint>();
  mmaps = 0;
  munmaps = 0;
  failMmapAt = -1;
  failErrno = 12;

  constructor(inner: Syscalls = defaultSyscalls()) {
    super(inner);
  }

  override mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    if (this.mmaps++ === this.failMmapAt) throw new SyscallError("mmap", this.failErrno);
    const addr = this.inner.mmap(length, prot, flags, fd, offset);
    this.mapped.set(addr, length);
    return addr;
  }
  override munmap(addr: bigint, length: bigint): void {
    this.munmaps++;
    this.inner.munmap(addr, length);
    this.mapped.delete(addr);
  }
}

/** Lines of /proc/self/maps covering `addr`. */
export function mapsLinesAt(addr: bigint): string[] {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((line) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (!m) return false;
    return addr >= BigInt("0x" + m[1]) && addr < BigInt("0x" + m[2]);
  });
}

export function openFdCount(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}
