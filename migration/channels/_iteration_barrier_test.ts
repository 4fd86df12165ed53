import assert from "node:assert/strict";
import { IterationBarrier } from "./_iteration_barrier.ts";

// Whether `p` has settled by the time queued microtasks have run.
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => done = true, () => done = true);
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return done;
}

Deno.test("IterationBarrier holds a channel at marker k until every channel has delivered k", async () => {
  const b = new IterationBarrier(3);
  const first = b.arrive(0, 0);
  assert.equal(await settled(first), false);
  const second = b.arrive(2, 0);
  assert.equal(await settled(first), false);
  assert.equal(await settled(second), false);
  const third = b.arrive(1, 0);
  await Promise.all([first, second, third]);
  // Channel 1 runs ahead to marker 1: it waits, the others are free of marker 0.
  const ahead = b.arrive(1, 1);
  assert.equal(await settled(ahead), false);
  await Promise.all([b.arrive(0, 1), b.arrive(2, 1), ahead]);
  assert.equal(b.endProblem(), undefined);
});

Deno.test("IterationBarrier fails a waiter that a finished channel can never release", async () => {
  const b = new IterationBarrier(2);
  await Promise.all([b.arrive(0, 0), b.arrive(1, 0)]);
  const waiting = b.arrive(0, 1);
  b.finish(1);
  await assert.rejects(waiting, /Channel 1 ended after iteration 0, before iteration 1/);
  await assert.rejects(b.arrive(1, 2), /Channel 1 ended/);
});

Deno.test("IterationBarrier.endProblem() names channels that ended at different iterations", async () => {
  const b = new IterationBarrier(2);
  await Promise.all([b.arrive(0, 0), b.arrive(1, 0)]);
  const p = b.arrive(0, 1);
  b.fail(new RangeError("stopped"));
  await assert.rejects(p, /stopped/);
  assert.match(b.endProblem()!, /Channel 1 ended after iteration 0, channel 0 after 1/);
});
