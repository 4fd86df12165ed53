// kernel-profiles: custom-6.12-viommu
// The mtty migration rows against the real mtty driver and against
// FakeMigrationDevice in the same guest: every return code, errno, device
// state and byte-count relation must be identical, except the rows the
// scenario lists as kept differences, which must differ exactly as listed.
import assert from "node:assert/strict";
import { LibcSyscalls } from "../../../sys/libc.ts";
import type { StepResult } from "../../faithfulness_scenario.ts";
import {
  fakeMttyWorld,
  MTTY_KEPT_DIFFERENCES,
  runMttyScenario,
} from "../../faithfulness_mtty_scenario.ts";
import { bootProfile } from "../env.ts";
import { createMtty, MttyPort, readPort, UART } from "./_mtty.ts";

Deno.test("FakeMigrationDevice answers the mtty migration rows as the real mtty driver, but for the kept differences", () => {
  bootProfile("custom-6.12-viommu");
  using source = createMtty();
  using destination = createMtty();
  // The scenario opens the devices itself: free these fds, keep the mdevs.
  const where = {
    source: { group: source.groupId, device: source.uuid },
    destination: { group: destination.groupId, device: destination.uuid },
  };
  source.device.close();
  source.group.close();
  source.container.close();
  destination.device.close();
  destination.group.close();
  destination.container.close();
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
  for (const r of real) console.log(`real ${JSON.stringify(r)}`);
  const { kernel, options } = fakeMttyWorld(where);
  const fake = runMttyScenario(kernel, options);
  assert.equal(fake.length, real.length);
  const show = (r: StepResult) => JSON.stringify(r);
  const differ = real
    .map((r, i) => ({ r, f: fake[i] }))
    .filter(({ r, f }) => show(r) !== show(f));
  const unexpected = differ
    .filter(({ r }) => !MTTY_KEPT_DIFFERENCES.includes(r.step))
    .map(({ r, f }) => `${r.step}: real ${show(r)} fake ${show(f)}`);
  assert.deepEqual(unexpected, [], `the fake differs from mtty:\n${unexpected.join("\n")}`);
  assert.deepEqual(
    differ.map(({ r }) => r.step),
    [...MTTY_KEPT_DIFFERENCES],
    "every kept difference is still one",
  );
  assert.equal(kernel.openFds + kernel.liveMappings + kernel.dmaMappings, 0);
});
