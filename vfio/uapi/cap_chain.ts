/**
 * The VFIO capability chain walker (`struct vfio_info_cap_header`).
 *
 * A chain lives inside an info struct: `cap_offset` names the first header,
 * and each header's `next` is an offset from the start of the containing
 * struct (0 ends the chain). The walker treats the bytes as untrusted: every
 * header must lie wholly inside the buffer, past the fixed struct, and each
 * `next` must point forward, so a malformed chain is rejected and never loops.
 *
 * @module
 */

/** `sizeof(struct vfio_info_cap_header)`. */
export const CAP_HEADER_SIZE = 8;

/** One capability found in a chain. */
export interface RawCap {
  /** The cap id (`header.id`). */
  readonly id: number;
  /** The cap version (`header.version`). */
  readonly version: number;
  /** The offset of the header from the start of the containing struct. */
  readonly offset: number;
  /** The cap's bytes, header included, up to the next cap or the buffer end. */
  readonly bytes: Uint8Array;
}

/** A capability chain that cannot be walked safely. */
export class CapChainError extends SyntaxError {
  /** The offset at which the chain went wrong. */
  readonly offset: number;

  /**
   * Creates the error.
   *
   * @param offset The offending offset.
   * @param reason Why the chain is malformed.
   */
  constructor(offset: number, reason: string) {
    super(`Malformed capability chain at offset ${offset}: ${reason}`);
    this.name = "CapChainError";
    this.offset = offset;
  }
}

/**
 * Walks a capability chain.
 *
 * @param buf The whole info struct as returned by the kernel (argsz bytes).
 * @param first The struct's `cap_offset` (0 means no chain).
 * @param minOffset The size of the fixed struct; no cap may start before it.
 * @returns The caps in chain order.
 * @throws {CapChainError} If a header lies outside the buffer, overlaps the
 *   fixed struct, or a `next` points backwards or to itself (a cycle).
 *
 * @example Walk a one-cap chain
 * ```ts
 * import { walkCapChain } from "./cap_chain.ts";
 * const buf = new Uint8Array(36);
 * const v = new DataView(buf.buffer);
 * v.setUint16(24, 3, true); // id DMA_AVAIL
 * v.setUint16(26, 1, true); // version
 * v.setUint32(28, 0, true); // next: end
 * console.log(walkCapChain(buf, 24, 24).map((c) => c.id)); // [3]
 * ```
 */
export function walkCapChain(
  buf: Uint8Array,
  first: number,
  minOffset: number,
): RawCap[] {
  const caps: RawCap[] = [];
  if (first === 0) return caps;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let offset = first;
  let previous = -1;
  // Each step moves strictly forward inside a finite buffer, so the loop ends.
  while (offset !== 0) {
    if (offset < minOffset) {
      throw new CapChainError(
        offset,
        previous < 0
          ? `cap_offset points into the fixed struct (< ${minOffset})`
          : `next points into the fixed struct (< ${minOffset})`,
      );
    }
    if (offset <= previous) {
      throw new CapChainError(
        offset,
        offset === previous
          ? "next points to itself (a cycle)"
          : `next points backwards (from ${previous})`,
      );
    }
    if (offset + CAP_HEADER_SIZE > buf.byteLength) {
      throw new CapChainError(
        offset,
        `header runs past the buffer end (${buf.byteLength} bytes)`,
      );
    }
    const id = v.getUint16(offset, true);
    const version = v.getUint16(offset + 2, true);
    const next = v.getUint32(offset + 4, true);
    if (next !== 0 && next <= offset) {
      throw new CapChainError(
        next,
        next === offset
          ? "next points to itself (a cycle)"
          : `next points backwards (from ${offset})`,
      );
    }
    if (next > buf.byteLength) {
      throw new CapChainError(
        next,
        `next points past the buffer end (${buf.byteLength} bytes)`,
      );
    }
    const end = next === 0 ? buf.byteLength : next;
    caps.push({ id, version, offset, bytes: buf.slice(offset, end) });
    previous = offset;
    offset = next;
  }
  return caps;
}

/**
 * Writes a cap header.
 *
 * @param v A view of the containing struct.
 * @param offset Where the header goes.
 * @param header The id, version and next offset.
 *
 * @example
 * ```ts
 * import { writeCapHeader } from "./cap_chain.ts";
 * const v = new DataView(new ArrayBuffer(16));
 * writeCapHeader(v, 0, { id: 2, version: 1, next: 0 });
 * ```
 */
export function writeCapHeader(
  v: DataView,
  offset: number,
  header: { id: number; version: number; next: number },
): void {
  v.setUint16(offset, header.id, true);
  v.setUint16(offset + 2, header.version, true);
  v.setUint32(offset + 4, header.next, true);
}
