import assert from "node:assert/strict";
import { ConvergencePolicy } from "./convergence.ts";

const MiB = 2 ** 20;

Deno.test("ConvergencePolicy.decide() stops when the remaining bytes fit the downtime limit", () => {
  const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
  // 1000 MiB in 1000 ms: 1 MiB/ms; 200 MiB left -> 200 ms.
  const d = p.decide({
    ramBytes: 1000 * MiB,
    wireBytes: 1000 * MiB,
    durationMs: 1000,
    dirtyBytes: 200 * MiB,
    fixedBytes: 0,
    elapsedMs: 1000,
  });
  assert.equal(d.action, "stop-and-copy");
  assert.equal(Math.round(d.expectedDowntimeMs), 200);
});

Deno.test("ConvergencePolicy.decide() iterates while the estimate is over the limit", () => {
  const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
  const d = p.decide({
    ramBytes: 1000 * MiB,
    wireBytes: 1000 * MiB,
    durationMs: 1000,
    dirtyBytes: 400 * MiB,
    fixedBytes: 0,
    elapsedMs: 1000,
  });
  assert.equal(d.action, "iterate");
  assert.equal(Math.round(d.expectedDowntimeMs), 400);
});

Deno.test("ConvergencePolicy.decide() fails after maxIterations, naming auto-converge", () => {
  const p = new ConvergencePolicy({ maxIterations: 3 });
  const s = {
    ramBytes: 100 * MiB,
    wireBytes: 100 * MiB,
    durationMs: 100,
    dirtyBytes: 500 * MiB,
    fixedBytes: 0,
    elapsedMs: 0,
  };
  assert.equal(p.decide(s).action, "iterate");
  assert.equal(p.decide(s).action, "iterate");
  const d = p.decide(s);
  assert.equal(d.action, "fail");
  assert.match(
    d.action === "fail" ? d.reason : "",
    /after 3 iterations: 500\.0 MiB still dirty.*try auto-converge/,
  );
});

Deno.test("ConvergencePolicy.decide() fails after maxTotalMs", () => {
  const p = new ConvergencePolicy({ maxTotalMs: 5000 });
  const d = p.decide({
    ramBytes: 100 * MiB,
    wireBytes: 100 * MiB,
    durationMs: 100,
    dirtyBytes: 500 * MiB,
    fixedBytes: 0,
    elapsedMs: 6000,
  });
  assert.equal(d.action, "fail");
});

Deno.test("ConvergencePolicy.decide() throttles 20 %, then +10 %, up to 99 %", () => {
  const p = new ConvergencePolicy({ autoConverge: true, maxIterations: 100 });
  const hot = {
    ramBytes: 100 * MiB,
    wireBytes: 100 * MiB,
    durationMs: 1000,
    dirtyBytes: 90 * MiB,
    fixedBytes: 0,
    elapsedMs: 0,
  };
  const throttles: number[] = [];
  for (let i = 0; i < 40; i++) {
    const d = p.decide(hot);
    assert.equal(d.action, "iterate");
    if (d.action === "iterate") throttles.push(d.throttle);
  }
  assert.deepEqual(throttles.slice(0, 6), [0, 20, 20, 30, 30, 40]);
  assert.equal(throttles.reduce((a, b) => Math.max(a, b)), 99);
});

Deno.test("ConvergencePolicy.decide() counts fixed full-resend bytes in the downtime", () => {
  const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
  const d = p.decide({
    ramBytes: 1000 * MiB,
    wireBytes: 1000 * MiB,
    durationMs: 1000,
    dirtyBytes: 100 * MiB,
    fixedBytes: 150 * MiB,
    elapsedMs: 1000,
  });
  assert.equal(d.action, "stop-and-copy");
  assert.equal(Math.round(d.expectedDowntimeMs), 250);
  const q = new ConvergencePolicy({ downtimeLimitMs: 300 });
  const f = q.decide({
    ramBytes: 1000 * MiB,
    wireBytes: 1000 * MiB,
    durationMs: 1000,
    dirtyBytes: 10 * MiB,
    fixedBytes: 400 * MiB,
    elapsedMs: 1000,
  });
  assert.equal(f.action, "fail");
  assert.match(f.action === "fail" ? f.reason : "", /resent in full at stop-and-copy/);
});

Deno.test("ConvergencePolicy rejects non-positive limits", () => {
  assert.throws(() => new ConvergencePolicy({ downtimeLimitMs: 0 }), RangeError);
});

Deno.test("ConvergencePolicy.decide() estimates the downtime in RAM bytes, not stream bytes", () => {
  // The bulk pass of 64 MiB of all-zero RAM: 64 MiB of RAM in 20 ms, but
  // only 75 KiB on the wire. The same 64 MiB resent in full at
  // stop-and-copy costs about 20 ms, not 64 MiB at 75 KiB per 20 ms.
  const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
  const d = p.decide({
    ramBytes: 64 * MiB,
    wireBytes: 75 * 1024,
    durationMs: 20,
    dirtyBytes: 0,
    fixedBytes: 64 * MiB,
    elapsedMs: 25,
  });
  assert.equal(d.action, "stop-and-copy");
  assert.equal(Math.round(d.expectedDowntimeMs), 20);
});

Deno.test("ConvergencePolicy.decide() counts device state at the stream's rate", () => {
  const p = new ConvergencePolicy({ downtimeLimitMs: 150 });
  // RAM at 2 MiB/ms, the wire at 1 MiB/ms: 100 MiB of dirty RAM (at the slower
  // rate, 100 ms) and 150 MiB of device state (150 ms).
  const d = p.decide({
    ramBytes: 200 * MiB,
    wireBytes: 100 * MiB,
    durationMs: 100,
    dirtyBytes: 100 * MiB,
    fixedBytes: 0,
    deviceBytes: 150 * MiB,
    elapsedMs: 100,
  });
  assert.equal(d.action, "iterate");
  assert.equal(Math.round(d.expectedDowntimeMs), 250);
  const f = new ConvergencePolicy({ downtimeLimitMs: 100 }).decide({
    ramBytes: 200 * MiB,
    wireBytes: 100 * MiB,
    durationMs: 100,
    dirtyBytes: 0,
    fixedBytes: 0,
    deviceBytes: 150 * MiB,
    elapsedMs: 100,
  });
  assert.equal(f.action, "fail");
  assert.match(
    f.action === "fail" ? f.reason : "",
    /^150\.0 MiB of device state alone need 150 ms/,
  );
});

Deno.test("ConvergencePolicy.decide() estimates dirtied pages at the wire's rate after a zero-rich or compressed pass", () => {
  // The bulk pass: 1 GiB of RAM (40 % zero, the rest compressed) in 2700 ms,
  // 305 MiB on the wire. 84 MiB dirtied by the guest go at the wire's rate
  // (about 740 ms), not at the RAM's (about 220 ms): they are data it wrote.
  const p = new ConvergencePolicy({ downtimeLimitMs: 300 });
  const d = p.decide({
    ramBytes: 1024 * MiB,
    wireBytes: 305 * MiB,
    durationMs: 2700,
    dirtyBytes: 84 * MiB,
    fixedBytes: 0,
    elapsedMs: 2700,
  });
  assert.equal(d.action, "iterate");
  assert.equal(Math.round(d.expectedDowntimeMs), Math.round(84 / (305 / 2700)));
  // Uncompressed data pages (wire = RAM): the same estimate as before.
  const q = new ConvergencePolicy({ downtimeLimitMs: 300 }).decide({
    ramBytes: 1000 * MiB,
    wireBytes: 1001 * MiB,
    durationMs: 1000,
    dirtyBytes: 100 * MiB,
    fixedBytes: 0,
    elapsedMs: 1000,
  });
  assert.equal(q.action, "stop-and-copy");
  assert.equal(Math.round(q.expectedDowntimeMs), 100);
});
