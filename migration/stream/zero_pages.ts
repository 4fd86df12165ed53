/**
 * Zero-page detection at memory speed. Each page is tested first on its
 * leading 16 bytes with a `Uint32Array` (non-zero pages exit there), then
 * compared against a zero buffer with `Buffer.compare` (a native `memcmp`):
 * about 25 GB/s on zero pages here, twice a `Uint8Array` copy, against 10 GB/s
 * for the best pure `Uint32Array` scan (see `stream_bench.ts`).
 *
 * @module
 */

import { Buffer } from "node:buffer";

const ZERO_CHUNK = 64 * 1024;
const zeros = Buffer.alloc(ZERO_CHUNK);

/** One run of pages of the same kind, as found by {@linkcode pageRuns}. */
export interface PageRun {
  /** Whether every page in the run is all zero. */
  readonly zero: boolean;
  /** Byte offset of the run in the scanned bytes. */
  readonly offset: number;
  /** Length of the run in bytes (a multiple of the page size). */
  readonly length: number;
}

/** Options for {@linkcode pageRuns}. */
export interface PageRunsOptions {
  /** Cap on a data run's length in bytes (rounded down to whole pages); default 4 MiB. */
  maxRunBytes?: number;
  /**
   * Byte ranges known to be zero, `[offset, length]` from the start,
   * ascending and page-aligned: counted as zero pages without being read.
   */
  knownZero?: readonly (readonly [number, number])[];
}

/**
 * Whether every byte is zero.
 *
 * @param bytes The bytes to test (any length).
 * @returns `true` if all are zero (also for an empty array).
 *
 * @example
 * ```ts
 * import { isZero } from "./zero_pages.ts";
 * console.log(isZero(new Uint8Array(4096)), isZero(new Uint8Array([0, 1]))); // true false
 * ```
 */
export function isZero(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let off = 0; off < buf.length; off += ZERO_CHUNK) {
    const n = Math.min(ZERO_CHUNK, buf.length - off);
    if (buf.compare(zeros, 0, n, off, off + n) !== 0) return false;
  }
  return true;
}

/**
 * Splits whole pages into alternating runs of zero pages and data pages.
 * Adjacent pages of a kind are batched into one run; data runs are capped
 * at `maxRunBytes`, zero runs are not.
 *
 * @param bytes The pages; its length must be a multiple of `pageSize`.
 * @param pageSize The page size in bytes.
 * @param options The run cap.
 * @returns The runs, in order, covering all of `bytes`.
 * @throws {RangeError} If the length is not a whole number of pages.
 *
 * @example Half-zero pages
 * ```ts
 * import { pageRuns } from "./zero_pages.ts";
 * const ram = new Uint8Array(4 * 4096);
 * ram[2 * 4096] = 1;
 * console.log([...pageRuns(ram, 4096)].map((r) => [r.zero, r.offset, r.length]));
 * // [[true, 0, 8192], [false, 8192, 4096], [true, 12288, 4096]]
 * ```
 */
export function* pageRuns(
  bytes: Uint8Array,
  pageSize: number,
  options: PageRunsOptions = {},
): Generator<PageRun, void, undefined> {
  yield* pageRunList(bytes, pageSize, options);
}

/**
 * {@linkcode pageRuns} as an array. The scan is a plain loop, which V8
 * optimizes while it runs (a generator's loop waits for the whole function
 * to be compiled, which costs a cold process a large share of its first
 * gigabyte).
 *
 * @param bytes The pages; its length must be a multiple of `pageSize`.
 * @param pageSize The page size in bytes.
 * @param options The run cap.
 * @returns The runs, in order, covering all of `bytes`.
 * @throws {RangeError} If the length is not a whole number of pages.
 *
 * @example
 * ```ts
 * import { pageRunList } from "./zero_pages.ts";
 * console.log(pageRunList(new Uint8Array(8192), 4096)); // [{ zero: true, offset: 0, length: 8192 }]
 * ```
 */
export function pageRunList(
  bytes: Uint8Array,
  pageSize: number,
  options: PageRunsOptions = {},
): PageRun[] {
  if (bytes.length % pageSize !== 0) {
    throw new RangeError(`Cannot scan ${bytes.length} bytes: not a multiple of page ${pageSize}`);
  }
  const cap = options.maxRunBytes ?? 4 << 20;
  const maxRun = Math.max(pageSize, cap - cap % pageSize);
  const scan = new ZeroPageScanner(bytes, pageSize);
  const out: PageRun[] = [];
  const known = options.knownZero ?? [];
  let k = 0;
  let start = 0;
  let zero = true;
  for (let off = 0, step = pageSize; off < bytes.length; off += step) {
    while (k < known.length && known[k][0] + known[k][1] <= off) k++;
    const inKnown = k < known.length && known[k][0] <= off;
    step = inKnown ? known[k][0] + known[k][1] - off : pageSize;
    const z = inKnown || scan.isZeroPage(off);
    if (off === 0) zero = z;
    else if (z !== zero || (!zero && off - start >= maxRun)) {
      out.push({ zero, offset: start, length: off - start });
      start = off;
      zero = z;
    }
  }
  if (bytes.length > 0) out.push({ zero, offset: start, length: bytes.length - start });
  return out;
}

/**
 * Tests pages of one byte range for zero: a 16-byte peek, then `memcmp`
 * against zeros (`Buffer.compare`). Make one per range and ask it per page.
 *
 * @example
 * ```ts
 * import { ZeroPageScanner } from "./zero_pages.ts";
 * const bytes = new Uint8Array(8192);
 * bytes[5000] = 1;
 * const scan = new ZeroPageScanner(bytes, 4096);
 * console.log(scan.isZeroPage(0), scan.isZeroPage(4096)); // true false
 * ```
 */
export class ZeroPageScanner {
  #buf: Buffer;
  #words: Uint32Array | undefined;
  #pageSize: number;

  /**
   * Prepares to scan `bytes`.
   *
   * @param bytes The range.
   * @param pageSize The page size in bytes.
   */
  constructor(bytes: Uint8Array, pageSize: number) {
    this.#buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#pageSize = pageSize;
    this.#words = bytes.byteOffset % 4 === 0 && pageSize >= 16
      ? new Uint32Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.byteLength / 4))
      : undefined;
  }

  /**
   * Whether the page at `off` is all zero.
   *
   * @param off Byte offset of the page in the range (a multiple of the page size).
   * @returns True for a zero page.
   */
  isZeroPage(off: number): boolean {
    const w = this.#words;
    if (w !== undefined) {
      const i = off / 4; // off is a multiple of pageSize >= 16
      if ((w[i] | w[i + 1] | w[i + 2] | w[i + 3]) !== 0) return false;
    }
    const buf = this.#buf;
    const end = off + this.#pageSize;
    for (let p = off; p < end; p += ZERO_CHUNK) {
      const n = Math.min(ZERO_CHUNK, end - p);
      if (buf.compare(zeros, 0, n, p, p + n) !== 0) return false;
    }
    return true;
  }
}

/**
 * Zeroes every page of `bytes` that is not all zero already. Pages that are
 * zero are only read, so fresh memory stays unpopulated (reading maps the
 * shared zero page; writing would allocate).
 *
 * @param bytes The pages; its length must be a multiple of `pageSize`.
 * @param pageSize The page size in bytes.
 * @returns How many pages were written.
 * @throws {RangeError} If the length is not a whole number of pages.
 *
 * @example
 * ```ts
 * import { clearPages } from "./zero_pages.ts";
 * const ram = new Uint8Array(3 * 4096);
 * ram[4096] = 7;
 * console.log(clearPages(ram, 4096), ram[4096]); // 1 0
 * ```
 */
export function clearPages(bytes: Uint8Array, pageSize: number): number {
  if (bytes.length % pageSize !== 0) {
    throw new RangeError(`Cannot clear ${bytes.length} bytes: not a multiple of page ${pageSize}`);
  }
  const scan = new ZeroPageScanner(bytes, pageSize);
  let written = 0;
  for (let off = 0; off < bytes.length; off += pageSize) {
    if (!scan.isZeroPage(off)) {
      bytes.fill(0, off, off + pageSize);
      written++;
    }
  }
  return written;
}
