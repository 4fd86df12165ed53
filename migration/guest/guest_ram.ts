/**
 * `GuestMemory` as the RAM a migration reads (source) or fills (destination).
 *
 * @module
 */

import { digestMemory } from "../../memory/digest.ts";
import type { GuestMemory } from "../../memory/guest_memory.ts";
import type { RamAccess } from "../stream/ram.ts";

/**
 * The source's view: read-only views that do not count as guest writes.
 *
 * @param memory The guest RAM.
 * @returns The RAM for `migrate()`.
 *
 * @example
 * ```ts ignore
 * const ram = sourceRam(memory);
 * ```
 */
export function sourceRam(memory: GuestMemory): RamAccess {
  return {
    layout: memory.regions.map((r) => ({ gpa: r.gpa, size: r.size })),
    view: (gpa, length) => memory.readView(gpa, length),
    // Never-written pages go as zero without being read (or, on memfd, allocated).
    unpopulated: (gpa, length) => memory.unpopulatedRanges(gpa, length),
  };
}

/**
 * The destination's view: writable views of its own RAM; the stream is
 * validated against this layout.
 *
 * @param memory The destination's guest RAM.
 * @returns The RAM for `receiveStream`.
 *
 * @example
 * ```ts ignore
 * const ram = destinationRam(memory);
 * ```
 */
export function destinationRam(memory: GuestMemory): RamAccess {
  return {
    layout: memory.regions.map((r) => ({ gpa: r.gpa, size: r.size })),
    view: (gpa, length) => memory.view(gpa, length),
  };
}

/**
 * The RAM digest as bytes and hex (per-page CRC-32 combined with SHA-256).
 *
 * @param memory The guest RAM.
 * @returns The digest.
 *
 * @example
 * ```ts ignore
 * console.log(ramDigest(memory).hex);
 * ```
 */
export function ramDigest(memory: GuestMemory): { bytes: Uint8Array; hex: string } {
  const { hex } = digestMemory(memory);
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return { bytes, hex };
}
