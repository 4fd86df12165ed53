/**
 * Branded address types. A guest-physical address, an IOVA and a host virtual
 * address are all `bigint`s, but mixing them up is a classic VMM bug; the
 * brands make the type checker refuse it. Arithmetic on them is checked.
 *
 * @module
 */

/** A guest-physical address (GPA). */
export type GuestAddress = bigint & { readonly __brand: "GuestAddress" };
/** An I/O virtual address, as a device sees memory through the IOMMU. */
export type Iova = bigint & { readonly __brand: "Iova" };
/** A host virtual address in this process. */
export type HostAddress = bigint & { readonly __brand: "HostAddress" };

/** The largest u64. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

function checkU64(kind: string, value: bigint): void {
  if (value < 0n || value > U64_MAX) {
    throw new RangeError(`Cannot use ${kind} ${value}: not a u64`);
  }
}

/**
 * Brands a guest-physical address.
 *
 * @param value The address.
 * @returns The branded address.
 * @throws {RangeError} If it is not a u64.
 *
 * @example
 * ```ts
 * import { guestAddress } from "./address.ts";
 * const a = guestAddress(0x10_0000n);
 * ```
 */
export function guestAddress(value: bigint): GuestAddress {
  checkU64("guest address", value);
  return value as GuestAddress;
}

/**
 * Brands an IOVA.
 *
 * @param value The address.
 * @returns The branded address.
 * @throws {RangeError} If it is not a u64.
 *
 * @example
 * ```ts
 * import { iova } from "./address.ts";
 * const a = iova(0x10_0000n);
 * ```
 */
export function iova(value: bigint): Iova {
  checkU64("iova", value);
  return value as Iova;
}

/**
 * Brands a host virtual address.
 *
 * @param value The address.
 * @returns The branded address.
 * @throws {RangeError} If it is not a u64.
 *
 * @example
 * ```ts
 * import { hostAddress } from "./address.ts";
 * const a = hostAddress(0x7f00_0000_0000n);
 * ```
 */
export function hostAddress(value: bigint): HostAddress {
  checkU64("host address", value);
  return value as HostAddress;
}

/**
 * Adds an offset to an address of any kind, keeping its brand.
 *
 * @param addr The address.
 * @param offset The offset (may be negative).
 * @returns `addr + offset`.
 * @throws {RangeError} If the result leaves the u64 range.
 *
 * @example
 * ```ts
 * import { addChecked, iova } from "./address.ts";
 * const next = addChecked(iova(0x1000n), 0x1000n);
 * ```
 */
export function addChecked<T extends GuestAddress | Iova | HostAddress>(
  addr: T,
  offset: bigint,
): T {
  const sum = addr + offset;
  if (sum < 0n || sum > U64_MAX) {
    throw new RangeError(
      `Cannot add 0x${offset.toString(16)} to 0x${addr.toString(16)}: overflows a u64`,
    );
  }
  return sum as T;
}

/**
 * Formats an address as `0x…` hex.
 *
 * @param addr The address.
 * @returns The hex string.
 *
 * @example
 * ```ts
 * import { hex } from "./address.ts";
 * console.log(hex(4096n)); // "0x1000"
 * ```
 */
export function hex(addr: bigint): string {
  return `0x${addr.toString(16)}`;
}
