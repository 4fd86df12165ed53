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
  /** The peer's authenticated identity (a TLS certificate's subject), once known. */
  readonly peerIdentity?: string;
}

/** Options for {@linkcode StreamChannel}. */
export interface StreamChannelOptions {
  /** Called once, after the raw stream is closed (for example to remove a socket file). */
  onClose?: () => void;
  /**
   * Every read and write must make progress within this many milliseconds,
   * or the channel closes and the call rejects with `Deno.errors.TimedOut`
   * (default 0: no bound). Changeable later through
   * {@linkcode StreamChannel.timeoutMs}.
   */
  timeoutMs?: number;
  /**
   * Aborting closes the channel: pending and later calls reject with the
   * signal's reason.
   */
  signal?: AbortSignal;
  /** Who is at the other end, for messages (for TCP, the peer's `HOST:PORT`). */
  peer?: string;
}

/**
 * One open transport connection (or file): both a {@linkcode StreamSink} and a
 * {@linkcode StreamSource}. Owns its descriptor; `close()` is idempotent and
 * disposal goes through it.
 *
 * A channel can bound how long the peer may make no progress
 * (`timeoutMs`): a watchdog then closes it when a read or write has been
 * pending that long, so a peer that stops reading or writing cannot hold
 * the caller forever.
 *
 * @example Write to a file through a channel
 * ```ts
 * import { StreamChannel } from "./channel.ts";
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
  #opened: RawStream;
  #label: string;
  #peer: string | undefined;
  #onClose: (() => void) | undefined;
  #timeoutMs = 0;
  #pending = 0;
  #writing = 0;
  #lastProgress = 0;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  // Why the channel was closed under a pending call: a timeout or an abort.
  #closedBy: { error: unknown } | undefined;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.abort(this.#signal!.reason);

  /**
   * Wraps an open connection or file; the channel now owns it.
   *
   * @param raw The `Deno.Conn` or `Deno.FsFile`.
   * @param label The endpoint, for error messages.
   * @param options Close hook, progress timeout, abort signal, peer name.
   * @throws {RangeError} If `timeoutMs` is negative or not a number.
   */
  constructor(raw: RawStream, label: string, options: StreamChannelOptions = {}) {
    this.#raw = raw;
    this.#opened = raw;
    this.#label = label;
    this.#peer = options.peer;
    this.#onClose = options.onClose;
    this.timeoutMs = options.timeoutMs ?? 0;
    const signal = options.signal;
    if (signal !== undefined) {
      this.#signal = signal;
      if (signal.aborted) this.abort(signal.reason);
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** The endpoint this channel was opened for. */
  get label(): string {
    return this.#label;
  }

  /** The peer's address (`HOST:PORT` for TCP), when known. */
  get peer(): string | undefined {
    return this.#peer;
  }

  /**
   * The peer's authenticated identity: over TLS, the subject of its verified
   * certificate (`CN=client-1,O=lab`), once the handshake is done.
   */
  get peerIdentity(): string | undefined {
    return this.#opened.peerIdentity;
  }

  /** Whether `close()` has run. */
  get closed(): boolean {
    return this.#raw === null;
  }

  /** The progress bound in milliseconds (0: none). */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /**
   * Sets the progress bound: a read or write pending this long without
   * completing closes the channel (0: no bound). Applies to pending calls too.
   *
   * @param ms Milliseconds, 0 or more.
   */
  set timeoutMs(ms: number) {
    if (!(ms >= 0)) throw new RangeError(`Cannot bound ${this.#label} by ${ms} ms`);
    this.#timeoutMs = ms;
    if (this.#watchdog !== undefined) {
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
    }
    this.#lastProgress = performance.now();
    if (ms > 0 && this.#raw !== null) {
      // Checked a few times per bound, so a stall is noticed within 1.25 x the bound.
      const watchdog = setInterval(() => this.#check(), Math.max(10, Math.min(ms / 4, 1000)));
      Deno.unrefTimer(watchdog);
      this.#watchdog = watchdog;
    }
  }

  /**
   * Writes all of `bytes`, looping over partial writes. Resolves once the
   * kernel has every byte.
   *
   * @param bytes The bytes; not copied, so keep them unchanged until this resolves.
   * @returns Nothing.
   * @throws {TypeError} If the channel is closed.
   * @throws {Deno.errors.WriteZero} If the transport accepts no bytes.
   * @throws {Deno.errors.TimedOut} If the peer accepted no bytes within `timeoutMs`.
   */
  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const raw = this.#open("write to");
      this.#pending++;
      this.#writing++;
      let n: number;
      try {
        n = await raw.write(done === 0 ? bytes : bytes.subarray(done));
      } catch (e) {
        throw this.#failure(e);
      } finally {
        this.#writing--;
        this.#settled();
      }
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
   * @throws {Deno.errors.TimedOut} If no byte arrived within `timeoutMs`.
   */
  async read(into: Uint8Array): Promise<number | null> {
    const raw = this.#open("read from");
    this.#pending++;
    try {
      return await raw.read(into);
    } catch (e) {
      throw this.#failure(e);
    } finally {
      this.#settled();
    }
  }

  /**
   * Closes the channel so that pending and later reads and writes reject
   * with `reason` (a timeout, a cancellation); does nothing once closed.
   *
   * @param reason What the calls reject with.
   */
  abort(reason: unknown): void {
    if (this.#raw === null) return;
    this.#closedBy = { error: reason };
    this.close();
  }

  /** Closes the connection or file; later calls do nothing. */
  close(): void {
    const raw = this.#raw;
    if (raw === null) return;
    this.#raw = null;
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    this.#signal?.removeEventListener("abort", this.#onAbort);
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

  #settled(): void {
    this.#pending--;
    this.#lastProgress = performance.now();
  }

  #check(): void {
    if (this.#pending === 0 || performance.now() - this.#lastProgress < this.#timeoutMs) return;
    const who = this.#peer === undefined || this.#label.endsWith(this.#peer)
      ? this.#label
      : `${this.#label} (peer ${this.#peer})`;
    this.abort(
      new Deno.errors.TimedOut(
        `No progress on ${who} for ${fmtSeconds(this.#timeoutMs)}: the peer stopped ${
          this.#writing > 0 ? "reading" : "sending"
        }`,
      ),
    );
  }

  // The error a call whose transport failed reports: the reason the
  // channel was closed under it, if it was.
  #failure(e: unknown): unknown {
    return this.#closedBy?.error ?? e;
  }

  #open(action: string): RawStream {
    if (this.#raw === null) {
      if (this.#closedBy !== undefined) throw this.#closedBy.error;
      throw new TypeError(`Cannot ${action} ${this.#label}: channel is closed`);
    }
    return this.#raw;
  }
}

function fmtSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** Options for connecting to an endpoint (`connectEndpoint()`). */
export interface ConnectOptions {
  /**
   * Bound on the connect itself and then on every read and write of the
   * channel (see {@linkcode StreamChannelOptions.timeoutMs}); default none.
   */
  timeoutMs?: number;
  /** Aborting stops the connect, or closes the channel (see {@linkcode StreamChannelOptions.signal}). */
  signal?: AbortSignal;
}

/**
 * The signal a connect waits under: the caller's, and the timeout.
 *
 * @param options The connect options.
 * @param label The endpoint, for the timeout's message.
 * @returns The signal, or `undefined` when neither is set.
 *
 * @example
 * ```ts
 * import { connectSignal } from "./channel.ts";
 * console.log(connectSignal({}, "tcp:h:1")); // undefined
 * ```
 */
export function connectSignal(options: ConnectOptions, label: string): AbortSignal | undefined {
  const signals: AbortSignal[] = [];
  if (options.signal) signals.push(options.signal);
  if (options.timeoutMs) {
    const c = new AbortController();
    const t = setTimeout(
      () =>
        c.abort(
          new Deno.errors.TimedOut(
            `Cannot connect to ${label}: no answer within ${options.timeoutMs! / 1000} s`,
          ),
        ),
      options.timeoutMs,
    );
    Deno.unrefTimer(t);
    signals.push(c.signal);
  }
  return signals.length === 0 ? undefined : AbortSignal.any(signals);
}

/** Options for {@linkcode StreamListener.accept}. */
export interface AcceptOptions {
  /** Aborting closes the listener and rejects the pending accept with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The destination's side of an endpoint: accepts connections (or opens the
 * file).
 */
export interface StreamListener extends Disposable {
  /** The bound endpoint; for `tcp:HOST:0` it carries the port the kernel chose. */
  readonly endpoint: Endpoint;
  /**
   * Waits for one connection (or opens the file) and closes the listener.
   *
   * @throws {TypeError} If called after `close()` or after a file was opened.
   */
  accept(options?: AcceptOptions): Promise<StreamChannel>;
  /**
   * Waits for the next connection and goes on listening, so a caller can
   * drop a peer that turns out not to be a source and take the next one.
   * A file endpoint opens its file once; a second call throws.
   *
   * @throws {TypeError} If called after `close()`.
   */
  acceptNext(options?: AcceptOptions): Promise<StreamChannel>;
  /** Stops listening and releases the endpoint; idempotent. */
  close(): void;
}

/**
 * Rethrows an error from the OS with the endpoint named in its message,
 * keeping its class (`Deno.errors.AddrInUse` stays one).
 *
 * @param e The error.
 * @param action What was being done, such as `listen on tcp:0.0.0.0:4444`.
 * @returns Never; always throws.
 * @throws The same kind of error, with `Cannot <action>: ` before the message.
 *
 * @example
 * ```ts
 * import { rethrowNamed } from "./channel.ts";
 * try {
 *   rethrowNamed(new Deno.errors.AddrInUse("Address already in use"), "listen on tcp:0.0.0.0:1");
 * } catch (e) {
 *   console.log((e as Error).message); // Cannot listen on tcp:0.0.0.0:1: Address already in use
 * }
 * ```
 */
export function rethrowNamed(e: unknown, action: string): never {
  if (!(e instanceof Error)) throw e;
  const Kind = e.constructor as new (message: string, options?: ErrorOptions) => Error;
  let named: Error;
  try {
    named = new Kind(`Cannot ${action}: ${e.message}`, { cause: e });
  } catch {
    throw e; // a class that cannot be rebuilt this way keeps its own message
  }
  named.name = e.name;
  throw named;
}
