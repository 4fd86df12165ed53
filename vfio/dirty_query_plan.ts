/**
 * Planning dirty bitmap queries: the kernel rejects a range that starts or
 * ends inside a mapping, and a bitmap larger than `max_dirty_bitmap_size`, so
 * a range is split where mappings allow and its bits are counted against the
 * mappings it covers.
 *
 * @module
 */

import { hex } from "../sys/address.ts";
import type { DmaMapping } from "./dma_mapping.ts";

/** What a plan needs: the page size, the bitmap limit and the live mappings. */
export interface QueryGeometry {
  /** The action, for messages (`query dirty pages`, `unmap DMA`). */
  readonly what: string;
  /** The page size one bit stands for. */
  readonly pgsize: bigint;
  /** The largest bitmap one query passes, in bytes (a multiple of 8). */
  readonly maxBitmapBytes: bigint;
  /** The live mappings, in IOVA order. */
  readonly mappings: readonly DmaMapping[];
}

/**
 * Checks a range is aligned, non-empty, and covers whole mappings.
 *
 * @param g The geometry.
 * @param iova The first IOVA.
 * @param size Bytes.
 * @throws {RangeError} Naming the address and the mapping it bisects.
 *
 * @example
 * ```ts
 * import { checkDirtyRange } from "./dirty_query_plan.ts";
 * checkDirtyRange({ what: "query", pgsize: 4096n, maxBitmapBytes: 8n, mappings: [] }, 0n, 4096n);
 * ```
 */
export function checkDirtyRange(g: QueryGeometry, iova: bigint, size: bigint): void {
  if (size <= 0n || iova % g.pgsize !== 0n || size % g.pgsize !== 0n) {
    throw new RangeError(
      `Cannot ${g.what} at iova ${hex(iova)}: range ${hex(iova)}+${
        hex(size)
      } is empty or not aligned to the dirty page size ${hex(g.pgsize)}`,
    );
  }
  const end = iova + size;
  for (const m of g.mappings) {
    if ((m.iova < iova && m.end > iova) || (m.iova < end && m.end > end)) {
      throw new RangeError(
        `Cannot ${g.what} at iova ${hex(iova)}: range ${hex(iova)}-${
          hex(end)
        } bisects the mapping ${hex(m.iova)}-${hex(m.end)} (a range must cover whole mappings)`,
      );
    }
  }
}

/**
 * Splits `[iova, iova + size)` into ranges whose bitmaps fit the limit and
 * that never start or end inside a mapping.
 *
 * @param g The geometry.
 * @param iova The first IOVA.
 * @param size Bytes.
 * @returns The ranges, in order, tiling the whole range.
 * @throws {RangeError} When one mapping alone needs a larger bitmap.
 *
 * @example
 * ```ts
 * import { planDirtyQueries } from "./dirty_query_plan.ts";
 * const g = { what: "query", pgsize: 4096n, maxBitmapBytes: 8n, mappings: [] };
 * console.log(planDirtyQueries(g, 0n, 1n << 20n).length); // 4
 * ```
 */
export function planDirtyQueries(
  g: QueryGeometry,
  iova: bigint,
  size: bigint,
): { iova: bigint; size: bigint }[] {
  const maxSpan = (g.maxBitmapBytes / 8n) * 64n * g.pgsize;
  const end = iova + size;
  const chunks: { iova: bigint; size: bigint }[] = [];
  let start = iova;
  while (start < end) {
    let stop = start + maxSpan < end ? start + maxSpan : end;
    const cut = g.mappings.find((m) => m.iova < stop && m.end > stop);
    if (cut !== undefined) {
      if (cut.iova <= start) {
        throw new RangeError(
          `Cannot ${g.what} at iova ${hex(cut.iova)}: the mapping of ${
            hex(cut.size)
          } bytes needs more than the ${g.maxBitmapBytes}-byte bitmap one query may pass`,
        );
      }
      stop = cut.iova;
    }
    chunks.push({ iova: start, size: stop - start });
    start = stop;
  }
  return chunks;
}

/**
 * Counts the pages of a range that mappings cover.
 *
 * @param g The geometry.
 * @param iova The first IOVA.
 * @param size Bytes.
 * @returns Pages.
 *
 * @example
 * ```ts
 * import { mappedPages } from "./dirty_query_plan.ts";
 * console.log(mappedPages({ what: "count", pgsize: 4096n, maxBitmapBytes: 8n, mappings: [] }, 0n, 8192n)); // 0
 * ```
 */
export function mappedPages(g: QueryGeometry, iova: bigint, size: bigint): number {
  const end = iova + size;
  let mapped = 0n;
  for (const m of g.mappings) {
    const from = m.iova > iova ? m.iova : iova;
    const to = m.end < end ? m.end : end;
    if (to > from) mapped += (to - from) / g.pgsize;
  }
  return Number(mapped);
}
