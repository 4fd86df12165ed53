/**
 * A bandwidth cap on a stream sink, as QEMU's `max-bandwidth`: writes are
 * delayed so the average rate stays at or below the cap.
 *
 * @module
 */

import type { StreamSink } from "./channel.ts";

/**
 * Wraps a sink so that it sends at most `bytesPerSecond` on average.
 *
 * @example
 * ```ts ignore
 * const capped = new RateLimitedSink(channel, { bytesPerSecond: 64 << 20 });
 * ```
 */
export class RateLimitedSink implements StreamSink {
  #inner: StreamSink;
  #rate: number;
  #start = performance.now();
  #sent = 0;

  /**
   * Wraps a sink.
   *
   * @param inner The sink.
   * @param options `bytesPerSecond`: the cap (positive).
   * @throws {RangeError} For a cap that is not positive.
   */
  constructor(inner: StreamSink, options: { bytesPerSecond: number }) {
    if (!(options.bytesPerSecond > 0)) {
      throw new RangeError(`Cannot cap bandwidth at ${options.bytesPerSecond} bytes/s`);
    }
    this.#inner = inner;
    this.#rate = options.bytesPerSecond;
  }

  /**
   * Writes, first waiting until the average rate allows these bytes.
   *
   * @param bytes The bytes.
   */
  async write(bytes: Uint8Array): Promise<void> {
    const due = this.#start + ((this.#sent + bytes.byteLength) / this.#rate) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    await this.#inner.write(bytes);
    this.#sent += bytes.byteLength;
  }
}
