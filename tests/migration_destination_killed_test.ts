// The destination killed mid-stream: a `receive` process is SIGKILLed once
// the in-process source has sent its first pre-copy iteration. The source
// must fail cleanly, keep its workload running, leave its RAM alone, and
// release its socket.
import assert from "node:assert/strict";
import { fillRam } from "../cli/fill.ts";
import { diffPageDigests, digestMemory } from "../memory/digest.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { WorkerWriter } from "../memory/worker_writer.ts";
import { MigrationFailure } from "../migration/precopy.ts";
import { migrateGuest } from "../migration/source.ts";
import { WorkerWorkload } from "../migration/worker_workload.ts";
import { guestAddress } from "../sys/address.ts";

const GiB = 2 ** 30;
const PAGE = 4096;
const MOD = new URL("../mod.ts", import.meta.url).pathname;
const PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
];

/**
 * What this process's descriptors point at (libc ones too, which the resource
 * sanitizer cannot see), leaving out the eventfd/epoll pair a terminated
 * Worker's runtime keeps until Deno reaps it.
 */
function openFds(): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
    } catch {
      continue; // the descriptor readDirSync itself used
    }
    if (target === "anon_inode:[eventfd]" || target === "anon_inode:[eventpoll]") continue;
    out.push(`${e.name} -> ${target}`);
  }
  return out.sort();
}

/** `promise`, or `"timeout"` if it has not settled after `ms` (its rejection is passed on). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

/** A `receive` process and its stderr, line by line. */
interface Destination {
  child: Deno.ChildProcess;
  stderr: string[];
  drained: Promise<unknown>;
  endpoint: string;
}

async function startDestination(report: string): Promise<Destination> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...PERMISSIONS,
      MOD,
      "receive",
      "--from",
      "tcp:127.0.0.1:0",
      "--ram",
      "1G",
      "--report",
      report,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  let listening!: (endpoint: string) => void;
  const endpoint = new Promise<string>((resolve) => listening = resolve);
  const drained = Promise.all([
    new Response(child.stdout).text(),
    (async () => {
      let rest = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop()!;
        for (const l of lines) {
          stderr.push(l);
          const m = /^listening on (tcp:\S+)/.exec(l);
          if (m) listening(m[1]);
        }
      }
      if (rest) stderr.push(rest);
    })(),
  ]);
  const dst: Destination = { child, stderr, drained, endpoint: "" };
  const first = await within(
    Promise.race([endpoint, child.status.then((s) => ({ exited: s }))]),
    30_000,
  );
  if (typeof first === "string" && first !== "timeout") {
    dst.endpoint = first;
    return dst;
  }
  await stopDestination(dst);
  return assert.fail(
    first === "timeout"
      ? `The destination did not listen within 30 s:\n${stderr.join("\n")}`
      : `The destination exited (${first.exited.code}) before listening:\n${stderr.join("\n")}`,
  );
}

/** Kills the destination if it still runs, and reaps it. */
async function stopDestination(dst: Destination): Promise<Deno.CommandStatus> {
  try {
    dst.child.kill("SIGKILL");
  } catch {
    // Already exited.
  }
  const status = await dst.child.status;
  await dst.drained;
  return status;
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
  const dst = await startDestination(report);
  try {
    let killedAfterIteration = -1;
    const t0 = performance.now();
    const migration = migrateGuest({
      memory,
      to: dst.endpoint,
      workload,
      limits: { downtimeLimitMs: 1, maxIterations: 1000 },
      onProgress: (p) => {
        if (p.row && killedAfterIteration < 0) {
          killedAfterIteration = p.row.iteration;
          dst.child.kill("SIGKILL");
        }
      },
    });
    const settled = await within(migration.then((r) => ({ resolved: r }), (e) => ({ e })), 120_000);
    if (settled === "timeout") {
      // Killing the destination ends the stream, so the migration settles.
      await stopDestination(dst);
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
    const status = await within(dst.child.status, 10_000);
    assert.notEqual(status, "timeout", "the destination exits once killed");
    await dst.drained;
    // The report file is opened before the stream starts (so a bad path fails
    // early); killed, the destination never wrote a report into it.
    assert.equal(await Deno.readTextFile(report), "", "the destination never reports");
    return {
      failure,
      killedAfterIteration,
      destination: status as Deno.CommandStatus,
      stderr: dst.stderr,
      ms,
    };
  } finally {
    await stopDestination(dst);
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
    r.failedPhase === "precopy" || r.failedPhase === "stop-and-copy" ||
      r.failedPhase === "destination",
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
      if (o.failure.report.failedPhase === "precopy") {
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
