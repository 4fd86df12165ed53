/**
 * Codec for `struct vfio_iommu_type1_info` and its three capabilities:
 * `vfio_iommu_type1_info_cap_iova_range`, `vfio_iommu_type1_info_cap_migration`
 * and `vfio_iommu_type1_info_dma_avail`.
 *
 * @module
 */

import {
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
} from "../constants.ts";
import { CapChainError, type RawCap, walkCapChain, writeCapHeader } from "./cap_chain.ts";

/** `sizeof(struct vfio_iommu_type1_info)`: 24, with 4 bytes of tail padding. */
export const IOMMU_INFO_SIZE = 24;
/** The kernel's `minsz` for `VFIO_IOMMU_GET_INFO` (`offsetofend(iova_pgsizes)`). */
export const IOMMU_INFO_MINSZ = 16;
/** `sizeof(struct vfio_iommu_type1_info_cap_migration)`. */
export const CAP_MIGRATION_SIZE = 32;
/** `sizeof(struct vfio_iommu_type1_info_dma_avail)`. */
export const CAP_DMA_AVAIL_SIZE = 12;
/** `sizeof(struct vfio_iommu_type1_info_cap_iova_range)` without ranges. */
export const CAP_IOVA_RANGE_HEADER_SIZE = 16;
/** `sizeof(struct vfio_iova_range)`. */
export const IOVA_RANGE_SIZE = 16;

/** One usable IOVA range; `end` is inclusive, as in `struct vfio_iova_range`. */
export interface IovaRange {
  /** The first usable IOVA. */
  readonly start: bigint;
  /** The last usable IOVA (inclusive). */
  readonly end: bigint;
}

/** The migration capability: the dirty bitmap geometry the container supports. */
export interface MigrationCap {
  /** `flags` (0 in every kernel so far). */
  readonly flags: number;
  /** Page sizes a dirty bitmap may use; type1 reports the smallest IOMMU page size alone. */
  readonly pgsizeBitmap: bigint;
  /** The largest `bitmap.size` in bytes one query may pass. */
  readonly maxDirtyBitmapSize: bigint;
}

/** A capability this library does not decode, kept whole. */
export interface UnknownCap {
  /** The cap id. */
  readonly id: number;
  /** The cap version. */
  readonly version: number;
  /** The cap bytes, header included. */
  readonly bytes: Uint8Array;
}

/** What `VFIO_IOMMU_GET_INFO` reports, decoded. */
export interface IommuInfo {
  /** `flags`: `VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS`. */
  readonly flags: number;
  /** Bitmap of supported IOMMU page sizes. */
  readonly iovaPgsizes: bigint;
  /** The usable IOVA ranges (empty when the cap is absent: everything is usable). */
  readonly iovaRanges: readonly IovaRange[];
  /** DMA mappings still available, when the kernel reports it. */
  readonly dmaAvail?: number;
  /** The migration capability, when the container supports dirty tracking. */
  readonly migration?: MigrationCap;
  /** Caps with an id or version this library does not decode. */
  readonly unknownCaps: readonly UnknownCap[];
}

/**
 * Encodes a `VFIO_IOMMU_GET_INFO` request buffer.
 *
 * @param argsz The buffer size to offer the kernel (at least 16).
 * @returns A zeroed buffer with `argsz` set.
 *
 * @example
 * ```ts
 * import { encodeIommuInfoRequest } from "./iommu_info.ts";
 * console.log(encodeIommuInfoRequest(24).byteLength); // 24
 * ```
 */
export function encodeIommuInfoRequest(argsz: number = IOMMU_INFO_SIZE): Uint8Array {
  const buf = new Uint8Array(Math.max(argsz, IOMMU_INFO_SIZE));
  new DataView(buf.buffer).setUint32(0, argsz, true);
  return buf;
}

/**
 * Reads the `argsz` the kernel wrote back: larger than offered when the caps
 * did not fit.
 *
 * @param buf The reply.
 * @returns The argsz.
 *
 * @example
 * ```ts
 * import { encodeIommuInfoRequest, readArgsz } from "./iommu_info.ts";
 * console.log(readArgsz(encodeIommuInfoRequest(24))); // 24
 * ```
 */
export function readArgsz(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0, true);
}

function decodeCap(cap: RawCap): Partial<IommuInfo> | undefined {
  if (cap.version !== 1) return undefined;
  const v = new DataView(cap.bytes.buffer, cap.bytes.byteOffset, cap.bytes.byteLength);
  const need = (size: number, what: string) => {
    if (cap.bytes.byteLength < size) {
      throw new CapChainError(
        cap.offset,
        `${what} cap needs ${size} bytes, has ${cap.bytes.byteLength}`,
      );
    }
  };
  switch (cap.id) {
    case VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION:
      need(CAP_MIGRATION_SIZE, "MIGRATION");
      return {
        migration: {
          flags: v.getUint32(8, true),
          pgsizeBitmap: v.getBigUint64(16, true),
          maxDirtyBitmapSize: v.getBigUint64(24, true),
        },
      };
    case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
      need(CAP_DMA_AVAIL_SIZE, "DMA_AVAIL");
      return { dmaAvail: v.getUint32(8, true) };
    case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: {
      need(CAP_IOVA_RANGE_HEADER_SIZE, "IOVA_RANGE");
      const n = v.getUint32(8, true);
      need(CAP_IOVA_RANGE_HEADER_SIZE + n * IOVA_RANGE_SIZE, "IOVA_RANGE");
      const iovaRanges: IovaRange[] = [];
      for (let i = 0; i < n; i++) {
        const at = CAP_IOVA_RANGE_HEADER_SIZE + i * IOVA_RANGE_SIZE;
        iovaRanges.push({
          start: v.getBigUint64(at, true),
          end: v.getBigUint64(at + 8, true),
        });
      }
      return { iovaRanges };
    }
    default:
      return undefined;
  }
}

/**
 * Decodes a `VFIO_IOMMU_GET_INFO` reply, caps included.
 *
 * @param buf The reply, `argsz` bytes long.
 * @returns The decoded info.
 * @throws {CapChainError} If the cap chain is malformed or a known cap is truncated.
 *
 * @example Decode a reply without caps
 * ```ts
 * import { decodeIommuInfo } from "./iommu_info.ts";
 * const buf = new Uint8Array(24);
 * const v = new DataView(buf.buffer);
 * v.setUint32(4, 1, true);
 * v.setBigUint64(8, 0x1000n, true);
 * console.log(decodeIommuInfo(buf).iovaPgsizes); // 4096n
 * ```
 */
export function decodeIommuInfo(buf: Uint8Array): IommuInfo {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const flags = v.getUint32(4, true);
  const iovaPgsizes = v.getBigUint64(8, true);
  const capOffset = (flags & VFIO_IOMMU_INFO_CAPS) && buf.byteLength >= IOMMU_INFO_SIZE
    ? v.getUint32(16, true)
    : 0;
  const info: {
    flags: number;
    iovaPgsizes: bigint;
    iovaRanges: readonly IovaRange[];
    dmaAvail?: number;
    migration?: MigrationCap;
    unknownCaps: UnknownCap[];
  } = { flags, iovaPgsizes, iovaRanges: [], unknownCaps: [] };
  for (const cap of walkCapChain(buf, capOffset, IOMMU_INFO_SIZE)) {
    const known = decodeCap(cap);
    if (known === undefined) {
      info.unknownCaps.push({ id: cap.id, version: cap.version, bytes: cap.bytes });
    } else {
      Object.assign(info, known);
    }
  }
  return info;
}

/** A cap to encode into a reply (used by fakes and tests). */
export type IommuInfoCap =
  | { readonly kind: "migration"; readonly cap: MigrationCap }
  | { readonly kind: "dmaAvail"; readonly avail: number }
  | { readonly kind: "iovaRanges"; readonly ranges: readonly IovaRange[] }
  | {
    readonly kind: "raw";
    readonly id: number;
    readonly version: number;
    readonly body: Uint8Array;
  };

function capSize(cap: IommuInfoCap): number {
  switch (cap.kind) {
    case "migration":
      return CAP_MIGRATION_SIZE;
    case "dmaAvail":
      return CAP_DMA_AVAIL_SIZE;
    case "iovaRanges":
      return CAP_IOVA_RANGE_HEADER_SIZE + cap.ranges.length * IOVA_RANGE_SIZE;
    case "raw":
      return 8 + cap.body.byteLength;
  }
}

/**
 * Encodes the capability chain the way type1's `vfio_info_cap_add` lays it
 * out: caps packed back to back after the 24-byte struct.
 *
 * @param caps The caps in chain order.
 * @returns The chain bytes, with `next` offsets relative to the struct start.
 *
 * @example
 * ```ts
 * import { encodeIommuInfoCaps } from "./iommu_info.ts";
 * console.log(encodeIommuInfoCaps([{ kind: "dmaAvail", avail: 65535 }]).byteLength); // 12
 * ```
 */
export function encodeIommuInfoCaps(caps: readonly IommuInfoCap[]): Uint8Array {
  const total = caps.reduce((n, c) => n + capSize(c), 0);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  let at = 0;
  caps.forEach((cap, i) => {
    const size = capSize(cap);
    const next = i === caps.length - 1 ? 0 : IOMMU_INFO_SIZE + at + size;
    switch (cap.kind) {
      case "migration":
        writeCapHeader(v, at, { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1, next });
        v.setUint32(at + 8, cap.cap.flags, true);
        v.setBigUint64(at + 16, cap.cap.pgsizeBitmap, true);
        v.setBigUint64(at + 24, cap.cap.maxDirtyBitmapSize, true);
        break;
      case "dmaAvail":
        writeCapHeader(v, at, { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, next });
        v.setUint32(at + 8, cap.avail, true);
        break;
      case "iovaRanges":
        writeCapHeader(v, at, { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1, next });
        v.setUint32(at + 8, cap.ranges.length, true);
        cap.ranges.forEach((r, j) => {
          const o = at + CAP_IOVA_RANGE_HEADER_SIZE + j * IOVA_RANGE_SIZE;
          v.setBigUint64(o, r.start, true);
          v.setBigUint64(o + 8, r.end, true);
        });
        break;
      case "raw":
        writeCapHeader(v, at, { id: cap.id, version: cap.version, next });
        out.set(cap.body, at + 8);
        break;
    }
    at += size;
  });
  return out;
}
