/**
 * The error a receiver raises for a bad migration stream.
 *
 * @module
 */

/**
 * A migration stream was rejected: it is malformed, corrupt, truncated, does
 * not match the destination (page size, RAM layout), or its RAM digest does
 * not match the received image. The destination must discard the image.
 *
 * `offset` is the byte offset in the stream of the section (or stream header)
 * at fault; for a truncated stream it is the number of bytes received.
 *
 * @example Catch a bad stream
 * ```ts
 * import { StreamError } from "./error.ts";
 * const e = new StreamError(64, "Section checksum mismatch");
 * console.log(e.offset, e.reason, e.message);
 * ```
 */
export class StreamError extends Error {
  /** Byte offset in the stream of the section at fault, or of the end of the data. */
  readonly offset: number;
  /** What is wrong, without the offset. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @param offset Byte offset in the stream of the section at fault.
   * @param reason What is wrong, starting with a capital, no final period.
   * @param options The lower error (a transport failure), if any.
   */
  constructor(offset: number, reason: string, options: { cause?: unknown } = {}) {
    super(`Cannot receive migration stream at offset ${offset}: ${reason}`, options);
    this.name = "StreamError";
    this.offset = offset;
    this.reason = reason;
  }
}
