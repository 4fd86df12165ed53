// A small QMP (QEMU Machine Protocol) client over a unix socket, for the
// QEMU baseline in bench/migrate_vs_qemu.ts. Every wait is bounded.

/** A QMP event as QEMU sends it. */
export interface QmpEvent {
  /** The event name, e.g. "MIGRATION". */
  event: string;
  /** The event's data, if any. */
  data?: Record<string, unknown>;
  /** performance.now() when the event arrived here. */
  receivedAt: number;
}

/**
 * Rejects with a message naming `what` when `promise` takes longer than `ms`.
 *
 * @param promise The promise to bound.
 * @param ms The timeout in milliseconds.
 * @param what What is being waited for (for the error message).
 * @returns The promise's value.
 *
 * @example
 * ```ts ignore
 * await withTimeout(child.status, 5000, "qemu to exit");
 * ```
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/** A connected QMP session (capabilities already negotiated). */
export class QmpClient {
  #conn: Deno.UnixConn;
  #pending = new Map<string, Pending>();
  #nextId = 0;
  #events: QmpEvent[] = [];
  #waiters: { match: (e: QmpEvent) => boolean; resolve: (e: QmpEvent) => void }[] = [];
  #closed = false;
  #reader: Promise<void>;
  #greeting: Promise<void>;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    let greeted!: () => void;
    this.#greeting = new Promise((r) => greeted = r);
    this.#reader = this.#read(greeted);
  }

  /**
   * Connects to QEMU's QMP socket (retrying until it exists), reads the
   * greeting and sends qmp_capabilities.
   *
   * @param path The unix socket path given to `-qmp unix:PATH,server=on,wait=off`.
   * @param timeoutMs How long to keep trying.
   * @returns The client.
   *
   * @example
   * ```ts ignore
   * const qmp = await QmpClient.connect("/tmp/src.qmp", 10_000);
   * console.log(await qmp.execute("query-status"));
   * ```
   */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const conn = await Deno.connect({ transport: "unix", path });
        const client = new QmpClient(conn);
        try {
          await withTimeout(
            client.#greeting,
            Math.max(1, deadline - performance.now()),
            "QMP greeting",
          );
          await client.execute("qmp_capabilities", undefined, deadline - performance.now());
        } catch (e) {
          client.close();
          throw e;
        }
        return client;
      } catch (e) {
        if (performance.now() > deadline) {
          throw new Error(`cannot open QMP at ${path}: ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  async #read(greeted: () => void): Promise<void> {
    const lines = this.#conn.readable.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await lines.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) this.#dispatch(JSON.parse(line), greeted);
        }
      }
    } catch { /* the connection closed under us */ }
    this.#closed = true;
    for (const p of this.#pending.values()) p.reject(new Error("QMP connection closed"));
    this.#pending.clear();
  }

  #dispatch(msg: Record<string, unknown>, greeted: () => void): void {
    if ("QMP" in msg) return greeted();
    if (typeof msg.event === "string") {
      const ev: QmpEvent = {
        event: msg.event,
        data: msg.data as Record<string, unknown> | undefined,
        receivedAt: performance.now(),
      };
      const i = this.#waiters.findIndex((w) => w.match(ev));
      if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(ev);
      else this.#events.push(ev);
      return;
    }
    const p = this.#pending.get(String(msg.id));
    if (!p) return;
    this.#pending.delete(String(msg.id));
    if ("error" in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(new Error(`QMP ${err.class}: ${err.desc}`));
    } else p.resolve(msg.return);
  }

  /**
   * Runs one QMP command and returns its `return` value.
   *
   * @param command The command name.
   * @param args Its arguments.
   * @param timeoutMs The bound on the reply.
   * @returns The reply's `return` member.
   *
   * @example
   * ```ts ignore
   * await qmp.execute("migrate-set-parameters", { "max-bandwidth": 100e9 });
   * ```
   */
  async execute(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = 10_000,
  ): Promise<unknown> {
    if (this.#closed) throw new Error(`QMP connection closed before ${command}`);
    const id = String(this.#nextId++);
    const reply = new Promise<unknown>((resolve, reject) =>
      this.#pending.set(id, { resolve, reject })
    );
    const msg = JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id });
    const bytes = new TextEncoder().encode(msg + "\n");
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
    try {
      return await withTimeout(reply, Math.max(1, timeoutMs), `QMP ${command}`);
    } finally {
      this.#pending.delete(id);
    }
  }

  /**
   * Waits for an event (already received or still to come) that matches.
   *
   * @param match The predicate.
   * @param timeoutMs The bound.
   * @param what A description for the timeout message.
   * @returns The event.
   *
   * @example
   * ```ts ignore
   * await qmp.waitEvent((e) => e.event === "MIGRATION" && e.data?.status === "completed", 60_000, "completed");
   * ```
   */
  waitEvent(match: (e: QmpEvent) => boolean, timeoutMs: number, what: string): Promise<QmpEvent> {
    const i = this.#events.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#events.splice(i, 1)[0]);
    let waiter!: { match: (e: QmpEvent) => boolean; resolve: (e: QmpEvent) => void };
    const p = new Promise<QmpEvent>((resolve) => {
      waiter = { match, resolve };
      this.#waiters.push(waiter);
    });
    return withTimeout(p, timeoutMs, what).finally(() => {
      const j = this.#waiters.indexOf(waiter);
      if (j >= 0) this.#waiters.splice(j, 1);
    });
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    }
    void this.#reader;
  }
}
