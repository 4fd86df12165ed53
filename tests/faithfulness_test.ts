// The faithfulness scenario against FakeKernel on this host: it must run to
// the end, and the observed facts of the real 6.1 kernel must hold in it. The
// same scenario runs against the real kernel, compared step by step, in
// tests/kernel/faithfulness_test.ts.
import assert from "node:assert/strict";
import { EBUSY, EEXIST, EFAULT, EINVAL } from "../sys/errno.ts";
import { FakeKernel } from "./fake_kernel.ts";
import { runFaithfulnessScenario } from "./faithfulness_scenario.ts";

Deno.test("runFaithfulnessScenario() against FakeKernel shows the observed kernel facts", () => {
  const kernel = new FakeKernel();
  const steps = runFaithfulnessScenario(kernel, { group: 26, device: "0000:00:03.0" });
  const at = (name: string) => {
    const s = steps.find((x) => x.step === name);
    assert.ok(s, `step ${name}`);
    return s;
  };
  assert.equal(at("GET_INFO before SET_IOMMU").ret, -EINVAL);
  assert.equal(at("SET_IOMMU again").ret, -EINVAL);
  assert.equal(at("MAP overlap").ret, -EEXIST);
  assert.equal(at("MAP MSI hole").ret, -EINVAL);
  assert.equal(at("START twice").ret, 0);
  assert.equal(at("STOP while stopped").ret, 0);
  assert.equal(at("GET before START").ret, -EINVAL);
  assert.equal(at("GET data NULL").ret, -EFAULT);
  assert.equal(at("GET 1 MiB").out?.slice(0, 64), "ff".repeat(32), "256 of 256 bits");
  assert.equal(at("UNMAP with bitmap after STOP").ret, -EINVAL);
  assert.equal(at("UNSET_CONTAINER with a device open").ret, -EBUSY);
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
