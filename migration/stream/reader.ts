/**
 * The receiving side of the stream format: {@linkcode receiveStream} loads a
 * stream into the destination's RAM, treating every byte as untrusted.
 *
 * @module
 */

import { SectionLoader } from "./_section_loader.ts";
import { StreamBuffer } from "./_stream_buffer.ts";
import { readStreamHeader } from "./_header_reader.ts";
import type { RamAccess } from "./ram.ts";
import type { ReceiveOptions, ReceiveSummary } from "./receive_types.ts";
import {
  isValidPageSize,
  layoutProblem,
  MAX_REGIONS,
  MAX_RUN_BYTES,
  SPARSE_HEAD_BYTES,
  sparseBitmapBytes,
  streamHeaderBytes,
} from "./format.ts";
import type { StreamSource } from "../transport/channel.ts";
import type { WrittenPages } from "./_written_pages.ts";

export type { ReceiveOptions, ReceiveSummary, SectionCounts } from "./receive_types.ts";

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
 * import { guestAddress } from "../../sys/address.ts";
 * import { arrayRam, type RamAccess } from "./ram.ts";
 * import { connectEndpoint, listenEndpoint } from "../transport/open.ts";
 * import { receiveStream } from "./reader.ts";
 * import { StreamWriter } from "./writer.ts";
 * function sha256(ram: RamAccess) {
 *   return createHash("sha256").update(ram.view(guestAddress(0n), 1 << 20)).digest();
 * }
 * const layout = [{ gpa: 0n, size: 1n << 20n }];
 * const src = arrayRam(layout);
 * src.view(guestAddress(0x3000n), 4).set([1, 2, 3, 4]);
 * const path = await Deno.makeTempFile();
 * {
 *   using file = await connectEndpoint(`file:${path}`);
 *   const w = new StreamWriter(file);
 *   await w.writeHeader(src.layout, 4096);
 *   await w.writePages(src, guestAddress(0n), 256);
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
  return await (await openStream(source, ram, options)).receive();
}

/**
 * A stream whose header has been read and checked against the destination,
 * and nothing else: the destination's RAM is still untouched. A destination
 * that listens for a source can drop a peer that fails before this point and
 * wait for the next one.
 */
export interface IncomingStream {
  /** Reads the rest of the stream into RAM, as {@linkcode receiveStream} does. */
  receive(): Promise<ReceiveSummary>;
}

/**
 * Reads and checks a stream's header (magic, version, CRC, page size and
 * layout against the destination's own) without touching RAM.
 *
 * @param source The stream.
 * @param ram The destination's RAM.
 * @param options As for {@linkcode receiveStream}.
 * @returns The stream, ready to receive.
 * @throws {StreamError} If the header is malformed, truncated or does not match.
 * @throws {RangeError} If the destination's own layout or page size is invalid.
 *
 * @example Check a header before committing to a peer
 * ```ts ignore
 * const incoming = await openStream(channel, ram, { digest });
 * const summary = await incoming.receive();
 * ```
 */
export function openStream(
  source: StreamSource,
  ram: RamAccess,
  options: ReceiveOptions,
): Promise<IncomingStream> {
  return openStreamSharing(source, ram, options);
}

/**
 * As {@linkcode openStream}, with a written-pages map (`zeroed`) shared
 * with the parallel channels of the same migration, which fill the same
 * RAM.
 *
 * @param source The stream.
 * @param ram The destination's RAM.
 * @param options As for {@linkcode receiveStream}, and the shared map.
 * @returns The stream, ready to receive.
 * @throws {StreamError} If the header is malformed, truncated or does not match.
 * @throws {RangeError} If the destination's own layout or page size is invalid.
 *
 * @example
 * ```ts ignore
 * const written = new WrittenPages(ram.layout, 4096);
 * const incoming = await openStreamSharing(channel, ram, { digest, zeroed: true, written });
 * ```
 */
export async function openStreamSharing(
  source: StreamSource,
  ram: RamAccess,
  options: ReceiveOptions & { written?: WrittenPages },
): Promise<IncomingStream> {
  const pageSize = options.pageSize ?? 4096;
  if (!isValidPageSize(pageSize)) {
    throw new RangeError(`Cannot receive a stream: bad page size ${pageSize}`);
  }
  const problem = layoutProblem(ram.layout, pageSize);
  if (problem !== undefined) throw new RangeError(`Cannot receive a stream: ${problem}`);
  // The buffer holds the largest field ever taken whole: the region table,
  // a sparse run's head and bitmap, or one page.
  const largest = Math.max(
    8192,
    streamHeaderBytes(MAX_REGIONS),
    SPARSE_HEAD_BYTES + sparseBitmapBytes(MAX_RUN_BYTES / pageSize),
    pageSize,
  );
  const buf = new StreamBuffer(source, Math.max(options.bufferBytes ?? 256 << 10, largest));
  await readStreamHeader(buf, ram.layout, pageSize);
  const loader = new SectionLoader(buf, ram, { ...options, pageSize });
  let started = false;
  return {
    receive: () => {
      if (started) return Promise.reject(new TypeError("Cannot receive a stream twice"));
      started = true;
      return loader.run();
    },
  };
}
