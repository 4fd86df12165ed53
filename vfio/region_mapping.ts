/**
 * A device region mapped into this process, with register accessors of exact
 * width.
 *
 * @module
 */

import { hostView } from "../sys/host_memory.ts";
import { VfioStateError } from "./errors.ts";

/**
 * A device region mapped into this process. Dispose it to unmap; the device
 * unmaps what is left when it closes.
 */
export class RegionMapping implements Disposable {
  /** The region index. */
  readonly index: number;
  /** The host address of the mapping. */
  readonly addr: bigint;
  /** Bytes mapped. */
  readonly size: bigint;
  /**
   * A zero-copy view of the mapping. Byte accesses suit memory-like regions;
   * device registers need the `readU32`/`writeU32` (or U64) accessors, which
   * access exactly that width, as MMIO requires.
   */
  readonly bytes: Uint8Array;
  #u32: Uint32Array;
  #u64: BigUint64Array;
  #unmap: (() => void) | undefined;

  /**
   * Created by {@linkcode VfioDevice.mmapRegion}.
   *
   * @param fields The region, address and size.
   * @param unmap Releases the mapping.
   */
  constructor(fields: { index: number; addr: bigint; size: bigint }, unmap: () => void) {
    this.index = fields.index;
    this.addr = fields.addr;
    this.size = fields.size;
    this.bytes = hostView(fields.addr, Number(fields.size));
    // Whole-width element accesses: a DataView splits loads into bytes, which
    // devices such as edu refuse for their 32-bit registers.
    this.#u32 = new Uint32Array(
      this.bytes.buffer,
      this.bytes.byteOffset,
      this.bytes.byteLength >>> 2,
    );
    this.#u64 = new BigUint64Array(
      this.bytes.buffer,
      this.bytes.byteOffset,
      this.bytes.byteLength >>> 3,
    );
    this.#unmap = unmap;
  }

  #index(offset: number, width: 4 | 8, what: string): number {
    if (this.#unmap === undefined) throw new VfioStateError(`Cannot ${what}: region unmapped`);
    if (offset % width !== 0 || offset < 0 || offset + width > this.bytes.byteLength) {
      throw new RangeError(
        `Cannot ${what} ${
          width * 8
        } bits at offset ${offset} of region ${this.index}: unaligned or outside`,
      );
    }
    return offset / width;
  }

  /**
   * Reads a 32-bit little-endian register.
   *
   * @param offset The byte offset in the region (aligned to the width).
   * @returns The value.
   * @throws {VfioStateError} After unmap.
   * @throws {RangeError} Unaligned or outside the region.
   */
  readU32(offset: number): number {
    return this.#u32[this.#index(offset, 4, "read")];
  }

  /**
   * Writes a 32-bit little-endian register.
   *
   * @param offset The byte offset in the region (aligned to the width).
   * @param value The value.
   * @throws {VfioStateError} After unmap.
   * @throws {RangeError} Unaligned or outside the region.
   */
  writeU32(offset: number, value: number): void {
    this.#u32[this.#index(offset, 4, "write")] = value;
  }

  /**
   * Reads a 64-bit little-endian register.
   *
   * @param offset The byte offset in the region (aligned to the width).
   * @returns The value.
   * @throws {VfioStateError} After unmap.
   * @throws {RangeError} Unaligned or outside the region.
   */
  readU64(offset: number): bigint {
    return this.#u64[this.#index(offset, 8, "read")];
  }

  /**
   * Writes a 64-bit little-endian register.
   *
   * @param offset The byte offset in the region (aligned to the width).
   * @param value The value.
   * @throws {VfioStateError} After unmap.
   * @throws {RangeError} Unaligned or outside the region.
   */
  writeU64(offset: number, value: bigint): void {
    this.#u64[this.#index(offset, 8, "write")] = value;
  }

  /** Unmaps. Idempotent. */
  unmap(): void {
    const unmap = this.#unmap;
    this.#unmap = undefined;
    unmap?.();
  }

  /** Unmaps (see {@linkcode RegionMapping.unmap}). */
  [Symbol.dispose](): void {
    this.unmap();
  }
}
