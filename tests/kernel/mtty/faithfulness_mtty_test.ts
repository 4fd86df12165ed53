// kernel-profiles: custom-6.12-viommu
// The mtty migration rows against the real mtty driver and against
// FakeMigrationDevice in the same guest: every return code, errno, device
// state and byte-count relation must be identical, except the rows the
// scenario lists as kept differences, which must differ exactly as listed.
import assert from "node:assert/strict";
import { LibcSyscalls } from "../../../sys/libc.ts";
import type { StepResult } from "../../faithfulness_scenario.ts";
import {
  expectedFakeRows,
  fakeMttyWorld,
  MTTY_KEPT_DIFFERENCES,
  MTTY_OBSERVED,
  observedMttyRows,
  runMttyScenario,
} from "../../faithfulness_mtty_scenario.ts";
import { bootProfile } from "../env.ts";
import { createMttyMdev, MttyPort, readPort, UART } from "./_mtty.ts";

Deno.test("FakeMigrationDevice answers the mtty migration rows as the real mtty driver, but for the kept differences", () => {
  bootProfile("custom-6.12-viommu");
  using source = createMttyMdev();
  using destination = createMttyMdev();
  const where = {
    source: { group: source.groupId, device: source.uuid },
    destination: { group: destination.groupId, device: destination.uuid },
  };
  let touched = 0;
  const real = runMttyScenario(new LibcSyscalls(), {
    ...where,
    touch(dev) {
      new MttyPort(dev).write(UART.RBR, 0x41 + touched++);
    },
    sameState(src, dst) {
      return JSON.stringify(readPort(new MttyPort(src))) ===
        JSON.stringify(readPort(new MttyPort(dst)));
    },
  });
  const show = (r: StepResult) => JSON.stringify(r);
  const changed = real
    .map((r, i) => ({ r, o: observedMttyRows()[i] }))
    .filter(({ r, o }) => show(r) !== show(o))
    .map(({ r, o }) => `${o?.step}: now ${show(r)}, was ${o ? show(o) : "no such row"}`);
  if (changed.length > 0) { for (const r of real) console.log(`real ${show(r)}`); }
  assert.deepEqual(
    changed,
    [],
    `mtty answers otherwise than MTTY_OBSERVED:\n${changed.join("\n")}`,
  );
  assert.equal(real.length, MTTY_OBSERVED.length);
  const { kernel, options } = fakeMttyWorld(where);
  const fake = runMttyScenario(kernel, options);
  assert.equal(fake.length, real.length);
  const unexpected = real
    .map((r, i) => ({ r, f: fake[i] }))
    .filter(({ r, f }) => show(r) !== show(f) && !(r.step in MTTY_KEPT_DIFFERENCES))
    .map(({ r, f }) => `${r.step}: real ${show(r)} fake ${show(f)}`);
  assert.deepEqual(unexpected, [], `the fake differs from mtty:\n${unexpected.join("\n")}`);
  assert.deepEqual(fake, expectedFakeRows(), "the kept differences, as listed");
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
