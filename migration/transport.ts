/**
 * The transport interface shared by the file, unix-socket and TCP transports:
 * a {@linkcode StreamChannel} carries the bytes, a {@linkcode StreamListener}
 * hands the destination exactly one channel.
 *
 * @module
 */

import type { Endpoint } from "./endpoint.ts";

/** Where a stream writer puts bytes. */
export interface StreamSink {
  /**
   * Writes all of `bytes`. Resolves once the kernel has every byte; the caller
   * must not change `bytes` before then. Nothing is buffered in user space.
   */
  write(bytes: Uint8Array): Promise<void>;
}

/** Where a stream receiver gets bytes. */
export interface StreamSource {
  /**
   * Reads up to `into.length` bytes straight into `into`.
   *
   * @returns The number of bytes read (at least 1), or `null` at end of stream.
   */
  read(into: Uint8Array): Promise<number | null>;
}

/** The raw object a channel drives: a `Deno.Conn` or a `Deno.FsFile`. */
export interface RawStream {
  /** Reads into `p`; resolves with the count or `null` at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes part of `p`; resolves with the count written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the descriptor. */
  close(): void;
}

/** Options for {@linkcode StreamChannel}. */
export interface StreamChannelOptions {
  /** Called once, after the raw stream is closed (for example to remove a socket file). */
  onClose?: () => void;
}

/**
 * One open transport connection (or file): both a {@linkcode StreamSink} and a
 * {@linkcode StreamSource}. Owns its descriptor; `close()` is idempotent and
 * disposal goes through it.
 *
 * @example Write to a file through a channel
 * ```ts
 * import { StreamChannel } from "./transport.ts";
 * const path = await Deno.makeTempFile();
 * {
 *   using ch = new StreamChannel(await Deno.open(path, { write: true }), `file:${path}`);
 *   await ch.write(new Uint8Array([1, 2, 3]));
 * }
 * console.log(await Deno.readFile(path)); // Uint8Array(3) [ 1, 2, 3 ]
 * await Deno.remove(path);
 * ```
 */
export class StreamChannel implements StreamSink, StreamSource, Disposable {
  #raw: RawStream | null;
  #label: string;
  #onClose: (() => void) | undefined;

  /**
   * Wraps an open connection or file; the channel now owns it.
   *
   * @param raw The `Deno.Conn` or `Deno.FsFile`.
   * @param label The endpoint, for error messages.
   * @param options Close hook.
   */
  constructor(raw: RawStream, label: string, options: StreamChannelOptions = {}) {
    this.#raw = raw;
    this.#label = label;
    this.#onClose = options.onClose;
  }

  /** The endpoint this channel was opened for. */
  get label(): string {
    return this.#label;
  }

  /** Whether `close()` has run. */
  get closed(): boolean {
    return this.#raw === null;
  }

  /**
   * Writes all of `bytes`, looping over partial writes. Resolves once the
   * kernel has every byte.
   *
   * @param bytes The bytes; not copied, so keep them unchanged until this resolves.
   * @returns Nothing.
   * @throws {TypeError} If the channel is closed.
   * @throws {Deno.errors.WriteZero} If the transport accepts no bytes.
   */
  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const n = await this.#open("write to").write(done === 0 ? bytes : bytes.subarray(done));
      if (n <= 0) throw new Deno.errors.WriteZero(`Cannot write to ${this.#label}: wrote 0 bytes`);
      done += n;
    }
  }

  /**
   * Reads up to `into.length` bytes straight into `into` (no copy).
   *
   * @param into Where the bytes go.
   * @returns The count read, or `null` at end of stream.
   * @throws {TypeError} If the channel is closed.
   */
  read(into: Uint8Array): Promise<number | null> {
    return this.#open("read from").read(into);
  }

  /** Closes the connection or file; later calls do nothing. */
  close(): void {
    const raw = this.#raw;
    if (raw === null) return;
    this.#raw = null;
    try {
      raw.close();
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) throw e;
    } finally {
      this.#onClose?.();
    }
  }

  /** Closes the channel. */
  [Symbol.dispose](): void {
    this.close();
  }

  #open(action: string): RawStream {
    if (this.#raw === null) {
      throw new TypeError(`Cannot ${action} ${this.#label}: channel is closed`);
    }
    return this.#raw;
  }
}

/** Options for {@linkcode StreamListener.accept}. */
export interface AcceptOptions {
  /** Aborting closes the listener and rejects the pending accept with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The destination's side of an endpoint: accepts exactly one connection (or
 * opens the file), then closes itself.
 */
export interface StreamListener extends Disposable {
  /** The bound endpoint; for `tcp:HOST:0` it carries the port the kernel chose. */
  readonly endpoint: Endpoint;
  /**
   * Waits for the one connection (or opens the file) and closes the listener.
   *
   * @throws {TypeError} If called twice or after `close()`.
   */
  accept(options?: AcceptOptions): Promise<StreamChannel>;
  /** Stops listening and releases the endpoint; idempotent. */
  close(): void;
}
