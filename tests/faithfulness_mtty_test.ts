// The mtty migration rows against FakeMigrationDevice on this host: every row
// must be what the real mtty driver answered in the 6.12 guest
// (MTTY_OBSERVED), except the kept differences, which must be the fake's
// answers listed with them. The same rows run against mtty itself, and are
// compared with these, in tests/kernel/mtty/faithfulness_mtty_test.ts.
import assert from "node:assert/strict";
import {
  expectedFakeRows,
  fakeMttyWorld,
  MTTY_KEPT_DIFFERENCES,
  MTTY_OBSERVED,
  runMttyScenario,
} from "./faithfulness_mtty_scenario.ts";

Deno.test("runMttyScenario() against FakeMigrationDevice answers as the real mtty, but for the kept differences", () => {
  const { kernel, options } = fakeMttyWorld({
    source: { group: 11, device: "5f0c4a38-2b61-4e2f-9a57-0c1d2e3f4a5b" },
    destination: { group: 12, device: "6a1d5b49-3c72-4f30-8b68-1d2e3f4a5b6c" },
  });
  const steps = runMttyScenario(kernel, options);
  assert.deepEqual(steps, expectedFakeRows());
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});

Deno.test("MTTY_KEPT_DIFFERENCES names rows of the scenario, each answered differently by mtty", () => {
  for (const [step, [ret, out]] of Object.entries(MTTY_KEPT_DIFFERENCES)) {
    const real = MTTY_OBSERVED.find((r) => r[0] === step);
    assert.ok(real !== undefined, step);
    assert.notDeepEqual([real[1], real[2]], [ret, out], step);
  }
});
