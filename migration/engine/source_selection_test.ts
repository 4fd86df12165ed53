import assert from "node:assert/strict";
import type { DirtyScope, DirtySource } from "./dirty_source.ts";
import {
  describeSelection,
  selectDeviceSources,
  type SourceCandidate,
} from "./source_selection.ts";

function source(
  name: string,
  devices: string[] | undefined,
  options: { byConstruction?: boolean } = {},
): DirtySource {
  return {
    name,
    scope: "unknown",
    devices,
    preciseByConstruction: options.byConstruction,
    start() {},
    stop() {},
    coverInto() {},
    harvestInto() {
      throw new TypeError("not harvested by the selection");
    },
  };
}

function candidate(s: DirtySource, scope: DirtyScope, covered: number[]): SourceCandidate {
  return { source: s, scope, coveredPages: covered };
}

const container = source("vfio-container", ["group 26"]);
const hwpt = source("iommufd-hwpt", ["group 26"], { byConstruction: true });

Deno.test("selectDeviceSources() lets an iommufd HWPT replace an all-mapped container for the same devices", () => {
  const { selection, serves } = selectDeviceSources([
    candidate(container, "all-mapped", [256]),
    candidate(hwpt, "precise", [256]),
  ], { gpas: [0n] });
  const [r] = selection.regions;
  assert.deepEqual(r.served, [{ source: "iommufd-hwpt", scope: "precise", devices: ["group 26"] }]);
  assert.equal(r.notUsed.length, 1);
  assert.equal(r.notUsed[0].source, "vfio-container");
  assert.match(
    r.notUsed[0].reason,
    /^all-mapped scope \(a group has not pinned pages, as every vfio-pci group\): iommufd-hwpt \(precise\) sees the same devices \(group 26\) more finely$/,
  );
  assert.deepEqual(serves.get(container), [false]);
  assert.deepEqual(serves.get(hwpt), [true]);
});

Deno.test("selectDeviceSources() keeps a pinned-only container as the precise source when it is alone", () => {
  const { selection, serves } = selectDeviceSources([candidate(container, "precise", [64])], {
    gpas: [0x1000_0000n],
  });
  assert.deepEqual(selection.regions[0].served, [
    { source: "vfio-container", scope: "precise", devices: ["group 26"] },
  ]);
  assert.deepEqual(selection.regions[0].notUsed, []);
  assert.equal(selection.regions[0].gpa, "0x10000000");
  assert.deepEqual(serves.get(container), [true]);
});

Deno.test("selectDeviceSources() prefers precise by construction over type1's observed pinned scope", () => {
  const { selection } = selectDeviceSources([
    candidate(container, "precise", [64]),
    candidate(hwpt, "precise", [64]),
  ], { gpas: [0n] });
  assert.deepEqual(selection.regions[0].served.map((s) => s.source), ["iommufd-hwpt"]);
  assert.match(selection.regions[0].notUsed[0].reason, /^precise as observed only .*more finely$/);
});

Deno.test("selectDeviceSources() never drops a source whose devices no finer one sees", () => {
  const other = source("iommufd-hwpt", ["hwpt 7"], { byConstruction: true });
  const { selection, serves } = selectDeviceSources([
    candidate(container, "all-mapped", [256]),
    candidate(other, "precise", [256]),
  ], { gpas: [0n] });
  assert.deepEqual(selection.regions[0].served.map((s) => s.source), [
    "vfio-container",
    "iommufd-hwpt",
  ]);
  assert.deepEqual(serves.get(container), [true]);
  // A container with a second group that only it sees stays too.
  const two = source("vfio-container", ["group 26", "group 27"]);
  const mixed = selectDeviceSources([
    candidate(two, "all-mapped", [256]),
    candidate(hwpt, "precise", [256]),
  ], { gpas: [0n] });
  assert.deepEqual(mixed.selection.regions[0].served, [
    { source: "vfio-container", scope: "all-mapped", devices: ["group 27"] },
    { source: "iommufd-hwpt", scope: "precise", devices: ["group 26"] },
  ]);
});

Deno.test("selectDeviceSources() decides per region, from what each source covers there", () => {
  const { selection, serves } = selectDeviceSources([
    candidate(container, "all-mapped", [256, 256]),
    candidate(hwpt, "precise", [256, 0]),
  ], { gpas: [0n, 0x1_0000_0000n], unavailable: [{ source: "x", reason: "y" }] });
  assert.deepEqual(selection.regions.map((r) => r.served.map((s) => s.source)), [
    ["iommufd-hwpt"],
    ["vfio-container"],
  ]);
  assert.deepEqual(selection.regions[1].notUsed, [
    { source: "iommufd-hwpt", reason: "maps no page of this region" },
  ]);
  assert.deepEqual(serves.get(container), [false, true]);
  assert.deepEqual(selection.unavailable, [{ source: "x", reason: "y" }]);
  const text = describeSelection(selection);
  assert.equal(text.length, 3);
  assert.match(
    text[0],
    /^device dirty, region 0x0: iommufd-hwpt \(precise\); not vfio-container: all-mapped/,
  );
  assert.equal(text[2], "device dirty: x unavailable: y");
});

Deno.test("selectDeviceSources() gives ties to the source listed first", () => {
  const a = source("a", ["group 1"]);
  const b = source("b", ["group 1"]);
  const { selection } = selectDeviceSources([
    candidate(a, "precise", [1]),
    candidate(b, "precise", [1]),
  ], { gpas: [0n] });
  assert.deepEqual(selection.regions[0].served.map((s) => s.source), ["a"]);
  assert.match(selection.regions[0].notUsed[0].reason, /as finely, and comes first$/);
});
