// The pinned-scope faithfulness rows against FakeKernel on this host: they
// must run to the end and show what the real 6.12 kernel showed (the same rows
// run against it, compared step by step, in
// tests/kernel/pinned/faithfulness_pinned_test.ts).
import assert from "node:assert/strict";
import { EEXIST, EINVAL, ENOENT } from "../sys/errno.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { runPinnedScenario } from "./faithfulness_pinned_scenario.ts";

Deno.test("runPinnedScenario() against FakeKernel shows the pinned scope and its promotion", () => {
  const mdev = "8d4f2c1e-3b5a-4c6d-9e7f-0a1b2c3d4e5f";
  const kernel = new FakeKernel({
    alignInfoCaps: true,
    groups: [
      { id: 2, devices: [{ name: "0000:00:02.0" }] },
      { id: 3, devices: [{ name: mdev, model: "pintest" }] },
    ],
  });
  const steps = runPinnedScenario(kernel, { mdevGroup: 3, mdev, eduGroup: 2 });
  const at = (name: string) => {
    const s = steps.find((x) => x.step === name);
    assert.ok(s, `step ${name}`);
    return s;
  };
  // An mdev-only container: PAGE_MASK page sizes, no IOVA range cap (argsz 72).
  assert.equal(
    at("GET_INFO argsz 16 (mdev only)").out,
    "480000000300000000f0ffffffffffff0000000000000000",
  );
  assert.equal(at("GET nothing pinned").out, "0000000000000000");
  assert.equal(at("PIN page 2 again").ret, -EEXIST);
  assert.equal(at("PIN unmapped").ret, -EINVAL);
  assert.equal(at("GET pinned and written").out, "2400000000000000", "pages 2 and 5");
  assert.equal(at("GET again").out, "0400000000000000", "page 2, still pinned");
  assert.equal(at("UNPIN page 2 again").ret, -ENOENT);
  assert.equal(at("GET with edu").out, "ffff000000000000", "all-mapped with a vfio-pci group");
  assert.equal(at("GET after edu left, again").out, "0800000000000000", "pinned scope again");
  assert.equal(at("UNMAPPED after unmap").out, "0100000000000000", "dma_unmap unpinned page 3");
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
