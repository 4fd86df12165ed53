// Buffered reading of an untrusted stream for the receiver: small fields come
// through a fixed buffer, large payloads are read straight into the caller's
// view. Tracks the stream offset for error messages; every failure is a
// StreamError naming where the data stopped.

import { StreamError } from "./error.ts";
import type { StreamSource } from "../transport/channel.ts";

/** Payload remainders at least this large skip the buffer. */
const DIRECT_READ_BYTES = 64 * 1024;

export class StreamBuffer {
  #source: StreamSource;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #consumed = 0;

  constructor(source: StreamSource, size: number) {
    this.#source = source;
    this.#buf = new Uint8Array(size);
  }

  /** Offset in the stream of the next unconsumed byte. */
  get offset(): number {
    return this.#consumed;
  }

  /** Bytes received from the source so far. */
  get received(): number {
    return this.#consumed + this.#end - this.#start;
  }

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** The next `n` bytes if already buffered (no await), else `undefined`. */
  takeNow(n: number): Uint8Array | undefined {
    if (this.#end - this.#start < n) return undefined;
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    this.#consumed += n;
    return out;
  }

  /** Fills `view` if its bytes are already buffered (no await); else `false`. */
  readIntoNow(view: Uint8Array): boolean {
    if (this.#end - this.#start < view.length) return false;
    view.set(this.#buf.subarray(this.#start, this.#start + view.length));
    this.#start += view.length;
    this.#consumed += view.length;
    return true;
  }

  /** The next `n` bytes (n <= buffer size); valid until the next call. */
  async take(n: number, what: string): Promise<Uint8Array> {
    if (this.#end - this.#start < n && !(await this.#fill(n))) this.#truncated(n, what);
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    this.#consumed += n;
    return out;
  }

  /** Fills all of `view` with the next bytes: buffered ones first, then direct reads. */
  async readInto(
    view: Uint8Array,
    what: string,
    onChunk?: (chunk: Uint8Array) => void,
  ): Promise<void> {
    let done = Math.min(view.length, this.#end - this.#start);
    view.set(this.#buf.subarray(this.#start, this.#start + done));
    this.#start += done;
    this.#consumed += done;
    if (done > 0) onChunk?.(view.subarray(0, done));
    while (done < view.length) {
      const left = view.length - done;
      let n: number;
      if (left >= DIRECT_READ_BYTES) {
        n = await this.#read(view.subarray(done));
        if (n === 0) this.#truncated(left, what);
        this.#consumed += n;
      } else {
        if (!(await this.#fill(1))) this.#truncated(left, what);
        n = Math.min(left, this.#end - this.#start);
        view.set(this.#buf.subarray(this.#start, this.#start + n), done);
        this.#start += n;
        this.#consumed += n;
      }
      // Each piece is handed over while it is still in cache.
      onChunk?.(view.subarray(done, done + n));
      done += n;
    }
  }

  /** Whether the stream has ended with no unconsumed bytes. */
  async atEnd(): Promise<boolean> {
    return this.#end === this.#start && !(await this.#fill(1));
  }

  // Makes at least `min` bytes available; false at EOF before that.
  async #fill(min: number): Promise<boolean> {
    // Compact when the free tail gets short, so reads stay large.
    if (this.#start > 0 && this.#buf.length - this.#end < Math.max(min, this.#buf.length / 4)) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < min) {
      const n = await this.#read(this.#buf.subarray(this.#end));
      if (n === 0) return false;
      this.#end += n;
    }
    return true;
  }

  async #read(into: Uint8Array): Promise<number> {
    try {
      return (await this.#source.read(into)) ?? 0;
    } catch (e) {
      const detail = e instanceof Error ? e.message : String(e);
      throw new StreamError(this.received, `Cannot read the stream: ${detail}`, { cause: e });
    }
  }

  #truncated(missing: number, what: string): never {
    const have = this.#end - this.#start;
    throw new StreamError(
      this.received,
      `Stream truncated in ${what}: ${missing - have} more bytes expected`,
    );
  }
}
