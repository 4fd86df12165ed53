/**
 * The sending side of the stream format: {@linkcode StreamWriter} frames
 * sections onto a {@linkcode StreamSink}.
 *
 * @module
 */

import { SectionFramer } from "./_section_framer.ts";
import type { GuestAddress } from "../../sys/address.ts";
import type { RamAccess, RamRegionLayout } from "./ram.ts";
import {
  encodeStreamHeader,
  findRegion,
  MAX_DEVICE_ID_BYTES,
  MAX_DEVICE_PRECOPY_BYTES,
  MAX_DIGEST_BYTES,
  MAX_RUN_BYTES,
  SectionType,
  SPARSE_HEAD_BYTES,
  sparseBitmapBytes,
} from "./format.ts";
import type { StreamSink } from "../transport/channel.ts";
import { type PageRun, pageRunList, ZeroPageScanner } from "./zero_pages.ts";
import { groupRuns, packSparse } from "./_sparse_plan.ts";
import {
  COMPRESS_CHUNK_BYTES,
  COMPRESS_MIN_BYTES,
  CompressionGovernor,
  type CompressionStats,
  RunCompressor,
  type StreamCompression,
} from "./compression.ts";

// Ranges shorter than this are scanned without asking for never-written pages.
const HOLE_QUERY_MIN_BYTES = 16 << 20;

// The holes of `list` (offsets from the span start) inside [from, from + length),
// relative to `from`.
function holesIn(list: [number, number][], from: number, length: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [off, len] of list) {
    const a = Math.max(off, from);
    const b = Math.min(off + len, from + length);
    if (b > a) out.push([a - from, b - a]);
  }
  return out;
}

// More runs than this in one run-sized chunk make a sparse section instead.
const SPARSE_MIN_RUNS = 8;

/** Options for {@linkcode StreamWriter}. */
export interface StreamWriterOptions {
  /** Largest RAM run written as one section; default 4 MiB, at most `MAX_RUN_BYTES`. */
  maxRunBytes?: number;
  /** Size of the batch buffer that collects small sections; default 1 MiB. */
  batchBytes?: number;
  /**
   * Copy each large RAM run into a writer-owned buffer before checksumming
   * and sending it. Use this while the guest (or a device's DMA) may write
   * the pages being sent: otherwise a write between the checksum and the
   * send makes the destination reject the section. Default `false`.
   */
  snapshotRuns?: boolean;
  /**
   * Compress RAM runs: `zstd` sends each data run of at least 16 KiB (cut
   * into runs of at most 1 MiB) as a compressed section when that is at
   * most 7/8 of its raw size, and raw otherwise. `auto` does the same only
   * while compressing a run and sending it is estimated faster than sending
   * it raw (from the time compress calls and sink writes take: see
   * {@linkcode CompressionGovernor}); otherwise runs go raw, one in 16 still
   * compressed to follow a changing link. Default `none`. Needs libzstd
   * (`libzstd.so.1`) and `--allow-ffi`.
   */
  compress?: StreamCompression;
  /** zstd's compression level with `compress: "zstd"` or `"auto"`; default 1. */
  compressLevel?: number;
  /**
   * The clock `compress: "auto"` times compress calls and sink writes with,
   * in ms; default `performance.now`.
   */
  clock?: () => number;
}

/** What {@linkcode StreamWriter.writePages} sent. */
export interface WritePagesResult {
  /** Pages sent with their bytes. */
  pages: number;
  /** Pages sent as zero runs (or zero pages of sparse runs): QEMU's "duplicate" pages. */
  zeroPages: number;
  /** Of the zero pages, those never written, sent without being read. */
  skippedPages: number;
}

const textEncoder = new TextEncoder();

/**
 * Writes a migration stream. Sections smaller than a quarter of the batch
 * buffer are copied into it and sent in writes of up to `batchBytes`; larger
 * RAM payloads are checksummed and written in place (zero-copy) after the
 * small section header. Every sink write is awaited, so at most `batchBytes`
 * (plus one run when `snapshotRuns` is set) is ever held: a slow receiver
 * slows the writer. Await each call before the next; {@linkcode writeEnd}
 * flushes.
 *
 * @example Save a RAM image to a file
 * ```ts
 * import { guestAddress } from "../../sys/address.ts";
 * import { arrayRam } from "./ram.ts";
 * import { connectEndpoint } from "../transport/open.ts";
 * import { StreamWriter } from "./writer.ts";
 * const ram = arrayRam([{ gpa: 0n, size: 1n << 20n }]);
 * const path = await Deno.makeTempFile();
 * {
 *   using sink = await connectEndpoint(`file:${path}`);
 *   const w = new StreamWriter(sink);
 *   await w.writeHeader(ram.layout, 4096);
 *   await w.writePages(ram, guestAddress(0n), 256);
 *   await w.writeEnd(new Uint8Array(32));
 *   console.log(w.bytesWritten);
 * }
 * await Deno.remove(path);
 * ```
 */
export class StreamWriter {
  #framer: SectionFramer;
  #state: "new" | "open" | "complete" | "ended" | "failed" = "new";
  #busy = false;
  #layout: readonly RamRegionLayout[] = [];
  #pageSize = 0;
  #maxRun: number;
  #snapshot: Uint8Array | undefined;
  #sparseBuf: Uint8Array | undefined;
  #compressor: RunCompressor | undefined;
  #compressStats: CompressionStats | undefined;
  #governor: CompressionGovernor | undefined;
  #clock: () => number;

  /**
   * Creates a writer over a sink; nothing is written until `writeHeader()`.
   *
   * @param sink Where the bytes go (a {@linkcode StreamChannel} or any sink).
   * @param options Run cap, batch size, snapshot mode, compression.
   * @throws {RangeError} If an option is out of range.
   * @throws {ZstdError} With `compress: "zstd"` or `"auto"`, if libzstd cannot be loaded.
   */
  constructor(sink: StreamSink, options: StreamWriterOptions = {}) {
    const maxRun = options.maxRunBytes ?? 4 << 20;
    const batch = options.batchBytes ?? 1 << 20;
    if (!Number.isInteger(maxRun) || maxRun < 1 || maxRun > MAX_RUN_BYTES) {
      throw new RangeError(`Cannot create StreamWriter: maxRunBytes ${maxRun} is out of range`);
    }
    if (!Number.isInteger(batch) || batch < 4096 || batch > 1 << 30) {
      throw new RangeError(`Cannot create StreamWriter: batchBytes ${batch} is out of range`);
    }
    this.#maxRun = maxRun;
    this.#snapshot = options.snapshotRuns ? new Uint8Array(maxRun) : undefined;
    this.#clock = options.clock ?? (() => performance.now());
    const compress = options.compress ?? "none";
    if (compress !== "none" && compress !== "zstd" && compress !== "auto") {
      throw new RangeError(`Cannot create StreamWriter: unknown compression "${compress}"`);
    }
    if (compress === "auto") {
      const governor = new CompressionGovernor();
      const clock = this.#clock;
      const inner = sink;
      this.#governor = governor;
      sink = {
        async write(bytes: Uint8Array): Promise<void> {
          const t0 = clock();
          await inner.write(bytes);
          governor.wrote(bytes.length, clock() - t0);
        },
      };
    }
    this.#framer = new SectionFramer(sink, batch);
    if (compress !== "none") {
      this.#compressor = new RunCompressor({
        maxRunBytes: Math.min(maxRun, COMPRESS_CHUNK_BYTES),
        level: options.compressLevel,
        policy: compress,
      });
    }
  }

  /**
   * What compression did so far: runs tried and compressed, their raw
   * payload bytes and the bytes they took on the wire, and with `auto` the
   * runs sent raw because the wire was faster. `undefined` without
   * `compress: "zstd"` or `"auto"`.
   */
  get compression(): CompressionStats | undefined {
    return this.#compressor?.stats ?? this.#compressStats;
  }

  /**
   * Releases the compressor (libzstd's context). Idempotent; done by
   * `writeEnd()` and by any failure that cuts the stream, and the writer can
   * write no compressed run after it.
   */
  close(): void {
    if (this.#compressor === undefined) return;
    this.#compressStats = this.#compressor.stats;
    this.#compressor.close();
    this.#compressor = undefined;
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Bytes of the stream produced so far (up to `batchBytes` may wait for a flush). */
  get bytesWritten(): number {
    return this.#framer.bytes;
  }

  /**
   * Writes the stream header. Must come first, exactly once.
   *
   * @param layout The source's RAM regions.
   * @param pageSize The page size in bytes (a power of two).
   * @returns Nothing.
   * @throws {RangeError} If the layout or page size is invalid.
   * @throws {TypeError} If called twice, or while another call is pending.
   */
  writeHeader(layout: readonly RamRegionLayout[], pageSize: number): Promise<void> {
    return this.#run("new", async () => {
      const header = encodeStreamHeader(layout, pageSize);
      this.#layout = layout.map((r) => ({ gpa: r.gpa, size: r.size }));
      this.#pageSize = pageSize;
      await this.#framer.put(header);
      this.#state = "open";
    });
  }

  /**
   * Starts a parallel channel instead of a stream: writes its hello (see
   * `channel_hello.ts`) where the stream header would go. The channel then
   * carries RAM sections and iteration markers, and ends with
   * {@linkcode writeComplete}.
   *
   * @param hello The encoded channel hello.
   * @param layout The source's RAM regions, as the main stream's header has them.
   * @param pageSize The page size in bytes.
   * @returns Nothing.
   * @throws {TypeError} If called after the header, or while another call is pending.
   *
   * @example
   * ```ts ignore
   * await writer.writeChannelHeader(encodeChannelHello(hello), ram.layout, 4096);
   * ```
   */
  writeChannelHeader(
    hello: Uint8Array,
    layout: readonly RamRegionLayout[],
    pageSize: number,
  ): Promise<void> {
    return this.#run("new", async () => {
      this.#layout = layout.map((r) => ({ gpa: r.gpa, size: r.size }));
      this.#pageSize = pageSize;
      await this.#framer.put(hello);
      this.#state = "open";
    });
  }

  /**
   * Writes RAM pages from a view, zero-copy: the view itself is handed to
   * the sink. Ranges longer than `maxRunBytes` become several sections.
   *
   * @param gpa GPA of the first page (page-aligned).
   * @param bytes The pages (whole pages, inside one region of the layout).
   * @returns Nothing.
   * @throws {RangeError} If the range is unaligned or outside the header's layout.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writeRamRun(gpa: GuestAddress, bytes: Uint8Array): Promise<void> {
    return this.#run("open", async () => {
      this.#checkRange(gpa, bytes.length);
      for (let off = 0; off < bytes.length; off += this.#maxRunAligned()) {
        const part = bytes.subarray(off, off + this.#maxRunAligned());
        await this.#ramRun(gpa + BigInt(off), part);
      }
    });
  }

  /**
   * Writes a run of zero pages (no page bytes go on the wire).
   *
   * @param gpa GPA of the first page (page-aligned).
   * @param pages How many pages.
   * @returns Nothing.
   * @throws {RangeError} If the range is unaligned or outside the header's layout.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writeZeroRun(gpa: GuestAddress, pages: number): Promise<void> {
    return this.#run("open", async () => {
      const length = this.#pagesToBytes(pages);
      this.#checkRange(gpa, length);
      await this.#zeroRun(gpa, length);
    });
  }

  /**
   * Sends a page range from RAM: detects zero pages, writes them as zero
   * runs, and batches adjacent data pages into runs of up to `maxRunBytes`
   * written zero-copy. The range may span adjacent regions.
   *
   * @param ram The source's RAM.
   * @param gpa GPA of the first page (page-aligned).
   * @param pages How many pages.
   * @returns How many pages went as data and as zero runs.
   * @throws {RangeError} If the range is unaligned or leaves the layout.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writePages(ram: RamAccess, gpa: GuestAddress, pages: number): Promise<WritePagesResult> {
    return this.#run("open", async () => {
      // The whole range is checked before the first section: a hole or the
      // layout's end fails the call with nothing written.
      this.#checkSpan(gpa, this.#pagesToBytes(pages));
      const result = { pages: 0, zeroPages: 0, skippedPages: 0 };
      await this.#pages(ram, gpa, pages, result);
      return result;
    });
  }

  /**
   * Sends many page runs in one call, each as {@linkcode writePages} would:
   * the cheap way to send scattered dirty pages, since a single page costs
   * a zero check and a copy into the batch, not a call of its own.
   *
   * @param ram The source's RAM.
   * @param gpa GPA the runs count from (page-aligned).
   * @param runs Pairs of (first page after `gpa`, page count), ascending and
   *   not overlapping; all inside the region that holds `gpa`.
   * @returns How many pages went as data and as zero runs.
   * @throws {RangeError} If a run is malformed or leaves the region.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writePageRuns(
    ram: RamAccess,
    gpa: GuestAddress,
    runs: readonly number[],
  ): Promise<WritePagesResult> {
    return this.#run("open", async () => {
      const result = { pages: 0, zeroPages: 0, skippedPages: 0 };
      const ps = this.#pageSize;
      if (runs.length % 2 !== 0) throw new RangeError("Cannot send page runs: odd pair list");
      let end = 0;
      for (let k = 0; k < runs.length; k += 2) {
        const [first, n] = [runs[k], runs[k + 1]];
        if (!Number.isInteger(first) || !Number.isInteger(n) || first < end || n < 1) {
          throw new RangeError(`Cannot send page runs: run ${k / 2} (${first}, ${n}) is malformed`);
        }
        end = first + n;
      }
      if (end === 0) return result;
      this.#checkRange(gpa, end * ps);
      const view = ram.view(gpa, end * ps);
      const scan = new ZeroPageScanner(view, ps);
      for (let k = 0; k < runs.length; k += 2) {
        const off = runs[k] * ps;
        const n = runs[k + 1];
        const at = (gpa + BigInt(off)) as GuestAddress; // inside the range checked above
        if (n > 1) {
          await this.#pages(ram, at, n, result);
          continue;
        }
        const zero = scan.isZeroPage(off);
        const wait = zero ? this.#zeroRun(at, ps) : this.#ramRun(at, view.subarray(off, off + ps));
        if (wait !== undefined) await wait;
        if (zero) result.zeroPages++;
        else result.pages++;
      }
      return result;
    });
  }

  // The body of writePages: adds what it sent to `result`.
  async #pages(ram: RamAccess, gpa: GuestAddress, pages: number, result: WritePagesResult) {
    let cur = gpa;
    let left = BigInt(this.#pagesToBytes(pages));
    // Never-written ranges of the current region's span, asked once per span:
    // the kernel's answer costs a walk to the next hole, however far.
    let holes: { at: bigint; list: [number, number][] } | undefined;
    while (left > 0n) {
      const i = findRegion(this.#layout, cur, 1n);
      if (i < 0) {
        throw new RangeError(`Cannot send pages: GPA 0x${cur.toString(16)} is in no region`);
      }
      const r = this.#layout[i];
      const regionLeft = r.gpa + r.size - cur;
      const chunk = Number(
        [left, regionLeft, 1n << 28n].reduce((a, b) => a < b ? a : b),
      );
      this.#checkRange(cur, chunk);
      if (holes === undefined || holes.at < r.gpa) {
        const span = left < regionLeft ? left : regionLeft;
        holes = {
          at: cur,
          list: ram.unpopulated && span >= HOLE_QUERY_MIN_BYTES
            ? ram.unpopulated(cur, Number(span))
            : [],
        };
      }
      const view = ram.view(cur, chunk);
      const knownZero = holesIn(holes.list, Number(cur - holes.at), chunk);
      for (const [, n] of knownZero) result.skippedPages += n / this.#pageSize;
      const runs = pageRunList(view, this.#pageSize, { maxRunBytes: this.#maxRun, knownZero });
      const groups = groupRuns(runs, this.#windowBytes(), SPARSE_MIN_RUNS);
      for (let g = 0; g < groups.length; g += 2) {
        const i = groups[g];
        const j = groups[g + 1];
        if (j - i > 1) {
          const from = runs[i].offset;
          const to = runs[j - 1].offset + runs[j - 1].length;
          const sent = await this.#sparseRun(
            cur + BigInt(from),
            view.subarray(from, to),
            runs,
            i,
            j,
          );
          result.pages += sent;
          result.zeroPages += (to - from) / this.#pageSize - sent;
          continue;
        }
        const run = runs[i];
        const at = cur + BigInt(run.offset);
        const wait = run.zero
          ? this.#zeroRun(at, run.length)
          : this.#ramRun(at, view.subarray(run.offset, run.offset + run.length));
        if (wait !== undefined) await wait;
        if (run.zero) result.zeroPages += run.length / this.#pageSize;
        else result.pages += run.length / this.#pageSize;
      }
      cur = (cur + BigInt(chunk)) as GuestAddress; // inside the span checked up front
      left -= BigInt(chunk);
    }
  }

  /**
   * Writes one device's state (opaque bytes). The same id may appear more
   * than once; the receiver keeps every chunk in order.
   *
   * @param id The device id, 1 to 255 bytes of UTF-8.
   * @param bytes The state.
   * @returns Nothing.
   * @throws {RangeError} If the id is empty or too long.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writeDeviceState(id: string, bytes: Uint8Array): Promise<void> {
    return this.#deviceSection(SectionType.DEVICE_STATE, "device state", id, bytes);
  }

  /**
   * Writes the next bytes of a device's pre-copy data stream (read from its
   * `PRE_COPY` data fd while the guest runs). A device's first section
   * announces it (it may be empty); every device announces itself before
   * the first iteration marker.
   *
   * @param id The device id, 1 to 255 bytes of UTF-8.
   * @param bytes The data; id and data together at most `MAX_DEVICE_PRECOPY_BYTES`.
   * @returns Nothing.
   * @throws {RangeError} If the id is empty or too long, or the section too large.
   * @throws {TypeError} Before the header, after COMPLETE, or while another call is pending.
   */
  writeDevicePrecopy(id: string, bytes: Uint8Array): Promise<void> {
    return this.#deviceSection(SectionType.DEVICE_PRECOPY, "device pre-copy data", id, bytes);
  }

  /**
   * Marks a device's initial pre-copy data as sent (its `initial_bytes`
   * reached 0), once per device, after its pre-copy sections.
   *
   * @param id The device id, 1 to 255 bytes of UTF-8.
   * @returns Nothing.
   * @throws {RangeError} If the id is empty or too long.
   * @throws {TypeError} Before the header, after COMPLETE, or while another call is pending.
   */
  writeDeviceInitialSent(id: string): Promise<void> {
    return this.#deviceSection(
      SectionType.DEVICE_INIT_DATA_SENT,
      "the initial-data-sent marker",
      id,
      new Uint8Array(0),
    );
  }

  #deviceSection(type: number, what: string, id: string, bytes: Uint8Array): Promise<void> {
    return this.#run("open", async () => {
      const idBytes = textEncoder.encode(id);
      if (idBytes.length === 0 || idBytes.length > MAX_DEVICE_ID_BYTES) {
        throw new RangeError(`Cannot write ${what}: id "${id}" must be 1 to 255 UTF-8 bytes`);
      }
      const length = idBytes.length + bytes.length;
      if (type === SectionType.DEVICE_PRECOPY && length > MAX_DEVICE_PRECOPY_BYTES) {
        throw new RangeError(
          `Cannot write ${what} of ${bytes.length} bytes: a section holds at most ${MAX_DEVICE_PRECOPY_BYTES} bytes with its id`,
        );
      }
      await this.#framer.section(type, BigInt(idBytes.length), BigInt(length), [idBytes, bytes]);
    });
  }

  /**
   * Writes an iteration marker. Numbers must increase through the stream.
   *
   * @param n The iteration number, 0 to 2^32 - 1.
   * @returns Nothing.
   * @throws {RangeError} If `n` is not an integer in range.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writeIteration(n: number): Promise<void> {
    return this.#run("open", async () => {
      if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
        throw new RangeError(`Cannot write iteration ${n}: expected an integer 0 to 2^32 - 1`);
      }
      await this.#framer.section(SectionType.ITERATION, BigInt(n), 0n, []);
    });
  }

  /**
   * Writes the COMPLETE marker and flushes: the image (every page and device
   * state) has been sent, and only END may follow. A live destination
   * answers it at once, before either side digests its RAM.
   *
   * @returns Nothing; once resolved the sink has the whole image.
   * @throws {TypeError} Before the header, after COMPLETE, or while another call is pending.
   */
  writeComplete(): Promise<void> {
    return this.#run("open", async () => {
      await this.#framer.section(SectionType.COMPLETE, 0n, 0n, []);
      await this.#framer.flush();
      this.#state = "complete";
    });
  }

  /**
   * Writes the end marker with the source's RAM digest and flushes; writes
   * COMPLETE first unless {@linkcode writeComplete} already did.
   *
   * @param digest The digest, 1 to 64 bytes (for example SHA-256).
   * @returns Nothing; once resolved the sink has the whole stream.
   * @throws {RangeError} If the digest is empty or longer than 64 bytes.
   * @throws {TypeError} Before the header, after the end, or while another call is pending.
   */
  writeEnd(digest: Uint8Array): Promise<void> {
    if (digest.length === 0 || digest.length > MAX_DIGEST_BYTES) {
      return Promise.reject(
        new RangeError(`Cannot write END: digest has ${digest.length} bytes, expected 1 to 64`),
      );
    }
    const need = this.#state === "open" ? "open" : "complete";
    return this.#run(need, async () => {
      if (this.#state === "open") {
        await this.#framer.section(SectionType.COMPLETE, 0n, 0n, []);
        this.#state = "complete";
      }
      await this.#framer.section(SectionType.END, 0n, BigInt(digest.length), [digest]);
      await this.#framer.flush();
      this.#state = "ended";
      this.close();
    });
  }

  /**
   * Hands any batched bytes to the sink.
   *
   * @returns Nothing.
   * @throws {TypeError} While another call is pending.
   */
  flush(): Promise<void> {
    return this.#run(undefined, () => this.#framer.flush());
  }

  async #run<T>(need: "new" | "open" | "complete" | undefined, body: () => Promise<T>): Promise<T> {
    if (this.#busy) throw new TypeError("Cannot write: the previous StreamWriter call is pending");
    if (need !== undefined && this.#state !== need) {
      throw new TypeError(`Cannot write: the stream is ${this.#state}, expected ${need}`);
    }
    this.#busy = true;
    const framed = this.#framer.bytes;
    try {
      return await body();
    } catch (e) {
      // A bad argument refused before anything was framed leaves the stream
      // usable; any failure after a section began leaves it cut: failed.
      if (!(e instanceof RangeError) || this.#framer.bytes !== framed) {
        this.#state = "failed";
        this.close();
      }
      throw e;
    } finally {
      this.#busy = false;
    }
  }

  #maxRunAligned(): number {
    return Math.max(this.#pageSize, this.#maxRun - this.#maxRun % this.#pageSize);
  }

  // A sparse run's window: with compression, the largest run compressed at once.
  #windowBytes(): number {
    const max = this.#maxRunAligned();
    if (this.#compressor === undefined) return max;
    return Math.max(
      this.#pageSize,
      Math.min(max, COMPRESS_CHUNK_BYTES - COMPRESS_CHUNK_BYTES % this.#pageSize),
    );
  }

  #pagesToBytes(pages: number): number {
    const bytes = pages * this.#pageSize;
    if (!Number.isInteger(pages) || pages < 0 || !Number.isSafeInteger(bytes)) {
      throw new RangeError(`Cannot write ${pages} pages: expected a non-negative integer`);
    }
    return bytes;
  }

  // Whether [gpa, gpa + length) lies in the layout without a hole (it may
  // span adjacent regions).
  #checkSpan(gpa: bigint, length: number): void {
    const page = BigInt(this.#pageSize);
    if (gpa % page !== 0n) {
      throw new RangeError(`Cannot send pages at GPA 0x${gpa.toString(16)}: not page-aligned`);
    }
    let cur = gpa;
    const end = gpa + BigInt(length);
    while (cur < end) {
      const i = findRegion(this.#layout, cur, 1n);
      if (i < 0) {
        throw new RangeError(
          `Cannot send pages at GPA 0x${gpa.toString(16)} length ${length}: GPA 0x${
            cur.toString(16)
          } is in no region`,
        );
      }
      const r = this.#layout[i];
      cur = r.gpa + r.size;
    }
  }

  #checkRange(gpa: bigint, length: number): void {
    const page = BigInt(this.#pageSize);
    if (gpa % page !== 0n || length % this.#pageSize !== 0) {
      throw new RangeError(
        `Cannot write RAM at GPA 0x${gpa.toString(16)} length ${length}: not page-aligned`,
      );
    }
    if (length > 0 && findRegion(this.#layout, gpa, BigInt(length)) < 0) {
      throw new RangeError(
        `Cannot write RAM at GPA 0x${gpa.toString(16)} length ${length}: outside one region`,
      );
    }
  }

  // Return a promise only when the framer had to wait for the sink.
  #ramRun(gpa: bigint, bytes: Uint8Array): Promise<void> | undefined {
    if (bytes.length === 0) return;
    if (this.#compressor !== undefined && bytes.length >= COMPRESS_MIN_BYTES) {
      return this.#compressedRuns(gpa, bytes);
    }
    let payload = bytes;
    if (this.#snapshot !== undefined && bytes.length >= this.#framer.directBytes) {
      payload = this.#snapshot.subarray(0, bytes.length);
      payload.set(bytes);
    }
    return this.#framer.section(SectionType.RAM, gpa, BigInt(payload.length), [payload]);
  }

  // A data run in pieces of at most the compressor's run, each compressed or raw.
  async #compressedRuns(gpa: bigint, bytes: Uint8Array): Promise<void> {
    const step = this.#windowBytes();
    for (let off = 0; off < bytes.length; off += step) {
      const piece = bytes.subarray(off, off + step);
      const wait = this.#compressedOrRaw(gpa + BigInt(off), piece, undefined);
      if (wait !== undefined) await wait;
    }
  }

  // Sends `bytes` as a compressed section if it compresses well enough
  // against `raw` (the sparse section that would carry it, or by default its
  // RAM run); otherwise sends `raw`. While RAM may change, the compressor
  // reads a snapshot, so the frame and its checksum agree.
  #compressedOrRaw(
    gpa: bigint,
    bytes: Uint8Array,
    raw: { bytes: number; send: () => Promise<void> | undefined } | undefined,
  ): Promise<void> | undefined {
    let input = bytes;
    if (this.#snapshot !== undefined) {
      input = this.#snapshot.subarray(0, bytes.length);
      input.set(bytes);
    }
    const rawBytes = raw?.bytes ?? bytes.length;
    const compressor = this.#compressor!;
    const governor = this.#governor;
    let parts: [Uint8Array, Uint8Array] | undefined;
    if (governor === undefined) {
      parts = compressor.compress(input, rawBytes);
    } else {
      const choice = governor.choose(input.length, rawBytes);
      if (choice === "raw") {
        compressor.skipped(rawBytes);
      } else {
        const t0 = this.#clock();
        parts = compressor.compress(input, rawBytes);
        const ms = this.#clock() - t0;
        const wire = parts === undefined ? rawBytes : parts[0].length + parts[1].length;
        governor.compressed(input.length, rawBytes, wire, ms);
        if (choice === "sample") compressor.sampled();
      }
    }
    if (parts !== undefined) {
      const length = BigInt(parts[0].length + parts[1].length);
      return this.#framer.section(SectionType.COMPRESSED, gpa, length, parts);
    }
    if (raw !== undefined) return raw.send();
    return this.#framer.section(SectionType.RAM, gpa, BigInt(input.length), [input]);
  }

  // Copies the non-zero pages of `part` behind a bitmap into one section;
  // the copy is what is checksummed and sent, so RAM may change meanwhile.
  // (Sending the pages from RAM with one gathered sendmsg(2) instead was
  // measured slower here: page-sized iovecs cost the kernel more than the copy.)
  async #sparseRun(
    gpa: bigint,
    part: Uint8Array,
    runs: readonly PageRun[],
    i: number,
    j: number,
  ): Promise<number> {
    const pageSize = this.#pageSize;
    const pages = part.length / pageSize;
    if (this.#compressor !== undefined && part.length >= COMPRESS_MIN_BYTES) {
      let data = 0;
      for (let k = i; k < j; k++) if (!runs[k].zero) data += runs[k].length;
      const rawBytes = SPARSE_HEAD_BYTES + sparseBitmapBytes(pages) + data;
      // Zero pages inside a compressed window still count as zero pages.
      const wait = this.#compressedOrRaw(gpa, part, {
        bytes: rawBytes,
        send: async () => void await this.#sparseSection(gpa, part, runs, i, j),
      });
      if (wait !== undefined) await wait;
      return data / pageSize;
    }
    return await this.#sparseSection(gpa, part, runs, i, j);
  }

  async #sparseSection(
    gpa: bigint,
    part: Uint8Array,
    runs: readonly PageRun[],
    i: number,
    j: number,
  ): Promise<number> {
    const pageSize = this.#pageSize;
    const pages = part.length / pageSize;
    const head = new Uint8Array(SPARSE_HEAD_BYTES + sparseBitmapBytes(pages));
    new DataView(head.buffer).setUint32(0, pages, true);
    this.#sparseBuf ??= new Uint8Array(this.#maxRunAligned());
    const pagesOut = this.#sparseBuf;
    const used = packSparse(part, runs, i, j, pageSize, head, pagesOut);
    await this.#framer.section(SectionType.SPARSE, gpa, BigInt(head.length + used), [
      head,
      pagesOut.subarray(0, used),
    ]);
    return used / pageSize;
  }

  #zeroRun(gpa: bigint, length: number): Promise<void> | undefined {
    if (length > 0) return this.#framer.section(SectionType.ZERO, gpa, BigInt(length), []);
  }
}
