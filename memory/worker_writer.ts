/**
 * A writer on another thread: a Web Worker that writes guest RAM while the
 * main thread harvests dirty pages, the way running vCPUs would during a
 * migration. It records every page it wrote, so tests can check that the
 * harvests contain them.
 *
 * @module
 */

import { DirtyBitmap } from "./dirty_bitmap.ts";
import type { GuestMemory } from "./guest_memory.ts";
import type { SoftwareDirtyLog } from "./software_dirty_log.ts";
import { CMD_PAUSE, CMD_RUN, CMD_STOP, type WriterConfig } from "./_writer_worker.ts";

/** Which pages the writer picks. */
export type WritePattern = "random" | "sequential" | "hotspot";

/** Options of {@linkcode WorkerWriter.start}. */
export interface WorkerWriterOptions {
  /** The region to write (default 0). */
  region?: number;
  /**
   * `"pointer"` (default): write through this process's mapping, by address
   * (what CPU dirty trackers see). `"memfd"`: map the region's memfd again in
   * the Worker (`/proc/self/fd/N`) and write there, as another process
   * would; in-process trackers do not see those writes.
   */
  via?: "pointer" | "memfd";
  /** `"random"` (default), `"sequential"`, or `"hotspot"` (90 % of writes to 10 % of pages). */
  pattern?: WritePattern;
  /** `"word"` (default): a u32 at a random offset in the page; `"page"`: the whole page. */
  span?: "word" | "page";
  /** Pages written per second; 0 (default) means as fast as possible. */
  pagesPerSecond?: number;
  /** Seed of the page sequence (default 1). */
  seed?: number;
  /** Also log the writes into this software dirty log (started). */
  softwareLog?: SoftwareDirtyLog;
}

/** A writer's state, as acknowledged by its Worker. */
export type WriterState = "running" | "paused" | "stopped";

interface StateMessage {
  type: "state";
  state: WriterState;
  pagesWritten: number;
}
interface ErrorMessage {
  type: "error";
  message: string;
}

/**
 * A Worker writing one region, controlled through shared memory (so commands
 * reach it while it is busy writing) and acknowledged by messages.
 *
 * @example Write while harvesting
 * ```ts ignore
 * await using writer = await WorkerWriter.start(memory, { pattern: "hotspot", seed: 7 });
 * const dirty = tracker.harvest();
 * await writer.pause();
 * console.log(writer.written().count());
 * ```
 */
export class WorkerWriter implements AsyncDisposable {
  #worker: Worker;
  #control: Int32Array;
  #written: Uint32Array;
  #pages: number;
  #state: WriterState = "running";
  #pagesWritten = 0;
  #waiters: { want: WriterState; resolve: () => void; reject: (e: Error) => void }[] = [];
  #error?: Error;

  private constructor(worker: Worker, control: Int32Array, written: Uint32Array, pages: number) {
    this.#worker = worker;
    this.#control = control;
    this.#written = written;
    this.#pages = pages;
    worker.onmessage = (e: MessageEvent<StateMessage | ErrorMessage>) => this.#onMessage(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      this.#onMessage({ type: "error", message: e.message });
    };
  }

  #onMessage(m: StateMessage | ErrorMessage): void {
    if (m.type === "error") {
      this.#error = new TypeError(`The writer Worker failed: ${m.message}`);
      this.#state = "stopped";
      for (const w of this.#waiters) w.reject(this.#error);
      this.#waiters = [];
      return;
    }
    this.#state = m.state;
    this.#pagesWritten = m.pagesWritten;
    this.#waiters = this.#waiters.filter((w) => {
      if (w.want !== m.state) return true;
      w.resolve();
      return false;
    });
  }

  #until(want: WriterState): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => this.#waiters.push({ want, resolve, reject }));
  }

  /**
   * Starts a Worker writing a region of `memory`; resolves once it runs.
   * `memory` must stay open until the writer has stopped.
   *
   * @param memory The guest memory.
   * @param options Region, pattern, rate, seed, and how to reach the memory.
   * @returns The running writer.
   * @throws {RangeError} For a bad region, or `"memfd"` on a region without one.
   */
  static async start(
    memory: GuestMemory,
    options: WorkerWriterOptions = {},
  ): Promise<WorkerWriter> {
    const index = options.region ?? 0;
    const region = memory.regions[index];
    if (region === undefined) throw new RangeError(`Cannot write region ${index}: no such region`);
    const via = options.via ?? "pointer";
    if (via === "memfd" && region.unsafeFd < 0) {
      throw new RangeError(
        `Cannot write ${region} through a memfd: its backing is ${region.backing}`,
      );
    }
    const control = new Int32Array(new SharedArrayBuffer(16));
    control[0] = CMD_RUN;
    control[1] = Math.max(0, Math.round(options.pagesPerSecond ?? 0));
    const written = new Uint32Array(new SharedArrayBuffer(DirtyBitmap.wordsFor(region.pages) * 4));
    const worker = new Worker(new URL("./_writer_worker.ts", import.meta.url), { type: "module" });
    const writer = new WorkerWriter(worker, control, written, region.pages);
    const running = writer.#until("running");
    const config: WriterConfig = {
      memory: memory.describe(),
      region: index,
      via,
      memfdPath: via === "memfd" ? `/proc/self/fd/${region.unsafeFd}` : undefined,
      pattern: options.pattern ?? "random",
      span: options.span ?? "word",
      seed: options.seed ?? 1,
      control: control.buffer as SharedArrayBuffer,
      written: written.buffer as SharedArrayBuffer,
      log: options.softwareLog?.share(),
    };
    worker.postMessage(config);
    try {
      await running;
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return writer;
  }

  /**
   * The writer's state as last acknowledged.
   *
   * @returns `"running"`, `"paused"` or `"stopped"`.
   */
  get state(): WriterState {
    return this.#state;
  }

  /**
   * Page writes made so far, as of the last acknowledgement.
   *
   * @returns The count of page writes.
   */
  get pagesWritten(): number {
    return this.#pagesWritten;
  }

  /**
   * Page writes made so far, live (read from shared memory).
   *
   * @returns The count of page writes.
   */
  get writes(): number {
    return Atomics.load(this.#control, 2);
  }

  /**
   * A snapshot of the pages written so far (each page's bit is set after its
   * write completes).
   *
   * @returns A copy of the written-pages bitmap.
   */
  written(): DirtyBitmap {
    const bm = new DirtyBitmap(this.#pages);
    bm.words.set(this.#written);
    return bm;
  }

  /**
   * Takes and clears the written-pages bitmap atomically (word by word).
   *
   * @returns The pages written since the last take.
   */
  takeWritten(): DirtyBitmap {
    const bm = new DirtyBitmap(this.#pages);
    const src = this.#written;
    for (let i = 0; i < src.length; i++) {
      if (src[i] !== 0) bm.words[i] = Atomics.exchange(src, i, 0);
    }
    return bm;
  }

  /**
   * Pauses; resolves once the Worker has stopped writing.
   *
   * @returns When paused.
   * @throws {TypeError} If the Worker failed.
   */
  async pause(): Promise<void> {
    if (this.#state === "paused") return;
    const p = this.#until("paused");
    Atomics.store(this.#control, 0, CMD_PAUSE);
    Atomics.notify(this.#control, 0); // wakes a Worker sleeping out its rate limit
    await p;
  }

  /**
   * Resumes writing; resolves once the Worker runs again.
   *
   * @returns When running.
   * @throws {TypeError} If the Worker failed.
   */
  async resume(): Promise<void> {
    if (this.#state === "running") return;
    const p = this.#until("running");
    Atomics.store(this.#control, 0, CMD_RUN);
    Atomics.notify(this.#control, 0);
    await p;
  }

  /**
   * Changes the write rate.
   *
   * @param pagesPerSecond Pages per second; 0 for unthrottled.
   */
  throttle(pagesPerSecond: number): void {
    Atomics.store(this.#control, 1, Math.max(0, Math.round(pagesPerSecond)));
    Atomics.notify(this.#control, 0);
  }

  /**
   * Stops the Worker; resolves once it has written its last page and exited.
   * Idempotent.
   *
   * @returns When stopped.
   * @throws {TypeError} If the Worker failed.
   */
  async stop(): Promise<void> {
    if (this.#state !== "stopped") {
      const p = this.#until("stopped");
      Atomics.store(this.#control, 0, CMD_STOP);
      Atomics.notify(this.#control, 0);
      try {
        await p;
      } finally {
        this.#worker.terminate();
      }
    } else {
      this.#worker.terminate();
    }
    if (this.#error) throw this.#error;
  }

  /** Same as {@linkcode WorkerWriter.stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
