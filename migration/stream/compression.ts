/**
 * Compressed RAM runs (stream section type 8): the writer's choice, per run,
 * between a compressed section and the raw one, and the statistics it keeps.
 * Compression is zstd through the system's libzstd (`sys/zstd.ts`), which
 * measured 2x to 5x faster than `node:zlib`'s zstd here.
 *
 * @module
 */

import { ZstdCompressor } from "../../sys/zstd.ts";
import { COMPRESSED_HEAD_BYTES, CompressionCodec } from "./format.ts";

/** What a stream may be compressed with: `zstd`, or `none` (the default). */
export type StreamCompression = "zstd" | "none";

/** The compression choices a writer made, over all the runs it considered. */
export interface CompressionStats {
  /** The codec (`zstd`). */
  codec: "zstd";
  /** Runs given to the compressor. */
  runs: number;
  /** Of those, runs sent as compressed sections. */
  compressedRuns: number;
  /** The payload bytes those runs would have taken raw (pages, or a sparse run's payload). */
  rawBytes: number;
  /** The payload bytes they took on the wire, compressed or raw as chosen. */
  wireBytes: number;
}

/**
 * A compressed section is sent only if its payload is at most this fraction
 * of the raw payload it replaces; otherwise the raw section goes (the
 * destination then spends nothing on decompression).
 */
export const COMPRESSED_MAX_RATIO = 7 / 8;

/** Runs shorter than this are sent raw without trying (per-call cost over gain). */
export const COMPRESS_MIN_BYTES = 16 * 1024;

/**
 * Largest run compressed as one section: larger runs are cut into runs of
 * this size (1 MiB compressed 2x faster than 4 MiB here: it stays in cache).
 */
export const COMPRESS_CHUNK_BYTES = 1 << 20;

/**
 * Runs longer than four times this are first probed: their first
 * `COMPRESS_PROBE_BYTES` are compressed alone, and if that does not reach
 * {@linkcode COMPRESSED_MAX_RATIO} the run goes raw without compressing the
 * rest. Random RAM then costs the compressor 1/16 of each 1 MiB run.
 */
export const COMPRESS_PROBE_BYTES = 64 * 1024;

/**
 * Compresses runs for a {@linkcode StreamWriter} and decides, per run,
 * whether the compressed section is worth sending.
 *
 * @example Compress a text-like run
 * ```ts
 * import { RunCompressor } from "./compression.ts";
 * using c = new RunCompressor({ maxRunBytes: 1 << 20 });
 * const run = new TextEncoder().encode("page cache text ".repeat(4096));
 * const parts = c.compress(run, run.length);
 * console.log(parts !== undefined, c.stats.compressedRuns); // true 1
 * ```
 */
export class RunCompressor {
  #zstd: ZstdCompressor;
  #out: Uint8Array;
  #head = new Uint8Array(COMPRESSED_HEAD_BYTES);
  #stats: CompressionStats = {
    codec: "zstd",
    runs: 0,
    compressedRuns: 0,
    rawBytes: 0,
    wireBytes: 0,
  };

  /**
   * Loads libzstd and sizes the output buffer for the largest run.
   *
   * @param options `maxRunBytes`: the largest run compressed at once;
   *   `level`: zstd's level (default 1).
   * @throws {ZstdError} If libzstd cannot be loaded.
   * @throws {RangeError} If the level is out of range.
   */
  constructor(options: { maxRunBytes: number; level?: number }) {
    this.#zstd = new ZstdCompressor({ level: options.level ?? 1 });
    this.#out = new Uint8Array(ZstdCompressor.bound(options.maxRunBytes));
    new DataView(this.#head.buffer).setUint32(0, CompressionCodec.ZSTD, true);
  }

  /** The choices so far. */
  get stats(): CompressionStats {
    return { ...this.#stats };
  }

  /**
   * Compresses `run` (after a probe of its start, if it is long: see
   * {@linkcode COMPRESS_PROBE_BYTES}) and returns the compressed section's payload parts if
   * they are at most {@linkcode COMPRESSED_MAX_RATIO} of `rawBytes`;
   * otherwise `undefined`, and the caller sends its raw section. The parts
   * stay valid until the next call.
   *
   * @param run The run's pages (at most `maxRunBytes`).
   * @param rawBytes The payload of the raw section the caller would send instead.
   * @returns The head and the compressed bytes, or `undefined`.
   * @throws {ZstdError} If libzstd fails.
   */
  compress(run: Uint8Array, rawBytes: number): [Uint8Array, Uint8Array] | undefined {
    const s = this.#stats;
    s.runs++;
    s.rawBytes += rawBytes;
    if (run.length >= 4 * COMPRESS_PROBE_BYTES) {
      const probe = this.#zstd.compress(run.subarray(0, COMPRESS_PROBE_BYTES), this.#out);
      if (probe > COMPRESS_PROBE_BYTES * COMPRESSED_MAX_RATIO) {
        s.wireBytes += rawBytes;
        return undefined;
      }
    }
    const n = this.#zstd.compress(run, this.#out);
    if (COMPRESSED_HEAD_BYTES + n > rawBytes * COMPRESSED_MAX_RATIO || n >= run.length) {
      s.wireBytes += rawBytes;
      return undefined;
    }
    new DataView(this.#head.buffer).setBigUint64(8, BigInt(run.length), true);
    s.compressedRuns++;
    s.wireBytes += COMPRESSED_HEAD_BYTES + n;
    return [this.#head, this.#out.subarray(0, n)];
  }

  /** Frees the libzstd context; idempotent. */
  close(): void {
    this.#zstd.close();
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
