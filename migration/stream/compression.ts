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

/**
 * What a stream may be compressed with: `zstd`, `auto` (zstd only while it
 * pays in time: see {@linkcode CompressionGovernor}), or `none` (the default).
 */
export type StreamCompression = "zstd" | "auto" | "none";

/** The compression choices a writer made, over all the runs it considered. */
export interface CompressionStats {
  /** The codec (`zstd`). */
  codec: "zstd";
  /** How runs were chosen: `zstd` tries every run, `auto` only while compressing pays. */
  policy: "zstd" | "auto";
  /** Runs given to the compressor. */
  runs: number;
  /** Of those, runs sent as compressed sections. */
  compressedRuns: number;
  /**
   * With `auto`: runs sent raw without compressing them, because the wire
   * was estimated faster than compressing (0 with `zstd`).
   */
  wireRawRuns: number;
  /**
   * With `auto`: of {@linkcode runs}, those compressed while the wire was
   * estimated faster, to keep the estimates current (0 with `zstd`).
   */
  sampledRuns: number;
  /**
   * The payload bytes all these runs (tried or not) would have taken raw
   * (pages, or a sparse run's payload).
   */
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
  #stats: CompressionStats;

  /**
   * Loads libzstd and sizes the output buffer for the largest run.
   *
   * @param options `maxRunBytes`: the largest run compressed at once;
   *   `level`: zstd's level (default 1); `policy`: what the stats say
   *   (default `zstd`).
   * @throws {ZstdError} If libzstd cannot be loaded.
   * @throws {RangeError} If the level is out of range.
   */
  constructor(options: { maxRunBytes: number; level?: number; policy?: "zstd" | "auto" }) {
    this.#stats = {
      codec: "zstd",
      policy: options.policy ?? "zstd",
      runs: 0,
      compressedRuns: 0,
      wireRawRuns: 0,
      sampledRuns: 0,
      rawBytes: 0,
      wireBytes: 0,
    };
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

  /**
   * Counts a run sent raw without compressing it (the wire was faster).
   *
   * @param rawBytes The payload of the raw section sent.
   */
  skipped(rawBytes: number): void {
    this.#stats.wireRawRuns++;
    this.#stats.rawBytes += rawBytes;
    this.#stats.wireBytes += rawBytes;
  }

  /** Counts the last run given to {@linkcode compress} as a sample. */
  sampled(): void {
    this.#stats.sampledRuns++;
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

/** Bytes over which the estimates of {@linkcode CompressionGovernor} decay (older samples fade). */
export const GOVERNOR_WINDOW_BYTES = 2 << 20;

/**
 * Bytes over which the wire's estimate decays for writes faster than it: a
 * socket's buffer accepts bytes faster than the link while it has room.
 */
export const GOVERNOR_FAST_WINDOW_BYTES = 16 << 20;

/** Bytes of samples each estimate needs before the governor trusts it. */
export const GOVERNOR_WARM_BYTES = 1 << 20;

/**
 * While the wire is estimated faster, one run in this many is still
 * compressed, so the estimates follow a link or content that changes.
 */
export const GOVERNOR_SAMPLE_EVERY = 16;

/** The choice for one run: compress it, compress it as a sample, or send it raw. */
export type GovernorChoice = "compress" | "sample" | "raw";

/**
 * Decides, per run, whether compressing it pays in time (`compress: "auto"`).
 * It keeps two estimates, each a sum of samples that decays by
 * `1 - bytes / GOVERNOR_WINDOW_BYTES` per sample (about the last 2 MiB
 * count; for sink writes faster than the estimate, the last 16 MiB, as a
 * socket's buffer takes bytes faster than the link while it has room): the
 * compressor's (ms per input byte spent in the compress calls
 * of runs sent compressed, and their compressed bytes per raw byte) and the
 * wire's (ms per byte the sink's writes take; with a socket, backpressure
 * makes that the link's rate). A run is compressed when
 * `input × msPerInput + raw × ratio × wireMsPerByte < raw × wireMsPerByte`:
 * when a run that compresses like the last ones would get there sooner.
 * Otherwise it goes raw, except every {@linkcode GOVERNOR_SAMPLE_EVERY}th
 * such run, which is compressed as a sample. Runs that do not compress are
 * left to {@linkcode RunCompressor}'s probe and ratio rule (they cost it a
 * 64 KiB probe), so a stretch of random pages does not stop compression of
 * the text after it. Until the compressor's estimate has
 * {@linkcode GOVERNOR_WARM_BYTES} of samples runs are compressed, then until
 * the wire's has as many they go raw (a run that compresses to almost nothing
 * would otherwise never let the wire be measured).
 *
 * @example A slow wire: compressing a 1 MiB run that halves pays
 * ```ts
 * import { CompressionGovernor } from "./compression.ts";
 * const g = new CompressionGovernor();
 * g.compressed(1 << 20, 1 << 20, 1 << 19, 1.5); // 700 bytes/ms, ratio 1/2
 * g.wrote(1 << 20, 10); // 100 bytes/ms
 * console.log(g.choose(1 << 20, 1 << 20)); // "compress"
 * ```
 */
export class CompressionGovernor {
  #sampleEvery: number;
  // Compressor, over runs sent compressed: decayed input bytes, ms, raw
  // bytes, wire bytes; bytes seen.
  #cIn = 0;
  #cMs = 0;
  #cRaw = 0;
  #cOut = 0;
  #cSeen = 0;
  // Wire: decayed bytes and ms; bytes seen.
  #wBytes = 0;
  #wMs = 0;
  #wSeen = 0;
  #rawInARow = 0;

  /**
   * Creates a governor with no samples.
   *
   * @param options `sampleEvery`: one raw-chosen run in this many is
   *   compressed as a sample (default {@linkcode GOVERNOR_SAMPLE_EVERY}).
   * @throws {RangeError} If `sampleEvery` is not an integer of at least 1.
   */
  constructor(options: { sampleEvery?: number } = {}) {
    const every = options.sampleEvery ?? GOVERNOR_SAMPLE_EVERY;
    if (!Number.isInteger(every) || every < 1) {
      throw new RangeError(
        `Cannot create CompressionGovernor: sampleEvery ${every} is out of range`,
      );
    }
    this.#sampleEvery = every;
  }

  /**
   * Chooses for a run of `inputBytes` whose raw section would take `rawBytes`.
   *
   * @param inputBytes The bytes the compressor would read.
   * @param rawBytes The payload of the raw section.
   * @returns `compress`, `sample` (compress to keep the estimates current), or `raw`.
   */
  choose(inputBytes: number, rawBytes: number): GovernorChoice {
    if (this.#cSeen < GOVERNOR_WARM_BYTES) return "compress";
    if (this.#wSeen < GOVERNOR_WARM_BYTES) return "raw";
    if (!this.#pays(inputBytes, rawBytes)) {
      if (++this.#rawInARow < this.#sampleEvery) return "raw";
      this.#rawInARow = 0;
      return "sample";
    }
    this.#rawInARow = 0;
    return "compress";
  }

  /**
   * Adds a compress call's sample; a run the compressor rejected (`wireBytes`
   * not below `rawBytes`) adds nothing.
   *
   * @param inputBytes The bytes it read.
   * @param rawBytes The raw payload the run would have taken.
   * @param wireBytes The payload it took (compressed, or raw if rejected).
   * @param ms The time spent compressing.
   */
  compressed(inputBytes: number, rawBytes: number, wireBytes: number, ms: number): void {
    if (wireBytes >= rawBytes) return;
    const keep = decay(inputBytes);
    this.#cIn = this.#cIn * keep + inputBytes;
    this.#cMs = this.#cMs * keep + Math.max(0, ms);
    this.#cRaw = this.#cRaw * keep + rawBytes;
    this.#cOut = this.#cOut * keep + wireBytes;
    this.#cSeen += inputBytes;
  }

  /**
   * Adds a sink write's sample.
   *
   * @param bytes The bytes written.
   * @param ms The time the write took to resolve.
   */
  wrote(bytes: number, ms: number): void {
    // A write faster than the estimate may only have filled the socket's
    // buffer (drained while the writer compressed or scanned zero pages):
    // such samples count over a longer window.
    const faster = this.#wSeen > 0 && ms * this.#wBytes < this.#wMs * bytes;
    const keep = decay(bytes, faster ? GOVERNOR_FAST_WINDOW_BYTES : GOVERNOR_WINDOW_BYTES);
    this.#wBytes = this.#wBytes * keep + bytes;
    this.#wMs = this.#wMs * keep + Math.max(0, ms);
    this.#wSeen += bytes;
  }

  /**
   * The estimates: compressor input and wire drain in bytes per ms
   * (`Infinity` while no time was measured), and compressed bytes per raw
   * byte of the runs sent compressed.
   */
  get estimates(): { compressRate: number; ratio: number; wireRate: number } {
    return {
      compressRate: this.#cMs > 0 ? this.#cIn / this.#cMs : Infinity,
      ratio: this.#cRaw > 0 ? this.#cOut / this.#cRaw : 1,
      wireRate: this.#wMs > 0 ? this.#wBytes / this.#wMs : Infinity,
    };
  }

  #pays(inputBytes: number, rawBytes: number): boolean {
    const wireMs = this.#wBytes > 0 ? this.#wMs / this.#wBytes : 0;
    const compressMs = this.#cIn > 0 ? this.#cMs / this.#cIn : 0;
    const ratio = this.#cRaw > 0 ? this.#cOut / this.#cRaw : 1;
    return inputBytes * compressMs + rawBytes * ratio * wireMs < rawBytes * wireMs;
  }
}

function decay(bytes: number, window = GOVERNOR_WINDOW_BYTES): number {
  return Math.max(0, 1 - bytes / window);
}
