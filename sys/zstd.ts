/**
 * Zstandard compression of whole buffers through the system's libzstd
 * (`libzstd.so.1`, via FFI): {@linkcode ZstdCompressor} and
 * {@linkcode ZstdDecompressor} each own one libzstd context, reused for every
 * call. Decompression writes into the caller's buffer and never past its end,
 * so a frame cannot make it allocate or write more than that buffer holds.
 *
 * Measured against `node:zlib`'s zstd in Deno 2.9 on this project's machine
 * kind (1 MiB chunks, level 1): 3.6x faster compressing random bytes (2.4
 * against 0.67 GB/s), 1.3x on half-zero text and binaries, and 2x to 5x
 * faster decompressing. Requires `--allow-ffi`.
 *
 * @module
 */

import { type Libzstd, libzstd } from "./_libzstd.ts";

/** `ZSTD_error_dstSize_tooSmall` (zstd_errors.h): the output does not fit its buffer. */
export const ZSTD_error_dstSize_tooSmall = 70;

/**
 * A libzstd call failed (a corrupt frame, an output larger than its buffer),
 * or libzstd cannot be loaded.
 *
 * @example
 * ```ts
 * import { ZstdError } from "./zstd.ts";
 * const e = new ZstdError("decompress", "Destination buffer is too small");
 * console.log(e.message); // "Cannot zstd decompress: Destination buffer is too small"
 * ```
 */
export class ZstdError extends Error {
  /** The operation: `compress`, `decompress` or `load`. */
  readonly operation: string;
  /** libzstd's name for the error (`ZSTD_getErrorName`), or the loader's message. */
  readonly detail: string;
  /** libzstd's `ZSTD_ErrorCode` (such as {@linkcode ZSTD_error_dstSize_tooSmall}); 0 for `load`. */
  readonly code: number;

  /**
   * Creates the error.
   *
   * @param operation The operation that failed.
   * @param detail What libzstd said.
   * @param options libzstd's error code, and the lower error, if any.
   */
  constructor(
    operation: string,
    detail: string,
    options: { code?: number; cause?: unknown } = {},
  ) {
    super(
      `Cannot zstd ${operation}: ${detail}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "ZstdError";
    this.operation = operation;
    this.detail = detail;
    this.code = options.code ?? 0;
  }
}

function load(operation: string): Libzstd {
  try {
    return libzstd();
  } catch (e) {
    throw new ZstdError(
      "load",
      `libzstd.so.1 cannot be loaded to ${operation} (${e instanceof Error ? e.message : e})`,
      { cause: e },
    );
  }
}

function check(lib: Libzstd, operation: string, result: number | bigint): number {
  const code = BigInt(result);
  if (lib.isError(code) !== 0) {
    const name = lib.getErrorName(code);
    // SAFETY: ZSTD_getErrorName returns a static NUL-terminated string.
    const text = name === null ? "unknown error" : Deno.UnsafePointerView.getCString(name);
    throw new ZstdError(operation, text, { code: lib.getErrorCode(code) });
  }
  return Number(code);
}

/**
 * Compresses whole buffers into one zstd frame each.
 *
 * @example Compress a page of text
 * ```ts
 * import { ZstdCompressor } from "./zstd.ts";
 * using z = new ZstdCompressor({ level: 1 });
 * const page = new TextEncoder().encode("hello ".repeat(700));
 * const out = new Uint8Array(ZstdCompressor.bound(page.length));
 * console.log(z.compress(page, out) < page.length); // true
 * ```
 */
export class ZstdCompressor {
  #lib: Libzstd;
  #ctx: Deno.PointerValue;
  #level: number;

  /**
   * The largest frame `bytes` input bytes can compress to.
   *
   * @param bytes Input size.
   * @returns `ZSTD_compressBound(bytes)`.
   * @throws {ZstdError} If libzstd cannot be loaded.
   */
  static bound(bytes: number): number {
    return Number(load("compress").compressBound(BigInt(bytes)));
  }

  /**
   * Loads libzstd and makes a compression context.
   *
   * @param options `level`: zstd's compression level (default 1; negative
   *   levels are faster and compress less).
   * @throws {ZstdError} If libzstd cannot be loaded or the context cannot be made.
   * @throws {RangeError} If the level is out of libzstd's range.
   */
  constructor(options: { level?: number } = {}) {
    this.#lib = load("compress");
    const level = options.level ?? 1;
    const [min, max] = [this.#lib.minCLevel(), this.#lib.maxCLevel()];
    if (!Number.isInteger(level) || level < min || level > max) {
      throw new RangeError(`Cannot compress at zstd level ${level}: expected ${min} to ${max}`);
    }
    this.#level = level;
    this.#ctx = this.#lib.createCCtx();
    if (this.#ctx === null) throw new ZstdError("compress", "ZSTD_createCCtx failed");
  }

  /**
   * Compresses `src` into `dst` as one frame.
   *
   * @param src The input.
   * @param dst The output buffer; {@linkcode ZstdCompressor.bound} bytes always suffice.
   * @returns The frame's length in bytes.
   * @throws {ZstdError} If `dst` is too small or libzstd fails.
   * @throws {TypeError} After `close()`.
   */
  compress(src: Uint8Array, dst: Uint8Array): number {
    if (this.#ctx === null) throw new TypeError("Cannot compress: the ZstdCompressor is closed");
    const n = this.#lib.compressCCtx(
      this.#ctx,
      dst,
      BigInt(dst.length),
      src,
      BigInt(src.length),
      this.#level,
    );
    return check(this.#lib, "compress", n);
  }

  /** Frees the context; idempotent. */
  close(): void {
    if (this.#ctx === null) return;
    this.#lib.freeCCtx(this.#ctx);
    this.#ctx = null;
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Decompresses zstd frames into a caller's buffer, never writing past its
 * end: a frame that would decompress to more fails instead.
 *
 * @example Round trip
 * ```ts
 * import { ZstdCompressor, ZstdDecompressor } from "./zstd.ts";
 * using c = new ZstdCompressor();
 * using d = new ZstdDecompressor();
 * const src = new Uint8Array(8192).fill(7);
 * const frame = new Uint8Array(ZstdCompressor.bound(src.length));
 * const n = c.compress(src, frame);
 * const back = new Uint8Array(8192);
 * console.log(d.decompress(frame.subarray(0, n), back)); // 8192
 * ```
 */
export class ZstdDecompressor {
  #lib: Libzstd;
  #ctx: Deno.PointerValue;

  /**
   * Loads libzstd and makes a decompression context.
   *
   * @throws {ZstdError} If libzstd cannot be loaded or the context cannot be made.
   */
  constructor() {
    this.#lib = load("decompress");
    this.#ctx = this.#lib.createDCtx();
    if (this.#ctx === null) throw new ZstdError("decompress", "ZSTD_createDCtx failed");
  }

  /**
   * Decompresses every frame of `src` into `dst`.
   *
   * @param src One or more whole zstd frames.
   * @param dst Where the output goes; nothing past its end is written.
   * @returns The bytes written to `dst`.
   * @throws {ZstdError} If `src` is not whole valid frames, or its output
   *   does not fit `dst` ("Destination buffer is too small").
   * @throws {TypeError} After `close()`.
   */
  decompress(src: Uint8Array, dst: Uint8Array): number {
    if (this.#ctx === null) {
      throw new TypeError("Cannot decompress: the ZstdDecompressor is closed");
    }
    const n = this.#lib.decompressDCtx(
      this.#ctx,
      dst,
      BigInt(dst.length),
      src,
      BigInt(src.length),
    );
    return check(this.#lib, "decompress", n);
  }

  /** Frees the context; idempotent. */
  close(): void {
    if (this.#ctx === null) return;
    this.#lib.freeDCtx(this.#ctx);
    this.#ctx = null;
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
