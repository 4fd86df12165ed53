import assert from "node:assert/strict";
import { until } from "../../tests/_support.ts";
import { KvmWorkload, type PausableVm } from "./kvm_workload.ts";

/** A VM whose vCPUs are one flag: running or not; it records the calls. */
function recordingVm(): PausableVm & { running: boolean; calls: string[] } {
  const vm = {
    running: true,
    calls: [] as string[],
    pause() {
      vm.calls.push("pause");
      vm.running = false;
      return Promise.resolve();
    },
    resume() {
      vm.calls.push("resume");
      vm.running = true;
    },
  };
  return vm;
}

Deno.test("KvmWorkload.setThrottle() pauses the vCPUs for a share of each period", async () => {
  const vm = recordingVm();
  using w = new KvmWorkload(vm, { timesliceMs: 1 });
  w.setThrottle(50);
  assert.ok(await until(() => w.stats.periods >= 3, 10_000), "three throttle periods");
  assert.equal(w.stats.percent, 50);
  assert.ok(w.stats.sleptMs > 0);
  // Every period pauses, then resumes: never two pauses in a row.
  assert.doesNotMatch(vm.calls.join(","), /pause,pause|resume,resume/);
  w.setThrottle(0);
  assert.equal(vm.running, true, "back to full speed at once");
  assert.equal(vm.calls.at(-1), "resume");
});

Deno.test("KvmWorkload.pause() holds the vCPUs whatever the throttle does", async () => {
  const vm = recordingVm();
  using w = new KvmWorkload(vm, { timesliceMs: 1 });
  w.setThrottle(90);
  assert.ok(await until(() => w.stats.periods >= 1 && !vm.running, 10_000));
  await w.pause(); // stop-and-copy, during the throttle's sleep
  const periods = w.stats.periods;
  assert.ok(await until(() => w.stats.periods > periods, 10_000), "the periods go on");
  assert.equal(vm.running, false, "but never let the vCPUs run while held");
  w.setThrottle(0); // a failed migration's undo lifts the throttle first ...
  assert.equal(vm.running, false, "still held");
  w.resume(); // ... then resumes
  assert.equal(vm.running, true);
});

Deno.test("KvmWorkload.setThrottle() refuses a share outside 0 to 99", () => {
  using w = new KvmWorkload(recordingVm());
  assert.throws(() => w.setThrottle(100), RangeError);
  assert.throws(() => w.setThrottle(-1), RangeError);
  assert.throws(() => new KvmWorkload(recordingVm(), { timesliceMs: 0 }), RangeError);
});
