// kernel-profiles: custom-6.12-viommu
// The pinned-scope rows of the faithfulness scenario against the real 6.12
// kernel (the pintest mdev, then edu's group joining and leaving) and against
// FakeKernel in the same guest: every return code, errno and written-back
// byte must be identical. Where they differ, the fake is wrong.
import assert from "node:assert/strict";
import { LibcSyscalls } from "../../../sys/libc.ts";
import { FakeKernel } from "../../fake_kernel.ts";
import { runPinnedScenario } from "../../faithfulness_pinned_scenario.ts";
import { groupAndDevice } from "../_group.ts";
import { bootProfile } from "../env.ts";
import { createPintest } from "./_pintest.ts";

Deno.test("FakeKernel answers the pinned-scope rows exactly as the real kernel", () => {
  bootProfile("custom-6.12-viommu");
  using mdev = createPintest();
  const edu = groupAndDevice();
  const options = { mdevGroup: mdev.group, mdev: mdev.uuid, eduGroup: edu.group };
  const real = runPinnedScenario(new LibcSyscalls(), options);
  const kernel = new FakeKernel({
    alignInfoCaps: true, // 6.12
    groups: [
      { id: edu.group, devices: [{ name: edu.device }] },
      { id: mdev.group, devices: [{ name: mdev.uuid, model: "pintest" }] },
    ],
  });
  const fake = runPinnedScenario(kernel, options);
  assert.equal(fake.length, real.length);
  const differ = real
    .map((r, i) => ({ r, f: fake[i] }))
    .filter(({ r, f }) => JSON.stringify(r) !== JSON.stringify(f))
    .map(({ r, f }) => `${r.step}: real ${JSON.stringify(r)} fake ${JSON.stringify(f)}`);
  assert.deepEqual(differ, [], `the fake differs from the kernel:\n${differ.join("\n")}`);
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
