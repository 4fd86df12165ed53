// Validates and sorts region specs before anything is mapped.

import type { GuestAddress } from "../sys/address.ts";
import { hex, U64_MAX } from "../sys/address.ts";
import { HUGE_PAGE_SIZE, isHuge, type MemoryBacking, type PrefaultMode } from "./_backing.ts";

/** What `GuestMemory.create()` is asked to map for one region. */
export interface RegionSpec {
  /** The first guest-physical address (4 KiB aligned; 2 MiB for huge pages). */
  gpa: GuestAddress;
  /** Bytes (a multiple of 4 KiB; of 2 MiB for huge pages). */
  size: bigint;
  /** The backing kind (default: the `backing` option, else `"anonymous"`). */
  backing?: MemoryBacking;
  /** A name for errors and /proc/self/maps (default `ram<N>`). */
  name?: string;
  /** Prefault this region (overrides the `prefault` option). */
  prefault?: boolean | PrefaultMode;
}

export interface PlannedRegion {
  name: string;
  gpa: GuestAddress;
  size: bigint;
  backing: MemoryBacking;
  prefault?: PrefaultMode;
}

export function planRegions(
  specs: readonly RegionSpec[],
  defaults: { backing?: MemoryBacking; prefault?: boolean | PrefaultMode },
): PlannedRegion[] {
  if (specs.length === 0) throw new RangeError("Cannot create guest memory with no regions");
  const planned = specs.map((s, i): PlannedRegion => {
    const backing = s.backing ?? defaults.backing ?? "anonymous";
    const name = s.name ?? `ram${i}`;
    const align = isHuge(backing) ? HUGE_PAGE_SIZE : 4096n;
    const label = `region "${name}" at GPA ${hex(s.gpa)}`;
    if (s.size <= 0n || s.size % align !== 0n) {
      throw new RangeError(
        `Cannot map ${label}: size ${hex(s.size)} is not a positive multiple of ${hex(align)}`,
      );
    }
    if (s.gpa < 0n || s.gpa % align !== 0n) {
      throw new RangeError(`Cannot map ${label}: the GPA is not aligned to ${hex(align)}`);
    }
    if (s.gpa + s.size - 1n > U64_MAX) {
      throw new RangeError(`Cannot map ${label}: it ends past the 64-bit address space`);
    }
    if (s.size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`Cannot map ${label}: size ${hex(s.size)} is too large`);
    }
    const p = s.prefault ?? defaults.prefault ?? false;
    return {
      name,
      gpa: s.gpa,
      size: s.size,
      backing,
      prefault: p === true ? "populate" : p || undefined,
    };
  });
  planned.sort((a, b) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
  for (let i = 1; i < planned.length; i++) {
    const a = planned[i - 1];
    const b = planned[i];
    if (b.gpa < a.gpa + a.size) {
      throw new RangeError(
        `Cannot map region "${b.name}" at GPA ${hex(b.gpa)}: it overlaps region "${a.name}" [${
          hex(a.gpa)
        }, ${hex(a.gpa + a.size)})`,
      );
    }
  }
  return planned;
}
