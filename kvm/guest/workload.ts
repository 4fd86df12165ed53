/**
 * The test guest's write sequence, computed on the VMM side: the value of
 * every write, the page it goes to, and the checksum after `n` writes, so a
 * run can be checked from outside the guest.
 *
 * @module
 */

import { GUEST_FNV_OFFSET, GUEST_FNV_PRIME, GUEST_PATTERNS, type GuestPattern } from "./layout.ts";

const M64 = (1n << 64n) - 1n;

/**
 * splitmix64, as the guest computes it.
 *
 * @param x The input.
 * @returns The mixed value.
 *
 * @example
 * ```ts
 * import { mix64 } from "./workload.ts";
 * console.log(mix64(0n)); // 16294208416658607535n
 * ```
 */
export function mix64(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & M64;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M64;
  return x ^ (x >> 31n);
}

/**
 * The value of write number `counter` (counted from boot) of a guest with `seed`.
 *
 * @param seed The guest's seed (u32).
 * @param counter The write number.
 * @returns The value (odd, never 0).
 */
export function guestValue(seed: number, counter: bigint): bigint {
  return mix64(((BigInt(seed >>> 0) << 32n) ^ counter) & M64) | 1n;
}

/**
 * The guest's running checksum after its first `counter` writes.
 *
 * @param seed The guest's seed.
 * @param counter Writes.
 * @returns The checksum the mailbox should hold.
 *
 * @example
 * ```ts
 * import { checksumAfter } from "./workload.ts";
 * console.log(checksumAfter(7, 0n)); // 14695981039346656037n (the FNV offset)
 * ```
 */
export function checksumAfter(seed: number, counter: bigint): bigint {
  let h = GUEST_FNV_OFFSET;
  for (let i = 0n; i < counter; i++) h = ((h ^ guestValue(seed, i)) * GUEST_FNV_PRIME) & M64;
  return h;
}

/**
 * The data page a RUN write goes to, as the guest picks it.
 *
 * @param pattern The pattern.
 * @param pages Data pages.
 * @param counter The write number.
 * @param value The write's value ({@linkcode guestValue}).
 * @returns The page index from the first data page.
 */
export function guestPage(
  pattern: GuestPattern,
  pages: number,
  counter: bigint,
  value: bigint,
): number {
  const p = BigInt(pages);
  if (GUEST_PATTERNS[pattern] === GUEST_PATTERNS.sequential) return Number(counter % p);
  if (GUEST_PATTERNS[pattern] === GUEST_PATTERNS.random) return Number(value % p);
  let hot = p / 10n;
  if (hot === 0n) hot = 1n;
  if (hot >= p || (value >> 32n) % 10n < 9n) return Number(value % hot);
  return Number(hot + value % (p - hot));
}
