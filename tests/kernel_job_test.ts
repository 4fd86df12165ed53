// The real-kernel harness's job script and its per-file tally, run here on
// the host: one `deno test` per file, each bounded, so a test that never
// returns costs its own file and the other files still count.
import assert from "node:assert/strict";
import { FileTally } from "./kernel/harness/file_tally.ts";
import { denoDir, FILE_MARKERS, jobScript } from "./kernel/harness/job.ts";

const NONCE = "0123456789abcdef";

function feed(tally: FileTally, text: string): void {
  for (const line of text.split("\n")) tally.line(line);
}

Deno.test("FileTally adds each file's summary, and counts a killed file's unpassed tests as failed", () => {
  const tally = new FileTally({
    nonce: NONCE,
    files: ["a_test.ts", "b_test.ts"],
    declared: [2, 4],
  });
  feed(
    tally,
    [
      `${FILE_MARKERS.begin} ${NONCE} 0`,
      "one ... ok (1ms)",
      "two ... FAILED (2ms)",
      "FAILED | 1 passed | 1 failed (5ms)",
      `${FILE_MARKERS.end} ${NONCE} 0 1`,
      `${FILE_MARKERS.begin} ${NONCE} 1`,
      "first ... ok (1s)",
      "  a step ... ok (1ms)",
      "hangs ...",
      `${FILE_MARKERS.end} ${NONCE} 1 124`,
    ].join("\n"),
  );
  assert.deepEqual(tally.totals, { passed: 2, failed: 4 });
  assert.deepEqual(tally.unfinished, [{ file: "b_test.ts", code: 124, passed: 1, failed: 3 }]);
  assert.deepEqual(tally.notEnded(), { passed: 0, failed: 0 });
});

Deno.test("FileTally ignores markers without its nonce, and counts files the deadline cut off", () => {
  const tally = new FileTally({
    nonce: NONCE,
    files: ["a_test.ts", "b_test.ts", "c_test.ts"],
    declared: [1, 3, 2],
  });
  feed(
    tally,
    [
      `${FILE_MARKERS.begin} ${NONCE} 0`,
      // A test's own output cannot end its file early or forge a result.
      `${FILE_MARKERS.end} ffffffffffffffff 0 0`,
      "ok | 1 passed | 0 failed (1ms)",
      `${FILE_MARKERS.end} ${NONCE} 0 0`,
      `${FILE_MARKERS.begin} ${NONCE} 1`,
      "x ... ok (1ms)",
    ].join("\n"),
  );
  assert.equal(tally.started, true);
  assert.deepEqual(tally.totals, { passed: 1, failed: 0 });
  // b ran one of its three tests when the boot's deadline came; c never began.
  assert.deepEqual(tally.notEnded(), { passed: 1, failed: 2 + 2 });
});

Deno.test("jobScript() bounds each file: a hanging file is killed, the next file still runs and counts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-job-test-" });
  try {
    await Deno.writeTextFile(
      `${dir}/hangs_test.ts`,
      [
        `Deno.test("passes first", () => {});`,
        `Deno.test("never returns", () => new Promise(() => { setInterval(() => {}, 1000); }));`,
      ].join("\n"),
    );
    await Deno.writeTextFile(`${dir}/fine_test.ts`, `Deno.test("fine", () => {});\n`);
    const files = [`${dir}/hangs_test.ts`, `${dir}/fine_test.ts`];
    const script = jobScript({
      project: dir,
      files,
      denoFlags: [],
      denoDir: await denoDir(Deno.cwd()),
      fileTimeoutSeconds: 3,
      fileNonce: NONCE,
    });
    await Deno.writeTextFile(`${dir}/job.sh`, script);
    const out = await new Deno.Command("sh", {
      args: [`${dir}/job.sh`, ""],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      // Without the per-file bound the script would never end: bound it here.
      signal: AbortSignal.timeout(60_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const tally = new FileTally({ nonce: NONCE, files, declared: [2, 1] });
    feed(tally, text);
    assert.equal(out.code, 1, text);
    assert.deepEqual(tally.totals, { passed: 2, failed: 1 }, text);
    assert.equal(tally.unfinished.length, 1, text);
    assert.equal(tally.unfinished[0].file, files[0]);
    assert.equal(tally.unfinished[0].code, 124, "killed by timeout at its bound");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileTally ends a file the guest locked up in, and names the files a new boot must run", () => {
  const tally = new FileTally({
    nonce: NONCE,
    files: ["a_test.ts", "b_test.ts", "c_test.ts", "d_test.ts"],
    declared: [1, 3, 2, 5],
  });
  assert.equal(tally.running, undefined);
  feed(
    tally,
    [
      `${FILE_MARKERS.begin} ${NONCE} 0`,
      "one ... ok (1ms)",
      "ok | 1 passed | 0 failed (5ms)",
      `${FILE_MARKERS.end} ${NONCE} 0 0`,
      `${FILE_MARKERS.begin} ${NONCE} 1`,
      "first ... ok (1s)",
      "second ...",
    ].join("\n"),
  );
  const running = tally.running!;
  assert.deepEqual([running.index, running.file], [1, "b_test.ts"]);
  assert.ok(running.sinceMs <= performance.now());
  assert.deepEqual(tally.notBegun(), [2, 3], "the running file is not for the next boot");
  tally.endRunning();
  assert.equal(tally.running, undefined);
  assert.deepEqual(tally.totals, { passed: 2, failed: 2 }, "b: 1 passed, 2 of 3 failed");
  assert.deepEqual(tally.unfinished, [{ file: "b_test.ts", code: 137, passed: 1, failed: 2 }]);
  assert.deepEqual(tally.notBegun(), [2, 3]);
  tally.endRunning(); // nothing running: no change
  assert.deepEqual(tally.totals, { passed: 2, failed: 2 });
});
