// A StreamListener over a Deno.Listener (TCP or unix): accept() takes one
// connection and closes; acceptNext() takes the next and goes on listening.

import { type Endpoint, formatEndpoint } from "./endpoint.ts";
import { type AcceptOptions, StreamChannel, type StreamListener } from "./channel.ts";

export interface SocketListenerOptions {
  /** Runs once, after the listener closes (unix: remove the socket file). */
  onClose?: () => void;
  /** Runs on each accepted connection before it is wrapped (TCP: no delay, keepalive). */
  onAccept?: (conn: Deno.Conn) => void;
}

export class SocketListener implements StreamListener {
  #listener: Deno.Listener | null;
  #options: SocketListenerOptions;
  readonly endpoint: Endpoint;

  constructor(listener: Deno.Listener, endpoint: Endpoint, options: SocketListenerOptions = {}) {
    this.#listener = listener;
    this.endpoint = endpoint;
    this.#options = options;
  }

  async accept(options: AcceptOptions = {}): Promise<StreamChannel> {
    try {
      return await this.acceptNext(options);
    } finally {
      this.close();
    }
  }

  async acceptNext(options: AcceptOptions = {}): Promise<StreamChannel> {
    const label = formatEndpoint(this.endpoint);
    const listener = this.#listener;
    if (listener === null) throw new TypeError(`Cannot accept on ${label}: the listener is closed`);
    const { signal } = options;
    const abort = () => this.close();
    try {
      signal?.throwIfAborted();
      signal?.addEventListener("abort", abort, { once: true });
      const conn = await listener.accept();
      try {
        this.#options.onAccept?.(conn);
      } catch (e) {
        conn.close();
        throw e;
      }
      return new StreamChannel(conn, label, { peer: peerOf(conn) });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw e;
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  }

  close(): void {
    const listener = this.#listener;
    if (listener === null) return;
    this.#listener = null;
    try {
      listener.close();
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) throw e;
    } finally {
      this.#options.onClose?.();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function peerOf(conn: Deno.Conn): string | undefined {
  const a = conn.remoteAddr;
  if (a.transport === "tcp" || a.transport === "udp") {
    return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
  }
  return undefined;
}
