// One scenario of raw calls against the real kernel and against FakeKernel in
// the same guest: return codes, errnos, written-back bytes, bitmap bytes and cap
// values must be identical. Where they differ, the fake is wrong.
import assert from "node:assert/strict";
import { LibcSyscalls } from "../../sys/libc.ts";
import { FakeKernel } from "../fake_kernel.ts";
import { runFaithfulnessScenario } from "../faithfulness_scenario.ts";
import { groupAndDevice } from "./_group.ts";

Deno.test("FakeKernel answers the faithfulness scenario exactly as the real kernel", () => {
  const { group, device } = groupAndDevice();
  const real = runFaithfulnessScenario(new LibcSyscalls(), { group, device });
  const kernel = new FakeKernel({ groups: [{ id: group, devices: [{ name: device }] }] });
  const fake = runFaithfulnessScenario(kernel, { group, device });
  assert.equal(fake.length, real.length);
  const differ = real
    .map((r, i) => ({ r, f: fake[i] }))
    .filter(({ r, f }) => JSON.stringify(r) !== JSON.stringify(f))
    .map(({ r, f }) => `${r.step}: real ${JSON.stringify(r)} fake ${JSON.stringify(f)}`);
  assert.deepEqual(differ, [], `the fake differs from the kernel:\n${differ.join("\n")}`);
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
