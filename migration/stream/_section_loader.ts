// Applies a stream's sections to the destination's RAM, one by one, checking
// each against the destination's own layout before reading or allocating.

import { crc32 } from "node:zlib";
import type { GuestAddress } from "../../sys/address.ts";
import type { StreamBuffer } from "./_stream_buffer.ts";
import type { RamAccess } from "./ram.ts";
import type { ReceiveOptions, ReceiveSummary } from "./receive_types.ts";
import { StreamError } from "./error.ts";
import { type DeviceSection, DeviceSections } from "./_device_sections.ts";
import {
  COMPRESSED_HEAD_BYTES,
  CompressionCodec,
  decodeSectionHeader,
  findRegion,
  MAX_DIGEST_BYTES,
  MAX_RUN_BYTES,
  SECTION_HEADER_BYTES,
  SectionType,
  SPARSE_HEAD_BYTES,
  sparseBitmapBytes,
} from "./format.ts";
import { clearPages } from "./zero_pages.ts";
import { WrittenPages } from "./_written_pages.ts";
import { ZSTD_error_dstSize_tooSmall, ZstdDecompressor, ZstdError } from "../../sys/zstd.ts";

const NAMES: Record<number, string> = {
  [SectionType.RAM]: "RAM run",
  [SectionType.ZERO]: "Zero run",
  [SectionType.DEVICE_STATE]: "Device state",
  [SectionType.ITERATION]: "Iteration",
  [SectionType.END]: "END",
  [SectionType.SPARSE]: "Sparse run",
  [SectionType.COMPLETE]: "COMPLETE",
  [SectionType.COMPRESSED]: "Compressed run",
  [SectionType.DEVICE_PRECOPY]: "Device pre-copy",
  [SectionType.DEVICE_INIT_DATA_SENT]: "Initial-data-sent",
};

// A parallel channel's part in a migration (STREAM.md, "Parallel channels"):
// it carries RAM sections and iteration markers only, and ends at COMPLETE.
export interface ChannelRole {
  // The written-pages map all channels of the migration share (zeroed RAM).
  written?: WrittenPages;
  // Awaited at each iteration marker: resolves once every channel has
  // delivered it, so no later page is applied before an earlier copy.
  iterationBarrier(n: number): Promise<void>;
}

// Applies sections one by one; #start is the offset of the current section.
export class SectionLoader {
  #buf: StreamBuffer;
  #ram: RamAccess;
  #channel: ChannelRole | undefined;
  #options: ReceiveOptions & { pageSize: number };
  #start = 0;
  #device: DeviceSections;
  // Set at COMPLETE: the destination's digest, computed while the source computes its own.
  #ours: Uint8Array | undefined;
  #written: WrittenPages | undefined;
  // Compressed runs: the compressed bytes, read whole (grown to the largest
  // seen, under 64 MiB), and libzstd's context, made at the first one.
  #packed: Uint8Array | undefined;
  #zstd: ZstdDecompressor | undefined;
  #summary: ReceiveSummary = {
    sections: {
      ram: 0,
      zero: 0,
      sparse: 0,
      compressed: 0,
      deviceState: 0,
      devicePrecopy: 0,
      deviceInitialSent: 0,
      iteration: 0,
      end: 0,
    },
    pages: 0,
    zeroPages: 0,
    bytes: 0,
    deviceStates: new Map(),
    iterations: 0,
    lastIteration: undefined,
    digest: new Uint8Array(0),
  };

  constructor(
    buf: StreamBuffer,
    ram: RamAccess,
    options: ReceiveOptions & { pageSize: number; written?: WrittenPages },
    channel?: ChannelRole,
  ) {
    this.#buf = buf;
    this.#channel = channel;
    this.#ram = ram;
    this.#options = options;
    this.#device = new DeviceSections(buf, this.#summary, options, (r) => this.#fail(r));
    // A migration over parallel channels shares one map among its streams.
    this.#written = channel !== undefined
      ? channel.written
      : options.zeroed
      ? options.written ?? new WrittenPages(ram.layout, options.pageSize)
      : undefined;
  }

  async run(): Promise<ReceiveSummary> {
    try {
      return await this.#run();
    } finally {
      this.#zstd?.close();
    }
  }

  async #run(): Promise<ReceiveSummary> {
    const buf = this.#buf;
    while (true) {
      this.#start = buf.offset;
      // Fast path: take from the buffer without an await when the bytes are there.
      let raw = buf.takeNow(SECTION_HEADER_BYTES);
      if (raw === undefined) {
        if (buf.buffered === 0 && await buf.atEnd()) {
          this.#fail("Stream ended without an END section");
        }
        raw = await buf.take(SECTION_HEADER_BYTES, "a section header");
      }
      const h = decodeSectionHeader(raw);
      if (h === undefined) this.#fail("Section header checksum mismatch");
      const seed = crc32(raw);
      const name = NAMES[h.type];
      if (name === undefined) this.#fail(`Unknown section type ${h.type}`);
      if (h.flags !== 0) this.#fail(`${name} section has non-zero flags 0x${h.flags.toString(16)}`);
      if (
        this.#channel !== undefined &&
        (h.type === SectionType.DEVICE_STATE || h.type === SectionType.DEVICE_PRECOPY ||
          h.type === SectionType.DEVICE_INIT_DATA_SENT || h.type === SectionType.END)
      ) {
        this.#fail(`${name} section on a parallel channel (it carries RAM only)`);
      }
      if (this.#ours !== undefined && h.type !== SectionType.END) {
        this.#fail(`${name} section after COMPLETE (only END may follow)`);
      }
      let crc: number;
      let zeroAt: GuestAddress | undefined;
      let packed: { at: GuestAddress; run: number; bytes: Uint8Array; crc: number } | undefined;
      let device: DeviceSection | undefined;
      switch (h.type) {
        case SectionType.RAM:
          crc = await this.#ramRun(h.arg, h.length, seed);
          break;
        case SectionType.ZERO:
          crc = seed;
          zeroAt = this.#checkRun(h.arg, h.length, "Zero run", Number.MAX_SAFE_INTEGER);
          break;
        case SectionType.DEVICE_STATE:
        case SectionType.DEVICE_PRECOPY:
        case SectionType.DEVICE_INIT_DATA_SENT:
          device = await this.#device.read(h.type, h.arg, h.length, seed);
          crc = device.crc;
          break;
        case SectionType.SPARSE:
          crc = await this.#sparseRun(h.arg, h.length, seed);
          break;
        case SectionType.COMPRESSED:
          packed = await this.#compressedRun(h.arg, h.length, seed);
          crc = packed.crc;
          break;
        case SectionType.ITERATION:
        case SectionType.COMPLETE:
          if (h.length !== 0n) this.#fail(`${name} section has length ${h.length}, expected 0`);
          if (h.type === SectionType.COMPLETE && h.arg !== 0n) {
            this.#fail(`COMPLETE section has arg ${h.arg}, expected 0`);
          }
          crc = seed;
          break;
        default:
          if (h.arg !== 0n || h.length === 0n || h.length > BigInt(MAX_DIGEST_BYTES)) {
            this.#fail(`END section digest length ${h.length} is not in 1 to ${MAX_DIGEST_BYTES}`);
          }
          if (this.#ours === undefined) this.#fail("END section before COMPLETE");
          this.#summary.digest = (await buf.take(Number(h.length), "the END section")).slice();
          crc = crc32(this.#summary.digest, seed);
      }
      const trailer = buf.takeNow(4) ?? await buf.take(4, `the ${name} section checksum`);
      if (new DataView(trailer.buffer, trailer.byteOffset, 4).getUint32(0, true) !== crc) {
        this.#fail(`${name} section checksum mismatch`);
      }
      // Sections without payload take effect only once their checksum holds.
      if (h.type === SectionType.ZERO) this.#zeroRun(zeroAt!, h.length);
      if (packed !== undefined) this.#decompress(packed.at, packed.run, packed.bytes);
      if (device !== undefined) await this.#device.apply(device);
      if (h.type === SectionType.ITERATION) {
        this.#iteration(h.arg);
        await this.#channel?.iterationBarrier(Number(h.arg));
      }
      if (h.type === SectionType.COMPLETE && this.#channel !== undefined) return this.#channelEnd();
      if (h.type === SectionType.COMPLETE) {
        this.#device.checkComplete();
        await this.#complete();
      }
      if (h.type === SectionType.END) return await this.#end();
    }
  }

  async #end(): Promise<ReceiveSummary> {
    const s = this.#summary;
    s.sections.end++;
    const endStart = this.#start;
    this.#start = this.#buf.offset;
    const trailing = this.#options.expectEof === false
      ? this.#buf.buffered > 0
      : !(await this.#buf.atEnd());
    if (trailing) this.#fail("Data follows the END section");
    s.bytes = this.#buf.offset;
    const ours = this.#ours!;
    if (ours.length !== s.digest.length || !ours.every((b, i) => b === s.digest[i])) {
      this.#start = endStart;
      this.#fail("RAM digest mismatch: the received image differs from the source's");
    }
    return s;
  }

  // A parallel channel's COMPLETE: it has sent all its pages; nothing may follow.
  #channelEnd(): ReceiveSummary {
    this.#start = this.#buf.offset;
    if (this.#buf.buffered > 0) this.#fail("Data follows the channel's COMPLETE section");
    this.#summary.bytes = this.#buf.offset;
    return this.#summary;
  }

  // The image is in: tell the caller, then digest RAM (nothing after COMPLETE may change it).
  async #complete(): Promise<void> {
    await this.#options.onComplete?.();
    this.#ours = await this.#options.digest(this.#ram);
  }

  async #ramRun(gpa: bigint, length: bigint, seed: number): Promise<number> {
    const at = this.#checkRun(gpa, length, "RAM run", MAX_RUN_BYTES);
    const view = this.#ram.view(at, Number(length));
    this.#written?.mark(gpa, view.length / this.#options.pageSize);
    let crc = seed;
    if (this.#buf.readIntoNow(view)) crc = crc32(view, seed);
    else await this.#buf.readInto(view, "a RAM run", (chunk) => crc = crc32(chunk, crc));
    this.#summary.sections.ram++;
    this.#summary.pages += view.length / this.#options.pageSize;
    return crc;
  }

  // Reads a compressed run's head and compressed bytes, checking the run
  // against the layout first; decompressed once its checksum holds.
  async #compressedRun(
    gpa: bigint,
    length: bigint,
    seed: number,
  ): Promise<{ at: GuestAddress; run: number; bytes: Uint8Array; crc: number }> {
    const buf = this.#buf;
    if (length <= BigInt(COMPRESSED_HEAD_BYTES)) {
      this.#fail(`Compressed run length ${length} is too short`);
    }
    const head = (buf.takeNow(COMPRESSED_HEAD_BYTES) ??
      await buf.take(COMPRESSED_HEAD_BYTES, "a compressed run")).slice();
    const hv = new DataView(head.buffer);
    const codec = hv.getUint32(0, true);
    if (codec !== CompressionCodec.ZSTD) this.#fail(`Compressed run has unknown codec ${codec}`);
    if (hv.getUint32(4, true) !== 0) this.#fail("Compressed run has a non-zero reserved field");
    const run = hv.getBigUint64(8, true);
    const at = this.#checkRun(gpa, run, "Compressed run", MAX_RUN_BYTES);
    const size = length - BigInt(COMPRESSED_HEAD_BYTES);
    if (size >= run) {
      this.#fail(
        `Compressed run of ${size} compressed bytes is not smaller than its ${run}-byte run`,
      );
    }
    const n = Number(size);
    if (this.#packed === undefined || this.#packed.length < n) {
      this.#packed = new Uint8Array(Math.max(n, 1 << 20));
    }
    const bytes = this.#packed.subarray(0, n);
    let crc = crc32(head, seed);
    await buf.readInto(bytes, "a compressed run", (chunk) => crc = crc32(chunk, crc));
    return { at, run: Number(run), bytes, crc };
  }

  // Decompresses into RAM in place: libzstd writes nothing past the run, and
  // the run must come out exactly as long as declared.
  #decompress(at: GuestAddress, run: number, bytes: Uint8Array): void {
    const view = this.#ram.view(at, run);
    const pageSize = this.#options.pageSize;
    this.#written?.mark(at, run / pageSize);
    let n: number;
    try {
      this.#zstd ??= new ZstdDecompressor();
      n = this.#zstd.decompress(bytes, view);
    } catch (e) {
      if (!(e instanceof ZstdError)) throw e;
      if (e.operation === "load") {
        this.#fail(`Compressed run needs zstd, which this destination cannot load: ${e.detail}`);
      }
      this.#fail(
        e.code === ZSTD_error_dstSize_tooSmall
          ? `Compressed run at GPA 0x${at.toString(16)} decompresses to more than its ${run} bytes`
          : `Compressed run at GPA 0x${at.toString(16)} does not decompress: zstd: ${e.detail}`,
      );
    }
    if (n !== run) {
      this.#fail(
        `Compressed run at GPA 0x${at.toString(16)} decompresses to ${n} bytes, declared ${run}`,
      );
    }
    const s = this.#summary;
    s.sections.compressed++;
    s.pages += run / pageSize;
  }

  async #sparseRun(gpa: bigint, length: bigint, seed: number): Promise<number> {
    const buf = this.#buf;
    const pageSize = this.#options.pageSize;
    if (length < BigInt(SPARSE_HEAD_BYTES)) this.#fail(`Sparse run length ${length} is too short`);
    const head = (buf.takeNow(SPARSE_HEAD_BYTES) ??
      await buf.take(SPARSE_HEAD_BYTES, "a sparse run")).slice();
    const hv = new DataView(head.buffer);
    const pages = hv.getUint32(0, true);
    if (hv.getUint32(4, true) !== 0) this.#fail("Sparse run has a non-zero reserved field");
    if (pages === 0 || pages * pageSize > MAX_RUN_BYTES) {
      this.#fail(`Sparse run of ${pages} pages is not in 1 to ${MAX_RUN_BYTES / pageSize}`);
    }
    const span = pages * pageSize;
    const at = this.#checkRun(gpa, BigInt(span), "Sparse run", MAX_RUN_BYTES);
    const bitmapBytes = sparseBitmapBytes(pages);
    if (length < BigInt(SPARSE_HEAD_BYTES + bitmapBytes)) {
      this.#fail(`Sparse run length ${length} cannot hold the bitmap of ${pages} pages`);
    }
    const bitmap = (await buf.take(bitmapBytes, "a sparse run bitmap")).slice();
    let crc = crc32(bitmap, crc32(head, seed));
    const sent = sparseBits(bitmap, pages);
    if (sent < 0) this.#fail(`Sparse run bitmap marks page ${-1 - sent} of ${pages}`);
    if (length !== BigInt(SPARSE_HEAD_BYTES + bitmapBytes + sent * pageSize)) {
      this.#fail(`Sparse run length ${length} does not match its bitmap (${sent} pages sent)`);
    }
    // Sent pages are taken from the read buffer as many at a time as it
    // holds (one checksum call per batch), and copied into place; zero pages
    // on the way are cleared, unless the RAM started zeroed and the stream
    // never wrote them.
    const view = this.#ram.view(at, span);
    const w = this.#written?.locate(gpa);
    let i = 0;
    for (let left = sent; left > 0;) {
      let k = Math.min(left, Math.floor(buf.buffered / pageSize));
      let batch = k > 0 ? buf.takeNow(k * pageSize)! : undefined;
      if (batch === undefined) {
        batch = await buf.take(pageSize, "a sparse run page");
        k = 1;
      }
      crc = crc32(batch, crc);
      i = placeBatch(view, batch, k, bitmap, i, pageSize, w);
      left -= k;
    }
    for (; i < pages; i++) zeroOne(view, i, pageSize, w);
    const s = this.#summary;
    s.sections.sparse++;
    s.pages += sent;
    s.zeroPages += pages - sent;
    return crc;
  }

  // Runs checked by #checkRun: every GPA below is inside the layout.
  #zeroRun(gpa: GuestAddress, length: bigint): void {
    const pageSize = this.#options.pageSize;
    const chunk = BigInt(MAX_RUN_BYTES);
    const written = this.#written;
    for (let off = 0n; off < length; off += chunk) {
      const n = Number(length - off < chunk ? length - off : chunk);
      const at = (gpa + off) as GuestAddress;
      if (written === undefined) clearPages(this.#ram.view(at, n), pageSize);
      else {
        written.takeRuns(at, n / pageSize, (first, count) => {
          this.#ram.view((at + BigInt(first * pageSize)) as GuestAddress, count * pageSize).fill(0);
        });
      }
    }
    this.#summary.sections.zero++;
    this.#summary.zeroPages += Number(length) / pageSize;
  }

  #iteration(arg: bigint): void {
    const s = this.#summary;
    if (arg > 0xffff_ffffn) this.#fail(`Iteration number ${arg} exceeds 2^32 - 1`);
    const n = Number(arg);
    if (s.lastIteration !== undefined && n <= s.lastIteration) {
      this.#fail(`Iteration ${n} does not follow iteration ${s.lastIteration}`);
    }
    s.lastIteration = n;
    s.iterations++;
    s.sections.iteration++;
    this.#device.closeAnnouncements();
    this.#options.onIteration?.(n);
  }

  // Checks a run against the layout; returns its GPA, now known to be one.
  #checkRun(gpa: bigint, length: bigint, name: string, max: number): GuestAddress {
    const pageSize = BigInt(this.#options.pageSize);
    if (length === 0n || length > BigInt(max)) {
      this.#fail(`${name} length ${length} is not in 1 to ${max}`);
    }
    if (gpa % pageSize !== 0n || length % pageSize !== 0n) {
      this.#fail(`${name} at GPA 0x${gpa.toString(16)} of ${length} bytes is not page-aligned`);
    }
    const i = findRegion(this.#ram.layout, gpa, length);
    if (i === -1) {
      this.#fail(`${name} GPA 0x${gpa.toString(16)} is outside the destination's layout`);
    }
    if (i === -2) {
      this.#fail(
        `${name} at GPA 0x${gpa.toString(16)} of ${length} bytes crosses the end of its region`,
      );
    }
    return gpa as GuestAddress;
  }

  #fail(reason: string): never {
    throw new StreamError(this.#start, reason);
  }
}

// The per-page loops live in plain functions: V8 optimizes a plain function's
// loop while it runs, but not one inside an async function.

type Written = { bits: Uint32Array; page: number } | undefined;

// The set bits of a sparse run's bitmap, or -1 - i for the first bit i at or past `pages`.
function sparseBits(bitmap: Uint8Array, pages: number): number {
  let sent = 0;
  for (let b = 0; b < bitmap.length; b++) {
    let v = bitmap[b];
    for (let i = b * 8; v !== 0; i++, v >>= 1) {
      if ((v & 1) === 0) continue;
      if (i >= pages) return -1 - i;
      sent++;
    }
  }
  return sent;
}

// Makes page i of a sparse run zero: cleared, or left alone if the RAM
// started zeroed and the stream never wrote it.
function zeroOne(view: Uint8Array, i: number, pageSize: number, w: Written): void {
  const off = i * pageSize;
  if (w === undefined) return void clearPages(view.subarray(off, off + pageSize), pageSize);
  const p = w.page + i;
  if ((w.bits[p >>> 5] >>> (p & 31)) & 1) {
    view.fill(0, off, off + pageSize);
    w.bits[p >>> 5] &= ~(1 << (p & 31));
  }
}

// Puts the `k` pages of `batch` at the next sent pages from page i, making
// the zero pages passed on the way zero; returns the page after the last.
function placeBatch(
  view: Uint8Array,
  batch: Uint8Array,
  k: number,
  bitmap: Uint8Array,
  i: number,
  pageSize: number,
  w: Written,
): number {
  for (let c = 0; c < k; c++, i++) {
    while (((bitmap[i >> 3] >> (i & 7)) & 1) === 0) zeroOne(view, i++, pageSize, w);
    view.set(batch.subarray(c * pageSize, (c + 1) * pageSize), i * pageSize);
    if (w) w.bits[(w.page + i) >>> 5] |= 1 << ((w.page + i) & 31);
  }
  return i;
}
