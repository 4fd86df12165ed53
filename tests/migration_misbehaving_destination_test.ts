// The source against destinations that speak the protocol but misbehave:
// every wait on the destination is bounded, a wrong verdict is a failure,
// the failure names what happened, and the guest runs again afterwards.
import assert from "node:assert/strict";
import { fillRam } from "../cli/fill.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { WorkerWriter } from "../memory/worker_writer.ts";
import { MigrationFailure } from "../migration/engine/precopy.ts";
import type { ConvergenceLimits } from "../migration/engine/convergence.ts";
import { migrateGuest } from "../migration/guest/source.ts";
import { WorkerWorkload } from "../migration/guest/worker_workload.ts";
import { guestAddress } from "../sys/address.ts";
import { fakeDestination, type Misbehaviour, verdictText } from "./_fake_destination.ts";
import { controlCharacters, until, within } from "./_support.ts";

const MiB = 2 ** 20;
const RAM = 32 * MiB;
const PEER_TIMEOUT_MS = 1000;

/**
 * Migrates 32 MiB under a running Worker to a destination that misbehaves
 * as told; returns the failure once the guest is seen running again.
 */
async function against(
  how: Misbehaviour,
  limits: ConvergenceLimits = {},
): Promise<MigrationFailure> {
  using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(RAM) }], {
    backing: "memfd",
  });
  fillRam(memory.view(guestAddress(0n), RAM), { pattern: "random", seed: 7 });
  const writer = await WorkerWriter.start(memory, {
    pattern: "random",
    pagesPerSecond: 2000,
    seed: 7,
  });
  try {
    const workload = new WorkerWorkload([writer], { pagesPerSecond: 2000 });
    await using dst = fakeDestination(RAM, how);
    // The bound of this wait is the test's; the migration's own bounds are
    // what is under test, and they are far shorter.
    const settled = await within(
      migrateGuest({
        memory,
        to: dst.endpoint,
        workload,
        peerTimeoutMs: PEER_TIMEOUT_MS,
        limits: { maxTotalMs: 20_000, ...limits },
      }).then((r) => ({ report: r }), (e) => ({ error: e })),
      60_000,
    );
    assert.notEqual(settled, "timeout", "migrateGuest() settled within 60 s");
    if (settled === "timeout" || "report" in settled) {
      return assert.fail(
        `migrateGuest() completed against a destination that ${JSON.stringify(how)}`,
      );
    }
    const failure = settled.error;
    assert.ok(failure instanceof MigrationFailure, `a MigrationFailure, not ${failure}`);
    assert.equal(failure.report.result, "failed");
    assert.equal(failure.report.error, failure.message);
    // The guest runs again: the Worker is back to running and keeps writing.
    assert.ok(await until(() => writer.state === "running", 5000), `writer ${writer.state}`);
    const writes = writer.writes;
    assert.ok(await until(() => writer.writes > writes, 5000), "the workload writes again");
    return failure;
  } finally {
    await writer.stop();
  }
}

Deno.test("migrateGuest() resumes the guest and fails when the destination never answers COMPLETE", async () => {
  const f = await against({ silentAtComplete: true });
  assert.match(f.message, /^The destination did not confirm it holds the whole image within 1 s$/);
  assert.equal(f.report.failedPhase, "stop-and-copy", "the phase that was running");
  assert.equal(f.report.downtimeMs, null, "no downtime is claimed without the image answer");
});

Deno.test("migrateGuest() resumes the guest and fails when the destination never gives its verdict", async () => {
  const f = await against({ silentVerdict: true });
  assert.match(f.message, /^The destination did not give its verdict within 1\.25 s$/);
  assert.equal(f.report.failedPhase, "complete");
});

Deno.test("migrateGuest() fails on a verdict whose digest differs from the source's", async () => {
  const f = await against({ verdict: verdictText("deadbeef".repeat(8)) });
  assert.match(
    f.message,
    /^The destination verified a different image: its digest (deadbeef){8} differs from the source's [0-9a-f]{64}$/,
  );
  assert.equal(f.report.failedPhase, "complete");
  assert.equal(f.report.destinationDigest, "deadbeef".repeat(8));
});

Deno.test("migrateGuest() fails on an empty verdict digest", async () => {
  const f = await against({ verdict: new Uint8Array(0) });
  assert.match(f.message, /^The destination verified a different image: its digest is empty/);
});

Deno.test("migrateGuest() fails on a verdict that is not UTF-8", async () => {
  const f = await against({ verdict: new Uint8Array([0xff, 0xfe, 0x41]) });
  assert.match(f.message, /Destination answer of 3 bytes is not valid UTF-8/);
});

Deno.test("migrateGuest() fails within its bound when the destination stops reading", async () => {
  const f = await against({ stopReadingAfter: 100_000 });
  assert.match(
    f.message,
    /^Migration failed in pre-copy: No progress on tcp:127\.0\.0\.1:\d+ for 1 s: the peer stopped reading$/,
  );
});

Deno.test("migrateGuest() --max-seconds bounds the whole migration, not only the gaps between iterations", async () => {
  // 32 MiB at 2 MiB/s needs 16 s; the destination never stalls for a whole second.
  const f = await against({ readBytesPerSecond: 2 * MiB }, { maxTotalMs: 2000 });
  assert.match(
    f.message,
    /^Migration failed in pre-copy: the migration did not complete within its limit of 2 s$/,
  );
  assert.equal(f.report.failedPhase, "iterate");
  assert.equal(f.report.iterations.length, 0, "iteration 0 never finished");
});

Deno.test("migrateGuest() escapes a destination's refusal text", async () => {
  const f = await against({ rejectWith: "no\n\x1b[32mmigration completed: fake\u202e" });
  assert.equal(
    f.message,
    "Destination rejected the image: no\\n\\x1b[32mmigration completed: fake\\u{202e}",
  );
  assert.deepEqual(controlCharacters(f.message, { newline: true }), []);
});
