// A node:tls socket as the RawStream a StreamChannel drives: reads copy out
// of the socket's chunks into the caller's buffer, writes resolve once the
// socket took the bytes. A server-side stream exists from the TCP accept on,
// before its TLS socket does: every call first waits for the handshake and
// the authorization to succeed, so nothing a peer sends is read before then.

import type { TLSSocket } from "node:tls";
import type { RawStream } from "./channel.ts";
import { tlsFailure } from "./_tls_errors.ts";

// Chunks queued beyond this pause the socket until the reader catches up.
const HIGH_WATER = 8 << 20;

/** What a stream knows of its peer once the TLS socket is open. */
export interface OpenedTls {
  socket: TLSSocket;
  /** The peer's verified identity, for messages. */
  identity?: string;
}

export class TlsSocketStream implements RawStream {
  #opened: Promise<OpenedTls>;
  #socket: TLSSocket | null = null;
  #destroyEarly: () => void;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | null = null;
  #closed = false;
  #wake: (() => void) | null = null;
  // Writes the socket has not called back for: failed at once when it goes.
  #writes = new Set<(e: Error) => void>();
  #label: string;
  #identity: string | undefined;
  #server: boolean;
  #received = 0;

  /**
   * @param opened Resolves with the TLS socket once the peer may be talked to.
   * @param label The endpoint, for messages.
   * @param destroyEarly Drops the connection while `opened` is still pending.
   * @param server Whether this is the destination's side (for messages).
   */
  constructor(
    opened: Promise<OpenedTls>,
    label: string,
    destroyEarly: () => void,
    server = false,
  ) {
    this.#label = label;
    this.#server = server;
    this.#destroyEarly = destroyEarly;
    this.#opened = opened.then((o) => {
      if (this.#closed) {
        o.socket.destroy();
        throw this.#closedError();
      }
      this.#attach(o.socket);
      this.#identity = o.identity;
      return o;
    });
    this.#opened.catch(() => {});
  }

  /** The peer's verified identity (its certificate subject), once open. */
  get peerIdentity(): string | undefined {
    return this.#identity;
  }

  /** Resolves once the handshake and authorization succeeded; rejects why they did not. */
  get opened(): Promise<OpenedTls> {
    return this.#opened;
  }

  #attach(socket: TLSSocket): void {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.byteLength;
      if (this.#queued > HIGH_WATER) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (e: Error) => {
      this.#error ??= tlsFailure(e, this.#label);
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
    if (this.#error || this.#closed || this.#socket?.destroyed) {
      const why = this.#error ?? (this.#closed ? this.#closedError() : new Deno.errors.BrokenPipe(
        `Cannot write to ${this.#label}: the peer closed it`,
      ));
      for (const fail of this.#writes) fail(why);
      this.#writes.clear();
    }
  }

  #closedError(): Error {
    return new Deno.errors.Interrupted(`Cannot use ${this.#label}: the connection is closed`);
  }

  async read(p: Uint8Array): Promise<number | null> {
    await this.#opened;
    for (;;) {
      if (this.#closed) throw this.#closedError();
      if (this.#chunks.length > 0) {
        let n = 0;
        while (n < p.byteLength && this.#chunks.length > 0) {
          const chunk = this.#chunks[0];
          const take = Math.min(chunk.byteLength, p.byteLength - n);
          p.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), n);
          n += take;
          if (take === chunk.byteLength) this.#chunks.shift();
          else this.#chunks[0] = chunk.subarray(take);
        }
        this.#queued -= n;
        this.#received += n;
        const socket = this.#socket!;
        if (this.#queued <= HIGH_WATER / 2 && socket.isPaused()) socket.resume();
        return n;
      }
      if (this.#error) throw this.#error;
      if (this.#ended && this.#server && this.#received === 0) {
        throw new Deno.errors.ConnectionReset(
          "The source closed the TLS connection right after the handshake, before sending a " +
            "byte: it may not accept this destination's certificate (not for the name it dialled?)",
        );
      }
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  async write(p: Uint8Array): Promise<number> {
    const { socket } = await this.#opened;
    if (this.#closed) throw this.#closedError();
    if (this.#error) throw this.#error;
    if (this.#ended) {
      throw new Deno.errors.BrokenPipe(`Cannot write to ${this.#label}: the peer closed it`);
    }
    return await new Promise<number>((resolve, reject) => {
      const fail = (e: Error) => reject(e);
      this.#writes.add(fail);
      socket.write(p, (e?: Error | null) => {
        if (!this.#writes.delete(fail)) return;
        if (e) reject(this.#error ?? tlsFailure(e, this.#label));
        else resolve(p.byteLength);
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#socket) this.#socket.destroy();
    else this.#destroyEarly();
    this.#notify();
  }
}
