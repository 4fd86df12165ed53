// Frames sections onto a sink: small sections are copied into one batch
// buffer and sent in writes of up to its size; large payloads are written in
// place (zero-copy) after the batched header. Every sink write is awaited.

import { crc32 } from "node:zlib";
import { encodeSectionHeader, SECTION_HEADER_BYTES, SECTION_TRAILER_BYTES } from "./format.ts";
import type { StreamSink } from "../transport/channel.ts";

// Parts up to this size before a large payload are copied into the batch.
const SMALL_PART_BYTES = 16 * 1024;

export class SectionFramer {
  #sink: StreamSink;
  #batch: Uint8Array;
  #batchView: DataView;
  #used = 0;
  #bytes = 0;
  #direct: number;

  constructor(sink: StreamSink, batchBytes: number) {
    this.#sink = sink;
    this.#batch = new Uint8Array(batchBytes);
    this.#batchView = new DataView(this.#batch.buffer);
    this.#direct = batchBytes / 4;
  }

  /** Stream bytes framed so far, batched or sent. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Payloads at least this long are written in place. */
  get directBytes(): number {
    return this.#direct;
  }

  // Returns a promise only when it had to wait for the sink; small sections
  // that fit the batch cost no await.
  section(
    type: number,
    arg: bigint,
    length: bigint,
    parts: Uint8Array[],
  ): Promise<void> | undefined {
    let payload = 0;
    for (const p of parts) payload += p.length;
    const framing = SECTION_HEADER_BYTES + SECTION_TRAILER_BYTES;
    if (payload < this.#direct && this.#used + framing + payload <= this.#batch.length) {
      this.#encodeSmall(type, arg, length, parts, payload);
      return;
    }
    return this.#sectionSlow(type, arg, length, parts, payload);
  }

  async #sectionSlow(
    type: number,
    arg: bigint,
    length: bigint,
    parts: Uint8Array[],
    payload: number,
  ): Promise<void> {
    const small = payload < this.#direct;
    const framing = SECTION_HEADER_BYTES + SECTION_TRAILER_BYTES;
    // Leading small parts (a sparse run's bitmap) ride in the batch with the header.
    let lead = 0;
    let leadBytes = 0;
    while (lead < parts.length - 1 && leadBytes + parts[lead].length <= SMALL_PART_BYTES) {
      leadBytes += parts[lead++].length;
    }
    const room = framing + (small ? payload : leadBytes);
    if (this.#used + room > this.#batch.length) await this.flush();
    if (small) return this.#encodeSmall(type, arg, length, parts, payload);
    // Large payload: header (and small leading parts) into the batch, flush,
    // then the rest of the payload itself (zero-copy).
    let crc = encodeSectionHeader(this.#batch, this.#used, { type, flags: 0, arg, length });
    this.#used += SECTION_HEADER_BYTES;
    for (let i = 0; i < lead; i++) {
      this.#batch.set(parts[i], this.#used);
      crc = crc32(this.#batch.subarray(this.#used, this.#used + parts[i].length), crc);
      this.#used += parts[i].length;
    }
    for (let i = lead; i < parts.length; i++) crc = crc32(parts[i], crc);
    await this.flush();
    for (let i = lead; i < parts.length; i++) await this.#sink.write(parts[i]);
    this.#trailer(crc, payload);
  }

  #encodeSmall(
    type: number,
    arg: bigint,
    length: bigint,
    parts: Uint8Array[],
    payload: number,
  ): void {
    const batch = this.#batch;
    let crc = encodeSectionHeader(batch, this.#used, { type, flags: 0, arg, length });
    this.#used += SECTION_HEADER_BYTES;
    for (const p of parts) {
      batch.set(p, this.#used);
      // Checksum the copy, not the source: guest RAM may change under us.
      crc = crc32(batch.subarray(this.#used, this.#used + p.length), crc);
      this.#used += p.length;
    }
    this.#trailer(crc, payload);
  }

  #trailer(crc: number, payload: number): void {
    this.#batchView.setUint32(this.#used, crc, true);
    this.#used += SECTION_TRAILER_BYTES;
    this.#bytes += SECTION_HEADER_BYTES + payload + SECTION_TRAILER_BYTES;
  }

  async put(bytes: Uint8Array): Promise<void> {
    if (this.#used + bytes.length > this.#batch.length) await this.flush();
    if (bytes.length > this.#batch.length) await this.#sink.write(bytes);
    else {
      this.#batch.set(bytes, this.#used);
      this.#used += bytes.length;
    }
    this.#bytes += bytes.length;
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const n = this.#used;
    this.#used = 0;
    await this.#sink.write(this.#batch.subarray(0, n));
  }
}
