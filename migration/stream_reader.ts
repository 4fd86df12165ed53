/**
 * The receiving side of the stream format: {@linkcode receiveStream} loads a
 * stream into the destination's RAM, treating every byte as untrusted.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import { StreamBuffer } from "./_stream_buffer.ts";
import type { RamAccess, RamRegionLayout } from "./ram_access.ts";
import { StreamError } from "./stream_error.ts";
import {
  decodeSectionHeader,
  findRegion,
  isValidPageSize,
  layoutProblem,
  MAX_DEVICE_ID_BYTES,
  MAX_DIGEST_BYTES,
  MAX_REGIONS,
  MAX_RUN_BYTES,
  REGION_ENTRY_BYTES,
  SECTION_HEADER_BYTES,
  SectionType,
  STREAM_HEADER_FIXED_BYTES,
  STREAM_MAGIC,
  STREAM_VERSION,
} from "./stream_format.ts";
import type { StreamSource } from "./transport.ts";
import { clearPages } from "./zero_pages.ts";

/** Options for {@linkcode receiveStream}. */
export interface ReceiveOptions {
  /** Computes the destination's RAM digest, compared with the END section's. */
  digest(ram: RamAccess): Uint8Array | Promise<Uint8Array>;
  /** The destination's page size; the stream's must equal it. Default 4096. */
  pageSize?: number;
  /** Cap on all device-state bytes kept from the stream; default 64 MiB. */
  maxDeviceStateBytes?: number;
  /** Size of the read buffer for small sections; default 256 KiB. */
  bufferBytes?: number;
  /** Called at each iteration marker, for progress. */
  onIteration?: (iteration: number) => void;
}

/** Section counts by type. */
export interface SectionCounts {
  /** RAM page runs. */
  ram: number;
  /** Zero-page runs. */
  zero: number;
  /** Device-state sections. */
  deviceState: number;
  /** Iteration markers. */
  iteration: number;
  /** END markers (always 1 on success). */
  end: number;
}

/** What a verified stream carried. */
export interface ReceiveSummary {
  /** Sections by type. */
  sections: SectionCounts;
  /** Pages received with their bytes (a page sent twice counts twice). */
  pages: number;
  /** Pages received as zero runs. */
  zeroPages: number;
  /** Length of the stream in bytes. */
  bytes: number;
  /** Device-state chunks by device id, in stream order. */
  deviceStates: Map<string, Uint8Array[]>;
  /** How many iteration markers were seen. */
  iterations: number;
  /** The last iteration number seen, or `undefined`. */
  lastIteration: number | undefined;
  /** The verified digest from the END section. */
  digest: Uint8Array;
}

const NAMES: Record<number, string> = {
  [SectionType.RAM]: "RAM run",
  [SectionType.ZERO]: "Zero run",
  [SectionType.DEVICE_STATE]: "Device state",
  [SectionType.ITERATION]: "Iteration",
  [SectionType.END]: "END",
};
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a whole stream into `ram`. RAM pages are read from the source
 * straight into RAM views and checksummed there; every length and GPA is
 * checked against the destination's own layout before anything is read or
 * allocated. Resolves only after the END section's digest equals
 * `options.digest(ram)` and the stream has ended; on any failure it rejects
 * and the caller must discard the image. The caller owns and closes `source`.
 *
 * @param source The stream (a {@linkcode StreamChannel} from an accepted listener).
 * @param ram The destination's RAM; its layout must equal the source's.
 * @param options The digest function, page size and limits.
 * @returns What the stream carried.
 * @throws {StreamError} If the stream is malformed, corrupt, truncated, does
 *   not match the destination, the transport fails, or the digest differs.
 * @throws {RangeError} If the destination's own layout or page size is invalid.
 *
 * @example Load a stream file
 * ```ts
 * import { createHash } from "node:crypto";
 * import { arrayRam } from "./ram_access.ts";
 * import { connectEndpoint, listenEndpoint } from "./open_endpoint.ts";
 * import { receiveStream } from "./stream_reader.ts";
 * import { StreamWriter } from "./stream_writer.ts";
 * function sha256(ram: { view(gpa: bigint, n: number): Uint8Array }) {
 *   return createHash("sha256").update(ram.view(0n, 1 << 20)).digest();
 * }
 * const layout = [{ gpa: 0n, size: 1n << 20n }];
 * const src = arrayRam(layout);
 * src.view(0x3000n, 4).set([1, 2, 3, 4]);
 * const path = await Deno.makeTempFile();
 * {
 *   using file = await connectEndpoint(`file:${path}`);
 *   const w = new StreamWriter(file);
 *   await w.writeHeader(layout, 4096);
 *   await w.writePages(src, 0n, 256);
 *   await w.writeEnd(sha256(src));
 * }
 * const dst = arrayRam(layout);
 * {
 *   using file = await listenEndpoint(`file:${path}`).accept();
 *   const summary = await receiveStream(file, dst, { digest: sha256 });
 *   console.log(summary.pages, summary.zeroPages); // 1 255
 * }
 * await Deno.remove(path);
 * ```
 */
export async function receiveStream(
  source: StreamSource,
  ram: RamAccess,
  options: ReceiveOptions,
): Promise<ReceiveSummary> {
  const pageSize = options.pageSize ?? 4096;
  if (!isValidPageSize(pageSize)) {
    throw new RangeError(`Cannot receive a stream: bad page size ${pageSize}`);
  }
  const problem = layoutProblem(ram.layout, pageSize);
  if (problem !== undefined) throw new RangeError(`Cannot receive a stream: ${problem}`);
  const buf = new StreamBuffer(source, Math.max(options.bufferBytes ?? 256 << 10, 8192));
  await readStreamHeader(buf, ram.layout, pageSize);
  const loader = new SectionLoader(buf, ram, { ...options, pageSize });
  return await loader.run();
}

async function readStreamHeader(
  buf: StreamBuffer,
  layout: readonly RamRegionLayout[],
  pageSize: number,
): Promise<void> {
  const fixed = (await buf.take(STREAM_HEADER_FIXED_BYTES, "the stream header")).slice();
  const v = new DataView(fixed.buffer);
  if (!STREAM_MAGIC.every((b, i) => fixed[i] === b)) {
    throw new StreamError(0, "Bad magic: not a DVMM-MIG migration stream");
  }
  const version = v.getUint32(8, true);
  if (version !== STREAM_VERSION) {
    throw new StreamError(8, `Unsupported version ${version}, expected ${STREAM_VERSION}`);
  }
  const count = v.getUint32(16, true);
  if (count === 0 || count > MAX_REGIONS) {
    throw new StreamError(16, `Region count ${count} is not in 1 to ${MAX_REGIONS}`);
  }
  if (v.getUint32(20, true) !== 0) throw new StreamError(20, "Reserved header field is not zero");
  const table = await buf.take(count * REGION_ENTRY_BYTES + 4, "the stream header region table");
  const t = new DataView(table.buffer, table.byteOffset, table.length);
  const crc = crc32(table.subarray(0, table.length - 4), crc32(fixed));
  if (crc !== t.getUint32(table.length - 4, true)) {
    throw new StreamError(0, "Stream header checksum mismatch");
  }
  const streamPage = v.getUint32(12, true);
  if (streamPage !== pageSize) {
    throw new StreamError(
      12,
      `Page size mismatch: stream has ${streamPage}, destination has ${pageSize}`,
    );
  }
  if (count !== layout.length) {
    throw new StreamError(
      16,
      `Layout mismatch: stream has ${count} regions, destination has ${layout.length}`,
    );
  }
  for (let i = 0; i < count; i++) {
    const gpa = t.getBigUint64(i * REGION_ENTRY_BYTES, true);
    const size = t.getBigUint64(i * REGION_ENTRY_BYTES + 8, true);
    const own = layout[i];
    if (gpa !== own.gpa || size !== own.size) {
      throw new StreamError(
        STREAM_HEADER_FIXED_BYTES + i * REGION_ENTRY_BYTES,
        `Layout mismatch: region ${i} is 0x${size.toString(16)} bytes at GPA 0x${
          gpa.toString(16)
        } in the stream, 0x${own.size.toString(16)} at 0x${own.gpa.toString(16)} here`,
      );
    }
  }
}

// Applies sections one by one; #start is the offset of the current section.
class SectionLoader {
  #buf: StreamBuffer;
  #ram: RamAccess;
  #options: ReceiveOptions & { pageSize: number };
  #start = 0;
  #deviceBytes = 0;
  #summary: ReceiveSummary = {
    sections: { ram: 0, zero: 0, deviceState: 0, iteration: 0, end: 0 },
    pages: 0,
    zeroPages: 0,
    bytes: 0,
    deviceStates: new Map(),
    iterations: 0,
    lastIteration: undefined,
    digest: new Uint8Array(0),
  };

  constructor(buf: StreamBuffer, ram: RamAccess, options: ReceiveOptions & { pageSize: number }) {
    this.#buf = buf;
    this.#ram = ram;
    this.#options = options;
  }

  async run(): Promise<ReceiveSummary> {
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
      let crc: number;
      switch (h.type) {
        case SectionType.RAM:
          crc = await this.#ramRun(h.arg, h.length, seed);
          break;
        case SectionType.ZERO:
          crc = seed;
          this.#checkRun(h.arg, h.length, "Zero run", Number.MAX_SAFE_INTEGER);
          break;
        case SectionType.DEVICE_STATE:
          crc = await this.#deviceState(h.arg, h.length, seed);
          break;
        case SectionType.ITERATION:
          if (h.length !== 0n) this.#fail(`Iteration section has length ${h.length}, expected 0`);
          crc = seed;
          break;
        default:
          if (h.arg !== 0n || h.length === 0n || h.length > BigInt(MAX_DIGEST_BYTES)) {
            this.#fail(`END section digest length ${h.length} is not in 1 to ${MAX_DIGEST_BYTES}`);
          }
          this.#summary.digest = (await buf.take(Number(h.length), "the END section")).slice();
          crc = crc32(this.#summary.digest, seed);
      }
      const trailer = buf.takeNow(4) ?? await buf.take(4, `the ${name} section checksum`);
      if (new DataView(trailer.buffer, trailer.byteOffset, 4).getUint32(0, true) !== crc) {
        this.#fail(`${name} section checksum mismatch`);
      }
      // Sections without payload take effect only once their checksum holds.
      if (h.type === SectionType.ZERO) this.#zeroRun(h.arg, h.length);
      if (h.type === SectionType.ITERATION) this.#iteration(h.arg);
      if (h.type === SectionType.END) return await this.#end();
    }
  }

  async #end(): Promise<ReceiveSummary> {
    const s = this.#summary;
    s.sections.end++;
    const endStart = this.#start;
    this.#start = this.#buf.offset;
    if (!(await this.#buf.atEnd())) this.#fail("Data follows the END section");
    s.bytes = this.#buf.offset;
    const ours = await this.#options.digest(this.#ram);
    if (ours.length !== s.digest.length || !ours.every((b, i) => b === s.digest[i])) {
      this.#start = endStart;
      this.#fail("RAM digest mismatch: the received image differs from the source's");
    }
    return s;
  }

  async #ramRun(gpa: bigint, length: bigint, seed: number): Promise<number> {
    this.#checkRun(gpa, length, "RAM run", MAX_RUN_BYTES);
    const view = this.#ram.view(gpa, Number(length));
    if (!this.#buf.readIntoNow(view)) await this.#buf.readInto(view, "a RAM run");
    this.#summary.sections.ram++;
    this.#summary.pages += view.length / this.#options.pageSize;
    return crc32(view, seed);
  }

  #zeroRun(gpa: bigint, length: bigint): void {
    const pageSize = this.#options.pageSize;
    const chunk = BigInt(MAX_RUN_BYTES);
    for (let off = 0n; off < length; off += chunk) {
      const n = Number(length - off < chunk ? length - off : chunk);
      clearPages(this.#ram.view(gpa + off, n), pageSize);
    }
    this.#summary.sections.zero++;
    this.#summary.zeroPages += Number(length) / pageSize;
  }

  async #deviceState(idLength: bigint, length: bigint, seed: number): Promise<number> {
    if (idLength === 0n || idLength > BigInt(MAX_DEVICE_ID_BYTES) || idLength > length) {
      this.#fail(`Device id length ${idLength} is not in 1 to ${MAX_DEVICE_ID_BYTES}`);
    }
    const limit = this.#options.maxDeviceStateBytes ?? 64 << 20;
    const stateLength = length - idLength;
    if (stateLength > BigInt(limit - this.#deviceBytes)) {
      this.#fail(
        `Device state of ${stateLength} bytes exceeds the remaining limit of ${
          limit - this.#deviceBytes
        }`,
      );
    }
    const payload = new Uint8Array(Number(length));
    await this.#buf.readInto(payload, "a device state section");
    const crc = crc32(payload, seed);
    const idBytes = payload.subarray(0, Number(idLength));
    const state = payload.subarray(Number(idLength));
    let id = "";
    try {
      id = utf8.decode(idBytes);
    } catch {
      this.#fail("Device id is not valid UTF-8");
    }
    this.#deviceBytes += state.length;
    // Recorded before the checksum is checked; a mismatch rejects the whole stream.
    const chunks = this.#summary.deviceStates.get(id) ?? [];
    chunks.push(state);
    this.#summary.deviceStates.set(id, chunks);
    this.#summary.sections.deviceState++;
    return crc;
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
    this.#options.onIteration?.(n);
  }

  #checkRun(gpa: bigint, length: bigint, name: string, max: number): void {
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
  }

  #fail(reason: string): never {
    throw new StreamError(this.#start, reason);
  }
}
