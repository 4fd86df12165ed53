/**
 * The migration stream format, version 5: constants, the stream header codec
 * and the section header codec. See `STREAM.md` for the byte layout. All
 * integers are little-endian; checksums are CRC-32 (`node:zlib` `crc32`).
 *
 * @module
 */

import { crc32 } from "node:zlib";
/**
 * A region as the stream header carries it: a GPA and a size (the codecs take
 * plain numbers; `RamRegionLayout`'s branded GPA fits too).
 */
export interface LayoutEntry {
  /** Guest-physical address of the first byte. */
  readonly gpa: bigint;
  /** Size in bytes. */
  readonly size: bigint;
}

/** The first 8 bytes of every stream: `DVMM-MIG`. */
export const STREAM_MAGIC: Uint8Array = new TextEncoder().encode("DVMM-MIG");
/** The format version this module writes and reads. */
export const STREAM_VERSION = 5;
/** Bytes of the stream header before the region table: magic, version, page size, count, reserved. */
export const STREAM_HEADER_FIXED_BYTES = 24;
/** Bytes of one region-table entry: GPA and size, both u64. */
export const REGION_ENTRY_BYTES = 16;
/** Bytes of a section header: type, flags, arg, length, header CRC. */
export const SECTION_HEADER_BYTES = 28;
/** Bytes of a section trailer: the CRC over the section header and payload. */
export const SECTION_TRAILER_BYTES = 4;
/** Most regions a layout may have. */
export const MAX_REGIONS = 256;
/** Largest RAM run payload a stream may carry. */
export const MAX_RUN_BYTES: number = 64 * 1024 * 1024;
/** Largest RAM digest in an END section. */
export const MAX_DIGEST_BYTES = 64;
/** Longest device id, in UTF-8 bytes. */
export const MAX_DEVICE_ID_BYTES = 255;
/**
 * What each device-state section costs against the destination's
 * device-state limit besides its id and state bytes: a flood of empty states
 * is bounded like one large state.
 */
export const DEVICE_CHUNK_OVERHEAD_BYTES = 64;
/** Largest device pre-copy section payload (id and data): 16 MiB. */
export const MAX_DEVICE_PRECOPY_BYTES: number = 16 << 20;
/** The destination's default limit on device-state bytes, overhead included: 64 MiB. */
export const DEFAULT_DEVICE_STATE_BYTES: number = 64 << 20;
/** The destination's default limit on device-state sections in a stream. */
export const DEFAULT_DEVICE_STATE_CHUNKS = 4096;
/** The destination's default limit on device-state sections for one device. */
export const DEFAULT_DEVICE_STATE_CHUNKS_PER_DEVICE = 1024;
/** Smallest and largest page sizes (powers of two). */
export const MIN_PAGE_SIZE = 512;
/** Largest page size. */
export const MAX_PAGE_SIZE: number = 1 << 30;

/** Section type codes (the `type` field of a section header). */
export const SectionType = {
  /** RAM page run: arg = GPA, length = payload bytes (the pages). */
  RAM: 1,
  /** Zero-page run: arg = GPA, length = bytes of zero pages; no payload. */
  ZERO: 2,
  /** Device state: arg = id length; payload = UTF-8 id then opaque state. */
  DEVICE_STATE: 3,
  /** Iteration marker: arg = iteration number; no payload. */
  ITERATION: 4,
  /** End marker: payload = the source's RAM digest. */
  END: 5,
  /**
   * Sparse run: arg = GPA; payload = page count (u32), reserved (u32), a
   * bitmap of the pages sent (u64 words), then those pages; the others are zero.
   */
  SPARSE: 6,
  /**
   * Image complete: every page and device state of the image has been sent;
   * only END follows. arg = 0, no payload. The destination answers it at once
   * (it now holds the whole image) and starts its digest while the source
   * computes its own.
   */
  COMPLETE: 7,
  /**
   * Compressed RAM run: arg = GPA; payload = codec (u32), reserved (u32), the
   * run's bytes L (u64), then the compressed pages, fewer than L bytes, that
   * decompress to exactly L bytes: the run [GPA, GPA + L).
   */
  COMPRESSED: 8,
  /**
   * Device pre-copy data (QEMU's `vfio_save_iterate`): arg = id length;
   * payload = UTF-8 id then the next bytes of the device's `PRE_COPY` data
   * stream (empty in the first section of a device, which announces it).
   */
  DEVICE_PRECOPY: 9,
  /**
   * A device's initial pre-copy data is all sent (QEMU's
   * `VFIO_MIG_FLAG_DEV_INIT_DATA_SENT`): arg = id length; payload = the UTF-8
   * id. Once every announced device sent it, the destination answers
   * "switchover ack".
   */
  DEVICE_INIT_DATA_SENT: 10,
} as const;

/** Bytes before a compressed run's compressed data: codec, reserved, run bytes. */
export const COMPRESSED_HEAD_BYTES = 16;

/** Codec codes of a compressed run (its first payload field). */
export const CompressionCodec = {
  /** Zstandard: one or more whole zstd frames (RFC 8878). */
  ZSTD: 1,
} as const;

/** A compression codec code. */
export type CompressionCodec = typeof CompressionCodec[keyof typeof CompressionCodec];

/** Bytes before a sparse run's bitmap: page count (u32) and reserved (u32). */
export const SPARSE_HEAD_BYTES = 8;

/**
 * The bitmap bytes of a sparse run of `pages` pages (u64 words).
 *
 * @param pages Pages in the run.
 * @returns Bytes.
 *
 * @example
 * ```ts
 * import { sparseBitmapBytes } from "./format.ts";
 * console.log(sparseBitmapBytes(1024)); // 128
 * ```
 */
export function sparseBitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** A section type code. */
export type SectionType = typeof SectionType[keyof typeof SectionType];

/** The decoded fields of a section header. */
export interface SectionHeader {
  /** The section type code (not yet validated). */
  type: number;
  /** Reserved, must be 0. */
  flags: number;
  /** Type-specific argument (GPA, iteration number, id length). */
  arg: bigint;
  /** Type-specific length in bytes. */
  length: bigint;
}

/**
 * Checks a layout for the stream: 1 to {@linkcode MAX_REGIONS} regions,
 * page-aligned, non-empty, ascending and not overlapping.
 *
 * @param layout The regions.
 * @param pageSize The page size in bytes.
 * @returns `undefined` if valid, otherwise the reason.
 *
 * @example Reject an unaligned region
 * ```ts
 * import { layoutProblem } from "./format.ts";
 * console.log(layoutProblem([{ gpa: 0x800n, size: 0x1000n }], 4096));
 * // "Region 0 at GPA 0x800 is not page-aligned"
 * ```
 */
export function layoutProblem(
  layout: readonly LayoutEntry[],
  pageSize: number,
): string | undefined {
  if (layout.length === 0 || layout.length > MAX_REGIONS) {
    return `Layout has ${layout.length} regions, expected 1 to ${MAX_REGIONS}`;
  }
  const page = BigInt(pageSize);
  let end = 0n;
  for (const [i, r] of layout.entries()) {
    if (r.gpa % page !== 0n || r.size % page !== 0n) {
      return `Region ${i} at GPA 0x${r.gpa.toString(16)} is not page-aligned`;
    }
    if (r.size === 0n) return `Region ${i} at GPA 0x${r.gpa.toString(16)} is empty`;
    if (i > 0 && r.gpa < end) return `Region ${i} overlaps or precedes region ${i - 1}`;
    end = r.gpa + r.size;
    if (end > 0xffff_ffff_ffff_ffffn) return `Region ${i} ends beyond 2^64`;
  }
  return undefined;
}

/**
 * Whether a page size is a power of two in range.
 *
 * @param pageSize The page size in bytes.
 * @returns `true` if the format accepts it.
 *
 * @example
 * ```ts
 * import { isValidPageSize } from "./format.ts";
 * console.log(isValidPageSize(4096), isValidPageSize(3000)); // true false
 * ```
 */
export function isValidPageSize(pageSize: number): boolean {
  return Number.isInteger(pageSize) && pageSize >= MIN_PAGE_SIZE &&
    pageSize <= MAX_PAGE_SIZE && (pageSize & (pageSize - 1)) === 0;
}

/**
 * Encodes the stream header: magic, version, page size, region table, CRC.
 *
 * @param layout The source's RAM layout.
 * @param pageSize The page size in bytes.
 * @returns The header bytes.
 * @throws {RangeError} If the page size or layout is invalid.
 *
 * @example
 * ```ts
 * import { encodeStreamHeader } from "./format.ts";
 * const h = encodeStreamHeader([{ gpa: 0n, size: 1n << 20n }], 4096);
 * console.log(h.length); // 24 + 16 + 4 = 44
 * ```
 */
export function encodeStreamHeader(
  layout: readonly LayoutEntry[],
  pageSize: number,
): Uint8Array {
  if (!isValidPageSize(pageSize)) {
    throw new RangeError(`Cannot encode stream header: bad page size ${pageSize}`);
  }
  const problem = layoutProblem(layout, pageSize);
  if (problem !== undefined) throw new RangeError(`Cannot encode stream header: ${problem}`);
  const size = streamHeaderBytes(layout.length);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  out.set(STREAM_MAGIC, 0);
  v.setUint32(8, STREAM_VERSION, true);
  v.setUint32(12, pageSize, true);
  v.setUint32(16, layout.length, true);
  v.setUint32(20, 0, true);
  for (const [i, r] of layout.entries()) {
    v.setBigUint64(STREAM_HEADER_FIXED_BYTES + i * REGION_ENTRY_BYTES, r.gpa, true);
    v.setBigUint64(STREAM_HEADER_FIXED_BYTES + i * REGION_ENTRY_BYTES + 8, r.size, true);
  }
  v.setUint32(size - 4, crc32(out.subarray(0, size - 4)), true);
  return out;
}

/**
 * The size of a stream header with `regions` regions, CRC included.
 *
 * @param regions The region count.
 * @returns Bytes.
 *
 * @example
 * ```ts
 * import { streamHeaderBytes } from "./format.ts";
 * console.log(streamHeaderBytes(2)); // 60
 * ```
 */
export function streamHeaderBytes(regions: number): number {
  return STREAM_HEADER_FIXED_BYTES + regions * REGION_ENTRY_BYTES + 4;
}

/**
 * Writes a section header, with its header CRC, into `out` at `offset`.
 *
 * @param out The target; needs {@linkcode SECTION_HEADER_BYTES} bytes at `offset`.
 * @param offset Where the header starts.
 * @param header The fields; `flags` is written as given.
 * @returns The CRC-32 of the whole 28-byte header, to seed the trailer CRC.
 *
 * @example
 * ```ts
 * import { encodeSectionHeader, SectionType } from "./format.ts";
 * const b = new Uint8Array(28);
 * encodeSectionHeader(b, 0, { type: SectionType.ITERATION, flags: 0, arg: 3n, length: 0n });
 * ```
 */
export function encodeSectionHeader(
  out: Uint8Array,
  offset: number,
  header: SectionHeader,
): number {
  const v = new DataView(out.buffer, out.byteOffset + offset, SECTION_HEADER_BYTES);
  v.setUint32(0, header.type, true);
  v.setUint32(4, header.flags, true);
  v.setBigUint64(8, header.arg, true);
  v.setBigUint64(16, header.length, true);
  const head = out.subarray(offset, offset + SECTION_HEADER_BYTES);
  v.setUint32(24, crc32(head.subarray(0, 24)), true);
  return crc32(head);
}

/**
 * Decodes a section header and checks its header CRC.
 *
 * @param bytes At least {@linkcode SECTION_HEADER_BYTES} bytes.
 * @returns The fields, or `undefined` if the header CRC does not match.
 *
 * @example
 * ```ts
 * import { decodeSectionHeader, encodeSectionHeader } from "./format.ts";
 * const b = new Uint8Array(28);
 * encodeSectionHeader(b, 0, { type: 4, flags: 0, arg: 3n, length: 0n });
 * console.log(decodeSectionHeader(b)?.arg); // 3n
 * ```
 */
export function decodeSectionHeader(bytes: Uint8Array): SectionHeader | undefined {
  const v = new DataView(bytes.buffer, bytes.byteOffset, SECTION_HEADER_BYTES);
  if (crc32(bytes.subarray(0, 24)) !== v.getUint32(24, true)) return undefined;
  return {
    type: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    arg: v.getBigUint64(8, true),
    length: v.getBigUint64(16, true),
  };
}

/**
 * Finds the region that wholly holds `[gpa, gpa + length)`.
 *
 * @param layout The regions.
 * @param gpa The first byte.
 * @param length The byte count.
 * @returns The region index, `-1` if `gpa` is in no region, `-2` if the range
 *   starts in a region but runs past its end.
 *
 * @example
 * ```ts
 * import { findRegion } from "./format.ts";
 * const layout = [{ gpa: 0n, size: 0x2000n }];
 * console.log(findRegion(layout, 0x1000n, 0x1000n), findRegion(layout, 0x1000n, 0x2000n)); // 0 -2
 * ```
 */
export function findRegion(
  layout: readonly LayoutEntry[],
  gpa: bigint,
  length: bigint,
): number {
  for (let i = 0; i < layout.length; i++) {
    const r = layout[i];
    if (gpa >= r.gpa && gpa < r.gpa + r.size) return gpa + length <= r.gpa + r.size ? i : -2;
  }
  return -1;
}
