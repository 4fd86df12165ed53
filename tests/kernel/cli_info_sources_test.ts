// kernel-profiles: custom-6.12-viommu
// `mod.ts info --json` lists the device dirty sources the 6.12 test kernel
// really offers: edu on vfio-pci behind the emulated VT-d (container
// all-mapped, no migration driver, an IOMMU without dirty bits), and the
// pintest mdev (its container is in type1's pinned scope).
import assert from "node:assert/strict";
import { groupAndDevice } from "./_group.ts";
import { bootProfile } from "./env.ts";
import { createPintest } from "./pinned/_pintest.ts";

const root = new URL("../..", import.meta.url).pathname;

interface Source {
  source: string;
  for: string;
  available: boolean;
  scope?: string;
  reason: string;
}

async function sources(args: string[]): Promise<Source[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    // -A: Deno reads /sys (the cdev lookup) only with --allow-all.
    args: ["run", "-A", `${root}mod.ts`, "info", ...args, "--json"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  assert.equal(out.code, 0, d.decode(out.stderr));
  return JSON.parse(d.decode(out.stdout)).dirtySources;
}

Deno.test("mod.ts info --json lists edu's sources: container all-mapped, no migration driver, VT-d without dirty tracking", async () => {
  bootProfile("custom-6.12-viommu");
  const { group, device } = groupAndDevice();
  const s = await sources(["--group", String(group), "--device", device]);
  assert.deepEqual(s.map((x) => [x.source, x.for, x.available, x.scope ?? null]), [
    ["vfio-container", `group ${group}`, true, "all-mapped"],
    ["device-dma-logging", device, false, null],
    ["iommufd-hwpt", device, false, null],
  ]);
  assert.match(s[0].reason, /^all-mapped scope \(a group has not pinned pages/);
  assert.match(s[1].reason, /^no migration capability/);
  assert.match(
    s[2].reason,
    /^device-side dirty tracking unavailable: the IOMMU has no dirty tracking \(IOMMU_HW_CAP_DIRTY_TRACKING clear; IOMMU_HWPT_ALLOC refused it\)$/,
  );
});

Deno.test("mod.ts info --json lists a pintest mdev's container in the pinned scope", async () => {
  bootProfile("custom-6.12-viommu");
  using mdev = createPintest();
  const [container, logging] = await sources([
    "--group",
    String(mdev.group),
    "--device",
    mdev.uuid,
  ]);
  assert.deepEqual(
    [container.source, container.for, container.available, container.scope],
    ["vfio-container", `group ${mdev.group}`, true, "precise"],
  );
  assert.match(container.reason, /^pinned scope/);
  assert.equal(logging.source, "device-dma-logging");
  assert.equal(logging.available, false);
});
