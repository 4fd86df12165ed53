import assert from "node:assert/strict";
import { closingLines, denoSummary, kernelTotal, skipReason } from "./_summary.ts";

Deno.test("denoSummary() reads passed, failed and ignored from deno test's closing line", () => {
  assert.deepEqual(denoSummary("ok | 12 passed (3 steps) | 0 failed | 2 ignored (1s)"), {
    passed: 12,
    failed: 0,
    ignored: 2,
  });
  assert.deepEqual(denoSummary("FAILED | 318 passed | 1 failed (59s)"), {
    passed: 318,
    failed: 1,
    ignored: 0,
  });
  assert.equal(denoSummary("running 4 tests from ./x_test.ts"), undefined);
  assert.deepEqual(kernelTotal("kernel: 30 passed, 1 failed"), {
    passed: 30,
    failed: 1,
    ignored: 0,
  });
  assert.equal(kernelTotal("kernel[6.1]: 30 passed, 1 failed"), undefined);
});

Deno.test("skipReason() reads a host-conformance skip line", () => {
  assert.equal(
    skipReason("host-conformance skipped: host-conformance: x() y: needs root (uid 1000)"),
    "host-conformance: x() y: needs root (uid 1000)",
  );
  assert.equal(skipReason("skipped: something else"), undefined);
});

Deno.test("closingLines() prints each skip's reason, then N passed, N failed, N skipped", () => {
  const reasons = ["host-conformance: a: needs root (uid 1000)", "host-conformance: b: needs x"];
  assert.deepEqual(
    closingLines(
      [{ passed: 10, failed: 0, ignored: 2 }, { passed: 5, failed: 1, ignored: 0 }],
      reasons,
    ),
    {
      lines: [
        "skipped: host-conformance: a: needs root (uid 1000)",
        "skipped: host-conformance: b: needs x",
        "15 passed, 1 failed, 2 skipped",
      ],
      failed: 1,
    },
  );
  assert.deepEqual(closingLines([{ passed: 3, failed: 0, ignored: 0 }], []), {
    lines: ["3 passed, 0 failed"],
    failed: 0,
  });
});

Deno.test("closingLines() counts a test ignored without a printed reason as failed", () => {
  assert.deepEqual(
    closingLines([{ passed: 3, failed: 0, ignored: 2 }], ["host-conformance: a: needs x"]),
    {
      lines: [
        "skipped: host-conformance: a: needs x",
        "1 tests were ignored without a printed reason: counted as failed",
        "3 passed, 1 failed, 1 skipped",
      ],
      failed: 1,
    },
  );
});
