// Shared helpers for the stream and transport tests (not part of the API).

import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { encodeSectionHeader } from "../migration/stream/format.ts";
import { arrayRam, type RamAccess, type RamRegionLayout } from "../migration/stream/ram.ts";
import type { StreamSink, StreamSource } from "../migration/transport/channel.ts";
import { StreamWriter } from "../migration/stream/writer.ts";
import { guestAddress as g } from "../sys/address.ts";
import { fillSeeded } from "./_random.ts";

export const PAGE = 4096;

/** Two regions with a gap between them. */
export const LAYOUT: readonly RamRegionLayout[] = [
  { gpa: g(0n), size: 64n * 4096n },
  { gpa: g(0x100000n), size: 32n * 4096n },
];

/** SHA-256 over every region in order. */
export function sha256Ram(ram: RamAccess): Uint8Array {
  const h = createHash("sha256");
  for (const r of ram.layout) h.update(ram.view(r.gpa, Number(r.size)));
  return new Uint8Array(h.digest());
}

/** RAM filled with bytes from `seed`; with `halfZero`, every other page is zero. */
export function randomRam(
  layout: readonly RamRegionLayout[],
  halfZero = false,
  seed = 1,
): RamAccess {
  const ram = arrayRam(layout);
  for (const r of layout) {
    const v = ram.view(r.gpa, Number(r.size));
    fillSeeded(v, seed + Number(r.gpa & 0xffffn));
    if (halfZero) { for (let o = 0; o < v.length; o += 2 * PAGE) v.fill(0, o, o + PAGE); }
  }
  return ram;
}

/** Whether two RAMs with the same layout hold the same bytes. */
export function sameRam(a: RamAccess, b: RamAccess): boolean {
  return a.layout.every((r) => {
    const x = a.view(r.gpa, Number(r.size));
    const y = b.view(r.gpa, Number(r.size));
    return x.length === y.length && x.every((v, i) => v === y[i]);
  });
}

/** A sink that keeps a copy of everything written. */
export class MemorySink implements StreamSink {
  #chunks: Uint8Array[] = [];
  writes = 0;
  write(bytes: Uint8Array): Promise<void> {
    this.#chunks.push(bytes.slice());
    this.writes++;
    return Promise.resolve();
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of this.#chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** A source over bytes, handing out at most `chunk` bytes a read. */
export class MemorySource implements StreamSource {
  #bytes: Uint8Array;
  #pos = 0;
  #chunk: number;
  constructor(bytes: Uint8Array, chunk = 1 << 30) {
    this.#bytes = bytes;
    this.#chunk = chunk;
  }
  read(into: Uint8Array): Promise<number | null> {
    if (this.#pos >= this.#bytes.length) return Promise.resolve(null);
    const n = Math.min(into.length, this.#chunk, this.#bytes.length - this.#pos);
    into.set(this.#bytes.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return Promise.resolve(n);
  }
}

/** Section offsets of the stream built by {@linkcode sampleStream}. */
export interface SampleOffsets {
  iteration: number;
  ram: number;
  zero: number;
  device: number;
  complete: number;
  end: number;
  length: number;
}

/**
 * One section of every type: header, iteration 1, a RAM run of pages 0-1
 * (random), a zero run of page 2, device state "dev0", COMPLETE, END with
 * the digest of a RAM that is zero elsewhere.
 */
export async function sampleStream(): Promise<[Uint8Array, SampleOffsets]> {
  const src = arrayRam(LAYOUT);
  fillSeeded(src.view(g(0n), 2 * PAGE), 2);
  const sink = new MemorySink();
  const w = new StreamWriter(sink);
  await w.writeHeader(src.layout, PAGE);
  const iteration = w.bytesWritten;
  await w.writeIteration(1);
  const ram = w.bytesWritten;
  await w.writeRamRun(g(0n), src.view(g(0n), 2 * PAGE));
  const zero = w.bytesWritten;
  await w.writeZeroRun(g(2n * BigInt(PAGE)), 1);
  const device = w.bytesWritten;
  await w.writeDeviceState("dev0", new Uint8Array([1, 2, 3, 4, 5]));
  const complete = w.bytesWritten;
  await w.writeComplete();
  const end = w.bytesWritten;
  await w.writeEnd(sha256Ram(src));
  return [sink.bytes(), { iteration, ram, zero, device, complete, end, length: w.bytesWritten }];
}

/** A section with valid header and trailer CRCs. */
export function section(
  type: number,
  arg: bigint,
  length: bigint,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(28 + payload.length + 4);
  const seed = encodeSectionHeader(out, 0, { type, flags: 0, arg, length });
  out.set(payload, 28);
  new DataView(out.buffer).setUint32(28 + payload.length, crc32(payload, seed), true);
  return out;
}

/** The parts, end to end. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
