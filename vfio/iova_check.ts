/**
 * The checks a DMA map or unmap passes before the ioctl: alignment to the
 * smallest IOMMU page size, and the usable IOVA ranges.
 *
 * @module
 */

import { hex } from "../sys/address.ts";
import type { IovaRange } from "./uapi/iommu_info.ts";

/**
 * Checks an IOVA range (and its host address) before a DMA map or unmap.
 *
 * @param rules The action (for messages), the smallest IOMMU page size and
 *   the usable IOVA ranges (empty: everything usable).
 * @param range The IOVA, size and, for a map, the host address.
 * @throws {RangeError} Naming the address: size 0, misalignment, or a range
 *   outside the IOVA ranges (the MSI hole, past the address width).
 *
 * @example
 * ```ts
 * import { checkIovaRange } from "./iova_check.ts";
 * checkIovaRange({ what: "map DMA", page: 4096n, ranges: [] }, { iova: 0x1000n, size: 0x1000n });
 * ```
 */
export function checkIovaRange(
  rules: { what: string; page: bigint; ranges: readonly IovaRange[] },
  range: { iova: bigint; size: bigint; vaddr?: bigint },
): void {
  const { what, page, ranges } = rules;
  const { iova, size, vaddr } = range;
  if (size <= 0n) throw new RangeError(`Cannot ${what} at iova ${hex(iova)}: size is 0`);
  if (iova % page !== 0n) {
    throw new RangeError(
      `Cannot ${what} at iova ${hex(iova)}: not aligned to the IOMMU page size ${hex(page)}`,
    );
  }
  if (size % page !== 0n) {
    throw new RangeError(
      `Cannot ${what} at iova ${hex(iova)}: size ${hex(size)} is not a multiple of ${hex(page)}`,
    );
  }
  if (vaddr !== undefined && vaddr % page !== 0n) {
    throw new RangeError(
      `Cannot ${what} at iova ${hex(iova)}: vaddr ${hex(vaddr)} is not aligned to ${hex(page)}`,
    );
  }
  const last = iova + size - 1n;
  if (ranges.length > 0 && !ranges.some((r) => iova >= r.start && last <= r.end)) {
    const list = ranges.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(", ");
    throw new RangeError(
      `Cannot ${what} at iova ${hex(iova)}: ${hex(iova)}-${
        hex(last)
      } is outside the IOVA ranges (${list})`,
    );
  }
}
