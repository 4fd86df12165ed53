// The destination killed mid-stream: a `receive` process is SIGKILLed once
// the in-process source has sent its first pre-copy iteration. The source
// must fail cleanly, keep its workload running, leave its RAM alone, and
// release its socket.
import assert from "node:assert/strict";
import { fillRam } from "../cli/fill.ts";
import { diffPageDigests, digestMemory } from "../memory/digest.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { WorkerWriter } from "../memory/worker_writer.ts";
import { MigrationFailure } from "../migration/engine/precopy.ts";
import { migrateGuest } from "../migration/guest/source.ts";
import { WorkerWorkload } from "../migration/guest/worker_workload.ts";
import { guestAddress } from "../sys/address.ts";
import { type Cli, openFds, startCli, until, within } from "./_support.ts";

const GiB = 2 ** 30;
const PAGE = 4096;

async function startDestination(report: string): Promise<Cli> {
  const dst = startCli(["receive", "--from", "tcp:127.0.0.1:0", "--ram", "1G", "--report", report]);
  await dst.line(/^listening on (tcp:\S+)/);
  return dst;
}

interface Outcome {
  failure: MigrationFailure;
  killedAfterIteration: number;
  destination: Deno.CommandStatus;
  stderr: string[];
  ms: number;
}

/**
 * Migrates `memory` to a fresh `receive` process and SIGKILLs it at the first
 * iteration row; returns the rejection.
 */
async function migrateAndKill(
  memory: GuestMemory,
  dir: string,
  workload?: WorkerWorkload,
): Promise<Outcome> {
  const report = `${dir}/dst.json`;
  await using dst = await startDestination(report);
  const endpoint = (await dst.line(/^listening on (tcp:\S+)/))[1];
  {
    let killedAfterIteration = -1;
    const t0 = performance.now();
    const migration = migrateGuest({
      memory,
      to: endpoint,
      workload,
      limits: { downtimeLimitMs: 1, maxIterations: 1000 },
      onEvent: (e) => {
        if (e.type === "iteration" && killedAfterIteration < 0) {
          killedAfterIteration = e.row.iteration;
          dst.child.kill("SIGKILL");
        }
      },
    });
    const settled = await within(migration.then((r) => ({ resolved: r }), (e) => ({ e })), 120_000);
    if (settled === "timeout") {
      // Killing the destination ends the stream, so the migration settles.
      await dst[Symbol.asyncDispose]();
      await migration.catch(() => {});
      assert.fail("migrateGuest() did not settle within 120 s");
    }
    const ms = performance.now() - t0;
    if ("resolved" in settled) {
      const r = settled.resolved;
      assert.fail(
        `migrateGuest() resolved (${r.result}, ${r.iterations.length} iterations) though the ` +
          `destination was killed after iteration ${killedAfterIteration}`,
      );
    }
    const failure = settled.e;
    assert.ok(
      failure instanceof MigrationFailure,
      `migrateGuest() rejects with a MigrationFailure, not ${failure}`,
    );
    const status = await dst.exit(10_000);
    // The report file is opened before the stream starts (so a bad path fails
    // early); killed, the destination never wrote a report into it.
    assert.equal(await Deno.readTextFile(report), "", "the destination never reports");
    return {
      failure,
      killedAfterIteration,
      destination: status,
      stderr: dst.stderr,
      ms,
    };
  }
}

function assertKilledMidStream(o: Outcome, ram: number): void {
  const r = o.failure.report;
  const context = `${r.error}; destination stderr:\n${o.stderr.join("\n")}`;
  assert.equal(o.killedAfterIteration, 0, "the destination was killed at the first iteration");
  assert.equal(o.destination.success, false);
  assert.equal(o.destination.signal, "SIGKILL", "the destination exited by SIGKILL");
  assert.equal(r.result, "failed", context);
  assert.equal(typeof r.error, "string");
  assert.ok(r.error!.length > 0);
  assert.ok(
    r.failedPhase === "iterate" || r.failedPhase === "stop-and-copy" ||
      r.failedPhase === "complete",
    `failed in ${r.failedPhase}: ${context}`,
  );
  assert.equal(r.destinationDigest, null, "no destination digest from a killed destination");
  assert.equal(r.downtimeMs, null);
  assert.ok(r.iterations.length >= 1, "the first iteration is in the report");
  assert.equal(r.iterations[0].sentPages, ram / PAGE, "iteration 0 sent every page");
}

function ramWith(size: number, seed: number): GuestMemory {
  const memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(size) }], {
    backing: "memfd",
  });
  try {
    fillRam(memory.view(guestAddress(0n), size), { pattern: "random", seed });
  } catch (e) {
    memory.close();
    throw e;
  }
  return memory;
}

/** Runs `body` with a temp dir and checks that no descriptor or file outlives it. */
async function withCleanCheck(
  prefix: string,
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const fds = openFds();
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "the temp dir is gone");
  assert.deepEqual(openFds(), fds, "no descriptor (socket, memfd, pagemap) is left open");
}

Deno.test("migrateGuest() fails cleanly when the destination is SIGKILLed mid-stream under a running workload", async () => {
  await withCleanCheck("deno-vmm-killed-workload-", async (dir) => {
    const memory = ramWith(GiB, 11);
    let writer: WorkerWriter | undefined;
    try {
      const before = digestMemory(memory);
      writer = await WorkerWriter.start(memory, { pattern: "random", pagesPerSecond: 20_000 });
      const workload = new WorkerWorkload([writer], { pagesPerSecond: 20_000 });
      const o = await migrateAndKill(memory, dir, workload);
      const stateAtFailure = writer.state;
      assertKilledMidStream(o, GiB);

      // The source keeps running. A failure in pre-copy never paused it; after
      // stop-and-copy paused it, migrate() resumes it without waiting for the
      // Worker's answer, so the state may lag the rejection briefly.
      if (o.failure.report.failedPhase === "iterate") {
        assert.equal(stateAtFailure, "running", "pre-copy never pauses the workload");
      }
      const w = writer;
      assert.ok(
        await until(() => w.state === "running", 2_000),
        `the workload runs after the failure (state ${w.state}, ${stateAtFailure} at the rejection)`,
      );
      const writes = writer.writes;
      assert.ok(
        await until(() => w.writes > writes, 2_000),
        `the workload keeps writing after the failure (${writes} writes)`,
      );

      // Only pages the workload wrote changed.
      await writer.pause();
      const after = digestMemory(memory);
      const written = writer.written();
      const changed = diffPageDigests(before, after);
      assert.ok(changed.length > 0, "the workload wrote during the migration");
      const unexplained = changed.filter(([region, page]) => region !== 0 || !written.test(page));
      assert.deepEqual(unexplained, [], "every changed page was written by the workload");
      console.log(
        `killed after iteration ${o.killedAfterIteration}; failed in ${o.failure.report.failedPhase} ` +
          `after ${o.ms.toFixed(0)} ms, ${o.failure.report.iterations.length} iterations: ` +
          `${o.failure.report.error}; writer ${stateAtFailure} at the rejection; ` +
          `${changed.length} pages changed by ${writer.writes} writes`,
      );
    } finally {
      await writer?.stop();
      memory.close();
    }
  });
});

Deno.test("migrateGuest() leaves the source RAM untouched when the destination is SIGKILLed mid-stream", async () => {
  await withCleanCheck("deno-vmm-killed-idle-", async (dir) => {
    const memory = ramWith(GiB, 12);
    try {
      const before = digestMemory(memory).hex;
      const o = await migrateAndKill(memory, dir);
      assertKilledMidStream(o, GiB);
      assert.equal(digestMemory(memory).hex, before, "the source RAM is unchanged");
      console.log(
        `killed after iteration ${o.killedAfterIteration}; failed in ${o.failure.report.failedPhase} ` +
          `after ${o.ms.toFixed(0)} ms: ${o.failure.report.error}`,
      );
    } finally {
      memory.close();
    }
  });
});
