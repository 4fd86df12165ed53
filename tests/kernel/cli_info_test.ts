// `mod.ts info --json` against the real container.
import assert from "node:assert/strict";
import { groupAndDevice } from "./_group.ts";

const root = new URL("../..", import.meta.url).pathname;

async function info(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", "--allow-read", `${root}mod.ts`, "info", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("mod.ts info --group N --json reports the real container", async () => {
  const { group } = groupAndDevice();
  const r = await info(["--group", String(group), "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.apiVersion, 0);
  assert.equal(j.extensions.VFIO_TYPE1v2_IOMMU, true);
  assert.equal(j.extensions.VFIO_TYPE1_IOMMU, true);
  assert.equal(j.extensions.VFIO_UNMAP_ALL, true);
  assert.equal(j.extensions.VFIO_UPDATE_VADDR, false);
  assert.equal(j.extensions.VFIO_NOIOMMU_IOMMU, false);
  assert.deepEqual(j.iommu.iovaPgsizes, [4096, 2097152, 1073741824]);
  assert.deepEqual(j.iommu.iovaRanges, [
    { start: "0x0", end: "0xfedfffff" },
    { start: "0xfef00000", end: "0x7fffffffff" },
  ]);
  assert.equal(j.iommu.dmaAvail, 65535);
  assert.deepEqual(j.iommu.migration, {
    pgsizes: [4096],
    maxDirtyBitmapSize: 268435456,
    maxBytesPerQuery: 268435456 * 8 * 4096,
  });
});

Deno.test("mod.ts info names an unknown group in one line", async () => {
  const r = await info(["--group", "9999"]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr.trim(),
    /^deno-vmm: No VFIO group 9999: open \/dev\/vfio\/9999 failed: ENOENT \(2\)/,
  );
  assert.equal(r.stderr.trim().split("\n").length, 1);
});
