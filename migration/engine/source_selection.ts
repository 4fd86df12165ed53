/**
 * Which device-side dirty source serves which guest RAM region. Several
 * device sources may see the same device's writes to a region (type1's
 * container bitmap and the device's own DMA logging, or an iommufd HWPT):
 * the finest one serves it, and the others are left out of that region with
 * the reason, so an all-mapped container does not drown a precise source's
 * pages. CPU-side sources (no `devices`) always serve and are not listed.
 *
 * @module
 */

import type { DirtyScope, DirtySource } from "./dirty_source.ts";

/** A device-side source as the selection sees it, after a first harvest. */
export interface SourceCandidate {
  /** The source. */
  readonly source: DirtySource;
  /** Its scope as of the first harvest. */
  readonly scope: DirtyScope;
  /** Per region, the 4 KiB pages it covers there. */
  readonly coveredPages: readonly number[];
}

/** A source the caller could not create, and why (for the report). */
export interface UnavailableSource {
  /** The source's name (`iommufd-hwpt`, `vfio-container`…). */
  readonly source: string;
  /** Why, in the user's words. */
  readonly reason: string;
}

/** One region's device-side sources. */
export interface RegionSources {
  /** The region's index. */
  region: number;
  /** Its guest-physical address (hex). */
  gpa: string;
  /** The sources that serve it, each with the devices it serves there. */
  served: { source: string; scope: DirtyScope; devices: string[] }[];
  /** The sources left out of it, and why. */
  notUsed: { source: string; reason: string }[];
}

/** The selection, as the report carries it. */
export interface SourceSelection {
  /** Per region. */
  regions: RegionSources[];
  /** Sources that could not be created. */
  unavailable: UnavailableSource[];
}

// Finer first: precise by construction, precise as observed, not yet
// known, all-mapped.
function rank(c: SourceCandidate): number {
  if (c.scope === "precise") return c.source.preciseByConstruction ? 3 : 2;
  return c.scope === "unknown" ? 1 : 0;
}

/** Why a source's scope is what it is, in the user's words. */
function scopeText(c: SourceCandidate): string {
  if (c.scope === "all-mapped") {
    return "all-mapped scope (a group has not pinned pages, as every vfio-pci group)";
  }
  if (c.scope === "unknown") return "scope unknown (no page covered yet)";
  return c.source.preciseByConstruction
    ? "precise"
    : "precise as observed only (type1's pinned scope turns all-mapped when a vfio-pci group joins)";
}

/**
 * Picks, per region and per device, the finest device-side source that
 * covers it: precise by construction (IOMMU dirty bits, DMA logging) over
 * precise as observed (type1's pinned scope) over unknown over all-mapped;
 * ties go to the source listed first. A source serves a region when it is
 * the finest for at least one device it sees there; a source without
 * `devices` sees a device of its own, so nothing replaces it.
 *
 * @param candidates The device-side sources, in the caller's order.
 * @param options The region addresses, and the sources that could not be created.
 * @returns The selection, and per source the regions it serves.
 *
 * @example Iommufd's precise bits replace an all-mapped container
 * ```ts
 * import { selectDeviceSources } from "./source_selection.ts";
 * const stub = { start() {}, stop() {}, coverInto() {} };
 * const container = { ...stub, name: "vfio-container", scope: "all-mapped" as const,
 *   devices: ["group 26"], harvestInto: () => { throw new Error("unused"); } };
 * const hwpt = { ...stub, name: "iommufd-hwpt", scope: "precise" as const,
 *   preciseByConstruction: true, devices: ["group 26"],
 *   harvestInto: () => { throw new Error("unused"); } };
 * const { selection } = selectDeviceSources([
 *   { source: container, scope: "all-mapped", coveredPages: [256] },
 *   { source: hwpt, scope: "precise", coveredPages: [256] },
 * ], { gpas: [0n] });
 * console.log(selection.regions[0].served[0].source); // "iommufd-hwpt"
 * ```
 */
export function selectDeviceSources(
  candidates: readonly SourceCandidate[],
  options: { gpas: readonly bigint[]; unavailable?: readonly UnavailableSource[] },
): { selection: SourceSelection; serves: Map<DirtySource, boolean[]> } {
  const serves = new Map<DirtySource, boolean[]>(
    candidates.map((c) => [c.source, options.gpas.map(() => false)]),
  );
  const regions = options.gpas.map((gpa, region): RegionSources => {
    const covering = candidates.filter((c) => (c.coveredPages[region] ?? 0) > 0);
    // device -> the finest source that sees it here
    const best = new Map<string, SourceCandidate>();
    for (const c of covering) {
      for (const d of c.source.devices ?? [c.source.name]) {
        const b = best.get(d);
        if (b === undefined || rank(c) > rank(b)) best.set(d, c);
      }
    }
    const served: RegionSources["served"] = [];
    const notUsed: RegionSources["notUsed"] = [];
    for (const c of candidates) {
      const seen = c.source.devices ?? [c.source.name];
      if (!covering.includes(c)) {
        notUsed.push({ source: c.source.name, reason: "maps no page of this region" });
        continue;
      }
      const mine = seen.filter((d) => best.get(d) === c);
      if (mine.length > 0) {
        serves.get(c.source)![region] = true;
        served.push({ source: c.source.name, scope: c.scope, devices: mine });
        continue;
      }
      const by = [...new Set(seen.map((d) => best.get(d)!))];
      const finer = by.map((b) => `${b.source.name} (${scopeText(b)})`).join(", ");
      notUsed.push({
        source: c.source.name,
        reason: `${scopeText(c)}: ${finer} sees the same devices (${seen.join(", ")})${
          by.every((b) => rank(b) > rank(c)) ? " more finely" : " as finely, and comes first"
        }`,
      });
    }
    return { region, gpa: `0x${gpa.toString(16)}`, served, notUsed };
  });
  return { selection: { regions, unavailable: [...(options.unavailable ?? [])] }, serves };
}

/**
 * The selection as text lines for a summary.
 *
 * @param selection The selection.
 * @returns One line per region, then one per unavailable source.
 *
 * @example
 * ```ts
 * import { describeSelection } from "./source_selection.ts";
 * console.log(describeSelection({ regions: [], unavailable: [
 *   { source: "iommufd-hwpt", reason: "no /dev/iommu" },
 * ] })[0]); // "device dirty: iommufd-hwpt unavailable: no /dev/iommu"
 * ```
 */
export function describeSelection(selection: SourceSelection): string[] {
  const lines: string[] = [];
  for (const r of selection.regions) {
    const served = r.served.map((s) => `${s.source} (${s.scope})`).join(", ") || "none";
    const not = r.notUsed.map((n) => `; not ${n.source}: ${n.reason}`).join("");
    lines.push(`device dirty, region ${r.gpa}: ${served}${not}`);
  }
  for (const u of selection.unavailable) {
    lines.push(`device dirty: ${u.source} unavailable: ${u.reason}`);
  }
  return lines;
}
