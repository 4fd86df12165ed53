// The phased engine against scripted dirty sources, a recording workload and
// device, and an in-memory stream: statuses, counters, progress, the phase a
// failure is blamed on, and the undo that hands the guest back.
import assert from "node:assert/strict";
import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { guestAddress as g } from "../../sys/address.ts";
import { MemorySink } from "../../tests/_stream_samples.ts";
import { arrayRam } from "../stream/ram.ts";
import { StreamWriter } from "../stream/writer.ts";
import type { DeviceMigrator } from "./device_migrator.ts";
import type { DirtySource, SourceHarvest } from "./dirty_source.ts";
import { migrate, MigrationFailure } from "./precopy.ts";
import type { MigrationEvent } from "./status.ts";
import type { MigrationSink } from "./types.ts";

const PAGE = 4096;
const PAGES = 4096; // 16 MiB

/** A source that reports the next count of dirty pages (from page 0) at each harvest. */
class ScriptedSource implements DirtySource {
  readonly name = "scripted";
  readonly scope = "precise" as const;
  readonly log: string[] = [];
  #counts: number[];

  constructor(counts: number[]) {
    this.#counts = counts;
  }

  start(): void {
    this.log.push("start");
  }

  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    const n = this.#counts.shift() ?? 0;
    if (n > 0) bitmaps[0].setRange(0, n);
    return { source: this.name, dirtyPages: n, scope: "precise", coveredPages: PAGES };
  }

  coverInto(): void {}

  stop(): void {
    this.log.push("stop");
  }
}

function ram() {
  const r = arrayRam([{ gpa: g(0n), size: BigInt(PAGES * PAGE) }]);
  const v = r.view(g(0n), PAGES * PAGE);
  for (let p = 0; p < PAGES; p += 2) v.fill(p & 0xff | 1, p * PAGE, (p + 1) * PAGE); // half zero
  return r;
}

function digest() {
  return { bytes: new Uint8Array([1, 2, 3]), hex: "010203" };
}

Deno.test("migrate() reports each status, counters that add up, and a percentage that never runs backwards", async () => {
  const source = new ScriptedSource([0, 1000, 500, 100, 10]);
  const events: MigrationEvent[] = [];
  const report = await migrate({
    ram: ram(),
    sink: new StreamWriter(new MemorySink()),
    sources: [source],
    digest,
    transport: "memory",
    limits: { downtimeLimitMs: 1_000_000 }, // converge after the bulk pass
    onEvent: (e) => events.push(e),
  });
  assert.equal(report.result, "completed");
  const statuses = events.filter((e) => e.type === "status").map((e) => e.counters.status);
  assert.deepEqual(statuses, ["setup", "active", "device", "completed"]);
  const percents = events.map((e) => e.counters.percent);
  for (let i = 1; i < percents.length; i++) {
    assert.ok(percents[i] >= percents[i - 1], `percent ran backwards at event ${i}: ${percents}`);
  }
  assert.equal(percents.at(-1), 100);
  assert.ok(events.some((e) => e.type === "progress"), "progress within the bulk pass");
  const c = report.counters!;
  assert.equal(c.status, "completed");
  assert.equal(c.iterations, report.iterations.length);
  const sent = report.iterations.reduce((n, r) => n + r.sentPages, 0) + report.stopCopyPages;
  assert.equal(c.normalPages + c.duplicatePages, sent);
  assert.equal(report.iterations[0].zeroPages, PAGES / 2, "half the bulk pass is zero");
  const rowZeros = report.iterations.reduce((n, r) => n + r.zeroPages, 0);
  assert.ok(c.duplicatePages >= rowZeros && c.duplicatePages - rowZeros <= report.stopCopyPages);
  assert.equal(c.transferredBytes, report.totalBytes);
  assert.equal(c.precopyBytes + c.downtimeBytes, c.transferredBytes);
  assert.ok(c.downtimeBytes > 0, "the last pages went while paused");
  assert.equal(c.dirtySyncCount, report.iterations.length + 2, "probe, each iteration, final");
  assert.ok(c.setupMs! <= report.imageMs! && report.imageMs! <= report.totalMs);
  assert.equal(c.remainingBytes, 0);
  assert.deepEqual(source.log, ["start", "stop"]);
});

Deno.test("migrate() says when dirtying outpaces sending, and holds the percentage", async () => {
  const source = new ScriptedSource([0, 3000, 3500, 4000, 4096]);
  const events: MigrationEvent[] = [];
  const failure = await migrate({
    ram: ram(),
    sink: new StreamWriter(new MemorySink()),
    sources: [source],
    digest,
    transport: "memory",
    limits: { downtimeLimitMs: 0.0001, maxIterations: 4 },
    onEvent: (e) => events.push(e),
  }).then(() => undefined, (e) => e);
  assert.ok(failure instanceof MigrationFailure, String(failure));
  assert.equal(failure.report.failedPhase, "iterate");
  const rows = events.filter((e) => e.type === "iteration");
  assert.equal(rows.length, 4);
  assert.equal(rows[0].counters.outpaced, false, "the bulk pass sends everything");
  for (const e of rows.slice(1)) {
    assert.equal(
      e.counters.outpaced,
      true,
      `iteration ${e.type === "iteration" && e.row.iteration}`,
    );
    assert.equal(e.counters.percent, rows[0].counters.percent, "the percentage holds");
  }
  assert.equal(events.at(-1)!.counters.status, "failed");
});

Deno.test("migrate() blames the phase that was running and undoes what it did, newest first", async () => {
  const log: string[] = [];
  const workload = {
    pause: () => Promise.resolve(void log.push("pause")),
    resume: () => Promise.resolve(void log.push("resume")),
    setThrottle: (p: number) => void log.push(`throttle ${p}`),
  };
  const device: DeviceMigrator = {
    id: "dev",
    supported: true,
    saveState: () => {
      log.push("save");
      return Promise.resolve(new Uint8Array(8));
    },
    resumeRunning: () => void log.push("device runs"),
    pendingBytes: () => 8,
  };
  const writer = new StreamWriter(new MemorySink());
  const sink: MigrationSink = {
    get bytesWritten() {
      return writer.bytesWritten;
    },
    writeHeader: (l, p) => writer.writeHeader(l, p),
    writePages: (r, a, n) => writer.writePages(r, a, n),
    writeDeviceState: (id, b) => writer.writeDeviceState(id, b),
    writeIteration: (n) => writer.writeIteration(n),
    writeComplete: () => Promise.reject(new Deno.errors.BrokenPipe("cut at COMPLETE")),
    writeEnd: (d) => writer.writeEnd(d),
  };
  const source = new ScriptedSource([0, 0, 0]);
  const failure = await migrate({
    ram: ram(),
    sink,
    sources: [source],
    workload,
    devices: [device],
    digest,
    transport: "memory",
  }).then(() => undefined, (e) => e);
  assert.ok(failure instanceof MigrationFailure);
  assert.equal(failure.phase, "stop-and-copy");
  assert.equal(failure.report.failedPhase, "stop-and-copy");
  assert.equal(failure.message, "Migration failed in stop-and-copy: cut at COMPLETE");
  assert.ok(failure.cause instanceof Deno.errors.BrokenPipe);
  // The device runs again before the workload resumes (newest undo first),
  // and the sources stop after both.
  assert.deepEqual(log, ["pause", "save", "device runs", "resume"]);
  assert.deepEqual(source.log, ["start", "stop"]);
});

Deno.test("migrate() counts the devices' pending state in the expected downtime", async () => {
  const run = (pending: number) =>
    migrate({
      ram: ram(),
      sink: new StreamWriter(new MemorySink()),
      sources: [new ScriptedSource([0, 0])],
      devices: [{
        id: "dev",
        supported: true,
        saveState: () => Promise.resolve(new Uint8Array(pending)),
        resumeRunning: () => {},
        pendingBytes: () => pending,
      }],
      digest,
      transport: "memory",
      limits: { downtimeLimitMs: 1_000_000 },
    });
  const none = await run(0);
  const some = await run(8 << 20);
  assert.equal(none.iterations[0].pendingDeviceBytes, 0);
  assert.equal(some.iterations[0].pendingDeviceBytes, 8 << 20);
  assert.ok(
    some.iterations[0].expectedDowntimeMs > none.iterations[0].expectedDowntimeMs,
    `${some.iterations[0].expectedDowntimeMs} ms with 8 MiB of device state, ${
      none.iterations[0].expectedDowntimeMs
    } without`,
  );
  assert.equal(some.devices[0].stateBytes, 8 << 20);
});

Deno.test("migrate() says when a sink cannot carry device pre-copy, and moves the whole state at stop-and-copy", async () => {
  const state = new Uint8Array([9, 8, 7, 6, 5]);
  const log: string[] = [];
  const device: DeviceMigrator = {
    id: "dev0",
    supported: true,
    precopy: true,
    startPrecopy: () => void log.push("startPrecopy"),
    precopyInfo: () => ({ initialBytes: state.byteLength, dirtyBytes: 0 }),
    readPrecopy: () => (log.push("readPrecopy"), state),
    saveState: () => (log.push("saveState"), Promise.resolve(state)),
    resumeRunning: () => void log.push("resumeRunning"),
  };
  // A sink with the required methods only: no writeDevicePrecopy, no markers.
  const writer = new StreamWriter(new MemorySink());
  const states: [string, Uint8Array][] = [];
  const sink: MigrationSink = {
    get bytesWritten() {
      return writer.bytesWritten;
    },
    writeHeader: (layout, pageSize) => writer.writeHeader(layout, pageSize),
    writePages: (r, gpa, pages) => writer.writePages(r, gpa, pages),
    writeDeviceState: (id, bytes) => (states.push([id, bytes]), writer.writeDeviceState(id, bytes)),
    writeIteration: (n) => writer.writeIteration(n),
    writeComplete: () => writer.writeComplete(),
    writeEnd: (d) => writer.writeEnd(d),
  };
  const report = await migrate({
    ram: ram(),
    sink,
    sources: [new ScriptedSource([0, 10])],
    devices: [device],
    digest,
    transport: "memory",
    limits: { downtimeLimitMs: 1_000_000 },
  });
  assert.equal(report.result, "completed", report.error);
  assert.deepEqual(log, ["saveState"], "never put in PRE_COPY");
  assert.deepEqual(states, [["dev0", state]]);
  assert.equal(report.warnings?.length, 1, `${report.warnings}`);
  assert.match(report.warnings![0], /^Device pre-copy is off for dev0: the stream sink has no/);
  assert.equal(report.devices[0].precopyBytes ?? 0, 0);
});
