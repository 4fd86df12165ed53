// The mtty migration rows against FakeMigrationDevice on this host: they must
// run to the end and show what the real mtty driver showed, except the rows
// the scenario lists as kept differences (the same rows run against mtty in
// the 6.12 guest, compared row by row, in
// tests/kernel/mtty/faithfulness_mtty_test.ts).
import assert from "node:assert/strict";
import { fakeMttyWorld, runMttyScenario } from "./faithfulness_mtty_scenario.ts";

Deno.test("runMttyScenario() against FakeMigrationDevice runs every row", () => {
  const { kernel, options } = fakeMttyWorld({
    source: { group: 11, device: "5f0c4a38-2b61-4e2f-9a57-0c1d2e3f4a5b" },
    destination: { group: 12, device: "6a1d5b49-3c72-4f30-8b68-1d2e3f4a5b6c" },
  });
  const steps = runMttyScenario(kernel, options);
  for (const s of steps) console.log(JSON.stringify(s));
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
