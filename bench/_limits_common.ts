/**
 * Shared pieces of bench/limits.ts and bench/limits_bench.ts: building the C
 * baselines into bench/out/, loading the FFI ones, the random page order and
 * bitmap densities both sides use, and small statistics.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import { median } from "./_stats.ts";

export { median };
import type { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";

/** The repository root (with a trailing slash). */
export const ROOT: string = new URL("..", import.meta.url).pathname;
/** Where binaries and results go (gitignored). */
export const OUT: string = `${ROOT}bench/out`;

const encoder = new TextEncoder();

/**
 * Writes one progress line to stderr.
 *
 * @param text The line.
 */
export function progress(text: string): void {
  Deno.stderr.writeSync(encoder.encode(`[limits] ${text}\n`));
}

/**
 * Compiles one C file from bench/c/ with the system `cc` into bench/out/.
 *
 * @param source The file name in bench/c/ (for example `"memcpy_bw.c"`).
 * @param output The file name to write in bench/out/.
 * @param flags Extra compiler flags (`-O2` is always given).
 * @param libs Libraries to link, after the source (`-lssl`).
 * @returns The path of the built file.
 * @throws {Error} If there is no compiler or the build fails.
 */
export function buildC(
  source: string,
  output: string,
  flags: readonly string[] = [],
  libs: readonly string[] = [],
): string {
  Deno.mkdirSync(OUT, { recursive: true });
  const path = `${OUT}/${output}`;
  let r: Deno.CommandOutput;
  try {
    r = new Deno.Command("cc", {
      args: ["-O2", "-Wall", ...flags, "-o", path, `${ROOT}bench/c/${source}`, ...libs],
    }).outputSync();
  } catch (e) {
    throw new Error(`The C baselines need a C compiler (apt-get install gcc): ${e}`);
  }
  if (!r.success) {
    throw new Error(`cc ${source} failed: ${new TextDecoder().decode(r.stderr)}`);
  }
  return path;
}

/** A xorshift32 generator, the same as the C baselines' `next_rand()`. */
export class XorShift32 {
  #x: number;

  /**
   * Seeds the generator.
   *
   * @param seed A non-zero seed (default 1, as in the C files).
   */
  constructor(seed = 1) {
    this.#x = seed >>> 0 || 1;
  }

  /**
   * The next value.
   *
   * @returns An unsigned 32-bit integer.
   */
  next(): number {
    let x = this.#x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#x = x >>> 0;
    return this.#x;
  }
}

/**
 * Every page index once in a random order: the Fisher-Yates shuffle of
 * bench/c/memcpy_bw.c (`page_order`), so both sides copy in the same order.
 *
 * @param pages The page count.
 * @returns The shuffled indexes.
 */
export function pageOrder(pages: number): Uint32Array {
  const order = new Uint32Array(pages);
  for (let i = 0; i < pages; i++) order[i] = i;
  const rng = new XorShift32(1);
  for (let i = pages - 1; i > 0; i--) {
    const j = rng.next() % (i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/**
 * Sets each page's bit with probability `fraction` (deterministically, from
 * seed 1), or every bit for 1.
 *
 * @param bitmap The bitmap, cleared first.
 * @param fraction The density, 0 to 1.
 */
export function fillDensity(bitmap: DirtyBitmap, fraction: number): void {
  bitmap.clearAll();
  if (fraction >= 1) {
    bitmap.fillAll();
    return;
  }
  const limit = Math.round(fraction * 2 ** 32);
  const rng = new XorShift32(1);
  const w = bitmap.words;
  for (let p = 0; p < bitmap.pages; p++) {
    if (rng.next() < limit) w[p >>> 5] |= 1 << (p & 31);
  }
}

/** The C bitmap scans of bench/c/bitmap_scan.c, called on a DirtyBitmap's words. */
export interface CBitmapScan {
  /**
   * Population count (as `DirtyBitmap.count()`).
   *
   * @param bm The bitmap.
   * @returns The set bits.
   */
  count(bm: DirtyBitmap): number;
  /**
   * `[first, count]` pairs into `out` (as `DirtyBitmap.forEachRun()`).
   *
   * @param bm The bitmap.
   * @param out Room for the pairs (two entries each).
   * @returns The number of runs.
   */
  runs(bm: DirtyBitmap, out: Uint32Array): number;
  /**
   * Set bit indexes into `out` (as `DirtyBitmap.pageIndexes()`).
   *
   * @param bm The bitmap.
   * @param out Room for the indexes.
   * @returns The number of set bits.
   */
  indexes(bm: DirtyBitmap, out: Uint32Array): number;
  /** Unloads the library. */
  close(): void;
}

/**
 * Builds bench/c/bitmap_scan.c as a shared object and loads it.
 *
 * @returns The scans.
 * @throws {Error} If the build or the load fails.
 */
export function openBitmapScan(): CBitmapScan {
  const path = buildC("bitmap_scan.c", "libbitmap_scan.so", [
    "-march=native",
    "-shared",
    "-fPIC",
  ]);
  const lib = Deno.dlopen(path, {
    bm_count: { parameters: ["buffer", "u64"], result: "u64" },
    bm_runs: { parameters: ["buffer", "u64", "u64", "buffer", "u64"], result: "u64" },
    bm_indexes: { parameters: ["buffer", "u64", "buffer", "u64"], result: "u64" },
  });
  const s = lib.symbols;
  // Every 64-bit argument is a bigint: the FFI fast path (see performance-facts.md).
  return {
    count: (bm) => Number(s.bm_count(bm.words, BigInt(bm.words.length >>> 1))),
    runs: (bm, out) =>
      Number(
        s.bm_runs(
          bm.words,
          BigInt(bm.words.length >>> 1),
          BigInt(bm.pages),
          out,
          BigInt(out.length >>> 1),
        ),
      ),
    indexes: (bm, out) =>
      Number(s.bm_indexes(bm.words, BigInt(bm.words.length >>> 1), out, BigInt(out.length))),
    close: () => lib.close(),
  };
}

/** The copy loops of bench/c/memcpy_bw.c, on host addresses. */
export interface CMemcpy {
  /**
   * Copies `size` bytes in `run`-byte memcpy calls.
   *
   * @param dst Destination host address.
   * @param src Source host address.
   * @param size Bytes.
   * @param run Bytes per memcpy call.
   */
  chunks(dst: bigint, src: bigint, size: bigint, run: bigint): void;
  /**
   * Copies the 4 KiB pages listed in `order`, in that order.
   *
   * @param dst Destination host address.
   * @param src Source host address.
   * @param order Page indexes.
   */
  pages(dst: bigint, src: bigint, order: Uint32Array): void;
  /** Unloads the library. */
  close(): void;
}

/**
 * Builds bench/c/memcpy_bw.c as a shared object and loads its copy loops.
 *
 * @returns The loops.
 * @throws {Error} If the build or the load fails.
 */
export function openMemcpy(): CMemcpy {
  const path = buildC("memcpy_bw.c", "libmemcpy_bw.so", [
    "-DMEMCPY_BW_LIBRARY",
    "-shared",
    "-fPIC",
  ]);
  const lib = Deno.dlopen(path, {
    memcpy_chunks: { parameters: ["u64", "u64", "u64", "u64"], result: "void" },
    memcpy_pages: { parameters: ["u64", "u64", "buffer", "u64"], result: "void" },
  });
  const s = lib.symbols;
  return {
    chunks: (dst, src, size, run) => s.memcpy_chunks(dst, src, size, run),
    pages: (dst, src, order) => s.memcpy_pages(dst, src, order, BigInt(order.length)),
    close: () => lib.close(),
  };
}

/**
 * Fills bytes with random data, 64 KiB per `getRandomValues` call.
 *
 * @param bytes The bytes to fill.
 */
export function fillRandom(bytes: Uint8Array): void {
  for (let o = 0; o < bytes.length; o += 65536) {
    crypto.getRandomValues(bytes.subarray(o, Math.min(o + 65536, bytes.length)));
  }
}

/**
 * A cheap RAM digest for timing runs: CRC-32 over every region (the stream
 * format leaves the digest to the caller; `node:zlib` crc32 runs at about
 * 26 GB/s here, so it costs little next to the transfer).
 *
 * @param memory The guest memory.
 * @returns The 4 digest bytes.
 */
export function crcDigest(memory: GuestMemory): Uint8Array {
  let crc = 0;
  for (const r of memory.regions) crc = crc32(memory.readView(r.gpa, Number(r.size)), crc);
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, crc, true);
  return out;
}
