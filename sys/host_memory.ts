/**
 * Views of host memory by address.
 *
 * Requires `--allow-ffi`.
 *
 * @module
 */

/**
 * Returns a zero-copy view of host memory.
 *
 * SAFETY: the caller guarantees that `[addr, addr + length)` stays mapped for
 * as long as the view is used.
 *
 * @param addr The host address.
 * @param length Bytes.
 * @returns A `Uint8Array` over that memory.
 * @throws {RangeError} If `addr` is 0.
 *
 * @example View an mmap'd page
 * ```ts ignore
 * import { hostView } from "./host_memory.ts";
 * const page = hostView(0x7f00_0000_0000n, 4096);
 * ```
 */
export function hostView(addr: bigint, length: number): Uint8Array {
  if (length === 0) return new Uint8Array(0);
  const ptr = Deno.UnsafePointer.create(addr);
  if (ptr === null) throw new RangeError("Cannot view host address 0x0");
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, length));
}

/**
 * Returns the host address of a typed array's first byte.
 *
 * SAFETY: the address is valid only while the array's buffer is alive and not
 * moved; only use it for memory that does not move (mmap'd memory).
 *
 * @param buf The array.
 * @returns Its address.
 *
 * @example Address of a view
 * ```ts ignore
 * import { addressOf } from "./host_memory.ts";
 * const addr = addressOf(new Uint8Array(8));
 * ```
 */
export function addressOf(buf: ArrayBufferView): bigint {
  return Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf));
}
