/**
 * The small view of guest RAM that the stream writer and receiver need.
 * `GuestMemory` satisfies it through a one-line adapter; {@linkcode arrayRam}
 * backs it with `ArrayBuffer`s for tests.
 *
 * @module
 */

import { type GuestAddress, guestAddress } from "../../sys/address.ts";

/** One region of guest RAM: its guest-physical address and size in bytes. */
export interface RamRegionLayout {
  /** Guest-physical address of the first byte. */
  readonly gpa: GuestAddress;
  /** Size in bytes. */
  readonly size: bigint;
}

/**
 * Guest RAM as migration sees it, on both sides: its layout and zero-copy
 * views by guest-physical address. The stream writer, the receiver and the
 * pre-copy engine all take this one type; `sourceRam()` and
 * `destinationRam()` make it from a `GuestMemory`, {@linkcode arrayRam}
 * from `ArrayBuffer`s.
 */
export interface RamAccess {
  /** The RAM regions, in ascending GPA order, not overlapping. */
  readonly layout: readonly RamRegionLayout[];
  /**
   * Zero-copy view of `[gpa, gpa + length)`.
   *
   * @throws {RangeError} If the range is not inside one region of the layout.
   */
  view(gpa: GuestAddress, length: number): Uint8Array;
  /**
   * Optional: the ranges of `[gpa, gpa + length)` that hold no memory yet
   * (never written, so zero), as `[offset, length]` byte pairs from `gpa`,
   * ascending and page-aligned. The writer sends them as zero without
   * reading them.
   */
  unpopulated?(gpa: GuestAddress, length: number): [number, number][];
}

/**
 * Builds a {@linkcode RamAccess} backed by one `ArrayBuffer` per region, for
 * tests and tools. The memory starts zeroed.
 *
 * @param layout The regions (GPAs are checked and branded); each size must fit in an `ArrayBuffer`.
 * @returns RAM that hands out views into the buffers.
 * @throws {RangeError} If a region is empty, too large, or regions overlap or are unsorted.
 *
 * @example Write and read back a page
 * ```ts
 * import { arrayRam } from "./ram.ts";
 * import { guestAddress } from "../../sys/address.ts";
 * const ram = arrayRam([{ gpa: 0x1000n, size: 0x4000n }]);
 * ram.view(guestAddress(0x2000n), 4).set([1, 2, 3, 4]);
 * console.log(ram.view(guestAddress(0x2000n), 4)); // Uint8Array(4) [ 1, 2, 3, 4 ]
 * ```
 */
export function arrayRam(layout: readonly { gpa: bigint; size: bigint }[]): RamAccess {
  const regions: { gpa: bigint; size: bigint; bytes: Uint8Array }[] = [];
  let end = 0n;
  for (const [i, r] of layout.entries()) {
    if (r.size <= 0n || r.size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`Cannot build RAM: region ${i} has size ${r.size}`);
    }
    if (r.gpa < end) {
      throw new RangeError(`Cannot build RAM: region ${i} overlaps or precedes region ${i - 1}`);
    }
    end = r.gpa + r.size;
    regions.push({ gpa: r.gpa, size: r.size, bytes: new Uint8Array(Number(r.size)) });
  }
  const frozen = Object.freeze(
    regions.map((r) => Object.freeze({ gpa: guestAddress(r.gpa), size: r.size })),
  );
  return {
    layout: frozen,
    view(gpa: GuestAddress, length: number): Uint8Array {
      if (!Number.isSafeInteger(length) || length < 0) {
        throw new RangeError(`Cannot view RAM at GPA 0x${gpa.toString(16)}: bad length ${length}`);
      }
      for (const r of regions) {
        if (gpa >= r.gpa && gpa + BigInt(length) <= r.gpa + r.size) {
          const start = Number(gpa - r.gpa);
          return r.bytes.subarray(start, start + length);
        }
      }
      throw new RangeError(
        `Cannot view RAM at GPA 0x${gpa.toString(16)} length ${length}: outside the layout`,
      );
    },
  };
}
