// kernel-profiles: custom-6.12-viommu
// A two-process migration of guest RAM and a real device's state: this
// process migrates seeded RAM (a Worker dirtying it) and an mtty whose
// serial port is programmed from a seed with migrateGuest() over a unix
// socket; a destination process (_mtty_destination.ts) receives both with
// receiveGuest() into its own mtty, loading mtty's header in RESUMING during
// pre-copy and acknowledging the switchover, then its port at stop-and-copy.
// Its registers and queued FIFO bytes read back as the source's; the report
// shows the device pre-copy, the switchover ack and each iteration's device
// bytes. A destination that never acknowledges fails the migration naming
// the device, and the source's mtty runs on with its port as it was.
import assert from "node:assert/strict";
import { summarize } from "../../../cli/migrate.ts";
import { digestMemory } from "../../../memory/digest.ts";
import { GuestMemory } from "../../../memory/guest_memory.ts";
import { WorkerWriter } from "../../../memory/worker_writer.ts";
import { MigrationFailure } from "../../../migration/engine/precopy.ts";
import type { MigrationReport } from "../../../migration/engine/report.ts";
import type { MigrationEvent } from "../../../migration/engine/status.ts";
import { migrateGuest } from "../../../migration/guest/source.ts";
import { WorkerWorkload } from "../../../migration/guest/worker_workload.ts";
import { guestAddress } from "../../../sys/address.ts";
import {
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP as STOP,
} from "../../../vfio/constants.ts";
import { deviceStateName, VfioDeviceMigration } from "../../../vfio/device_migration.ts";
import { openFds } from "../../_support.ts";
import { fillSeeded, seeded, testSeed } from "../../_random.ts";
import { bootProfile } from "../env.ts";
import {
  createMtty,
  expectedStream,
  hex,
  mdevExists,
  MTTY_STREAM,
  type PortProgram,
  type PortReadback,
  programPort,
  readPort,
} from "./_mtty.ts";
import { startMttyDestination } from "./_mtty_destination.ts";

const MiB = 1 << 20;
const RAM = 16 * MiB;
// Bounds, not timings: a Deno process starting under TCG beside other work,
// and its exit once the stream has ended.
const READY_MS = 120_000;
const EXIT_MS = 60_000;
// How long the source waits on the destination (its switchover ack in the second test).
const PEER_TIMEOUT_MS = 5_000;

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "deno-vmm-mtty-migration-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

function seededRam(seed: number): GuestMemory {
  const memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(RAM) }], {
    backing: "memfd",
  });
  fillSeeded(memory.view(guestAddress(0n), RAM), seed);
  return memory;
}

// The readback of a port programmed by programPort() and left so: the
// values it wrote, the queued bytes, LSR data-ready, then TEMT|THRE drained.
function checkProgrammed(got: PortReadback, p: PortProgram, at: string): void {
  const regs = Object.fromEntries(got.registers);
  assert.equal(regs["LCR"], p.lcr, `${at}: LCR`);
  assert.equal(regs["DLL"] | (regs["DLM"] << 8), p.divisor, `${at}: divisor`);
  assert.equal(regs["MCR"], p.mcr, `${at}: MCR`);
  assert.equal(regs["SCR"], p.scr, `${at}: SCR`);
  assert.equal(regs["IER"], p.ier & 0x0f, `${at}: IER reads back its low nibble`);
  assert.equal(regs["LSR"] & 0x01, 1, `${at}: data ready before the drain`);
  assert.equal(regs["LSR drained"], 0x60, `${at}: TEMT|THRE once drained`);
  assert.deepEqual(got.fifo, p.sent.slice(p.consumed), `${at}: the bytes left queued`);
}

// The descriptors open now that were not in `before`, leaving out further
// dups of a socket open in `before`: a Worker's runtime holds one of the
// process's signal socket (as the main runtime does) until Deno reaps its
// thread, after terminate() has returned. This test's own sockets are new ones.
function newFds(before: readonly string[]): string[] {
  const target = (l: string) => l.slice(l.indexOf(" -> ") + 4);
  const sockets = new Set(before.map(target).filter((t) => t.startsWith("socket:")));
  const opened = openFds().filter((l) => !before.includes(l));
  const dups = opened.filter((l) => sockets.has(target(l)));
  if (dups.length > 0) console.log(`left out, dups of a socket open before: ${dups.join(", ")}`);
  return opened.filter((l) => !sockets.has(target(l)));
}

function rowsText(r: MigrationReport): string {
  return JSON.stringify(r.iterations);
}

Deno.test("migrateGuest() to a destination process moves guest RAM and mtty's port together, with device pre-copy and the switchover ack", async () => {
  bootProfile("custom-6.12-viommu");
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  const fdsBefore = openFds();
  const uuids: string[] = [];
  {
    await using dir = await tempDir();
    using src = createMtty();
    uuids.push(src.uuid);
    const program = programPort(src.port, rand);
    using memory = seededRam(seed);
    const socket = `${dir.path}/migration.sock`;
    await using dst = startMttyDestination({ socket, sourceId: src.uuid, ram: RAM });
    const ready = await dst.line("listening", READY_MS);
    const dstUuid = String(ready.uuid);
    uuids.push(dstUuid);
    assert.notEqual(dstUuid, src.uuid, "the destination has an mtty of its own");
    const pagesPerSecond = 500;
    const writer = await WorkerWriter.start(memory, { pattern: "random", pagesPerSecond, seed });
    await using _writer = { [Symbol.asyncDispose]: () => writer.stop() };
    const workload = new WorkerWorkload([writer], { pagesPerSecond });
    const migration = VfioDeviceMigration.probe(src.device);
    assert.equal(migration.precopy, true, "mtty offers PRE_COPY");
    const order: string[] = [];
    const onEvent = (e: MigrationEvent) => {
      if (e.type === "switchover") order.push("switchover ack");
      if (e.type === "status") order.push(`status ${e.counters.status}`);
    };
    let report: MigrationReport;
    try {
      report = await migrateGuest({
        memory,
        to: `unix:${socket}`,
        devices: [migration],
        workload,
        // About the protocol, not this machine's speed: TCG and shared cores get room.
        limits: { downtimeLimitMs: 5_000, maxIterations: 10 },
        onEvent,
      });
    } catch (e) {
      if (!(e instanceof MigrationFailure)) throw e;
      const out = await dst.exit(EXIT_MS).then(() => dst.output(), (x) => `${x}`);
      assert.fail(`seed ${seed}: ${e.message}\n${rowsText(e.report)}\n${out}`);
    }
    const { code, result } = await dst.exit(EXIT_MS);
    const out = dst.output();
    assert.equal(code, 0, out);
    assert.ok(result.ok, out);
    const at = `seed ${seed}`;
    const rows = rowsText(report);
    console.log(summarize(report));

    // RAM: the destination verified the source's image.
    assert.equal(report.result, "completed", `${at}: ${report.error}`);
    assert.equal(result.digest, report.sourceDigest, `${at}: destination RAM = source RAM`);
    assert.equal(report.destinationDigest, report.sourceDigest);
    assert.ok(writer.writes > 0, "the workload dirtied the RAM");

    // The device: its header in pre-copy, its port at stop-and-copy.
    const device = report.devices.find((d) => d.id === src.uuid);
    assert.ok(device !== undefined, JSON.stringify(report.devices));
    assert.equal(device.migrated, true);
    assert.equal(device.precopyBytes, MTTY_STREAM.HEADER, "mtty's initial bytes: its header");
    assert.equal(device.stopCopyBytes, MTTY_STREAM.PORT, "the port, at STOP_COPY");
    assert.equal(device.stateBytes, MTTY_STREAM.HEADER + MTTY_STREAM.PORT);
    assert.deepEqual(result.chunks, [MTTY_STREAM.HEADER, MTTY_STREAM.PORT], out);

    // The switchover ack arrived before stop-and-copy began.
    assert.equal(typeof report.switchoverWaitMs, "number", "the destination acknowledged");
    assert.ok(report.switchoverWaitMs! >= 0);
    const ack = order.indexOf("switchover ack");
    assert.ok(ack >= 0, `no switchover ack in ${order}`);
    assert.ok(ack < order.indexOf("status device"), `${order}`);
    assert.match(summarize(report), /switchover ack \d+ ms after ready/);

    // Every iteration row splits its bytes into device and RAM bytes; the
    // header went in the first one, beside the bulk pass.
    assert.ok(report.iterations.length > 0);
    for (const row of report.iterations) {
      assert.equal(typeof row.deviceBytes, "number", `${at}: ${rows}`);
      assert.equal(row.ramBytes, row.bytes - row.deviceBytes!, `${at}: ${rows}`);
      assert.ok(row.deviceBytes! >= (row.precopyBytesByDevice?.[src.uuid] ?? 0), rows);
    }
    const first = report.iterations[0];
    assert.equal(first.precopyBytesByDevice?.[src.uuid], MTTY_STREAM.HEADER, rows);
    assert.ok(first.deviceBytes! > MTTY_STREAM.HEADER, `section framing and the marker: ${rows}`);
    const precopySum = report.iterations.reduce(
      (n, row) => n + (row.precopyBytesByDevice?.[src.uuid] ?? 0),
      0,
    );
    assert.equal(precopySum, MTTY_STREAM.HEADER, rows);

    // The devices: the source stays stopped (the destination owns the
    // guest now), the destination runs the source's port byte for byte.
    assert.equal(deviceStateName(migration.deviceState), deviceStateName(STOP));
    assert.equal(result.deviceState, deviceStateName(RUNNING));
    const want = readPort(src.port);
    assert.equal(result.registers.length, want.registers.length);
    for (let i = 0; i < want.registers.length; i++) {
      assert.deepEqual(result.registers[i], want.registers[i], `${at}: ${want.registers[i][0]}`);
    }
    assert.deepEqual(result.fifo, want.fifo, `${at}: FIFO bytes`);
    checkProgrammed(want, program, `${at}, the source`);
    console.log(
      `precopyBytes ${device.precopyBytes}, stopCopyBytes ${device.stopCopyBytes}, ` +
        `switchoverWaitMs ${report.switchoverWaitMs!.toFixed(1)}, ` +
        `${report.iterations.length} iterations (deviceBytes ${
          report.iterations.map((r) => r.deviceBytes).join(", ")
        }), downtime ${report.downtimeMs?.toFixed(0)} ms`,
    );
  }
  assert.deepEqual(newFds(fdsBefore), [], "every fd closed");
  assert.deepEqual(uuids.filter(mdevExists), [], "both mdevs removed");
});

Deno.test("migrateGuest() fails naming mtty when the destination process never acknowledges the switchover, and the source's port runs on unchanged", async () => {
  bootProfile("custom-6.12-viommu");
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  const fdsBefore = openFds();
  const uuids: string[] = [];
  {
    await using dir = await tempDir();
    using src = createMtty();
    uuids.push(src.uuid);
    const program = programPort(src.port, rand);
    using memory = seededRam(seed);
    const digestBefore = digestMemory(memory).hex;
    const socket = `${dir.path}/migration.sock`;
    // The destination holds the first state chunk (mtty's header) back:
    // its initial data is never loaded, so it never sends the ack.
    await using dst = startMttyDestination({ socket, sourceId: src.uuid, ram: RAM, hold: true });
    const ready = await dst.line("listening", READY_MS);
    uuids.push(String(ready.uuid));
    const migration = VfioDeviceMigration.probe(src.device);
    let failure: MigrationFailure | undefined;
    try {
      const r = await migrateGuest({
        memory,
        to: `unix:${socket}`,
        devices: [migration],
        peerTimeoutMs: PEER_TIMEOUT_MS,
        limits: { downtimeLimitMs: 5_000, maxIterations: 10 },
      });
      assert.fail(`the migration completed: ${JSON.stringify(r)}\n${dst.output()}`);
    } catch (e) {
      if (!(e instanceof MigrationFailure)) throw e;
      failure = e;
    }
    const report = failure.report;
    const held = await dst.line("holding", EXIT_MS);
    assert.equal(held.holding, MTTY_STREAM.HEADER, "the chunk held back: mtty's header");
    // The source has given up: the destination may go on, and finds the stream cut.
    await dst.send("release");
    const { code, result } = await dst.exit(EXIT_MS);
    const out = dst.output();

    assert.equal(report.result, "failed");
    assert.equal(report.failedPhase, "iterate", `stop-and-copy never began: ${report.error}`);
    assert.match(
      report.error!,
      new RegExp(
        `^Cannot switch over: the destination did not acknowledge the initial pre-copy data of device "${src.uuid}": .*within ${
          PEER_TIMEOUT_MS / 1000
        } s`,
      ),
    );
    assert.equal(failure.message, report.error);
    assert.equal(report.switchoverWaitMs, undefined, "no ack arrived");
    const device = report.devices.find((d) => d.id === src.uuid);
    assert.equal(device?.migrated, false, JSON.stringify(report.devices));

    // The destination reports no success; its mtty was reset out of RESUMING.
    assert.notEqual(code, 0, out);
    assert.equal(result.ok, false, out);
    assert.ok(!result.ok);
    assert.match(result.error, /^Cannot restore the image: the source closed the connection/, out);
    assert.equal(result.deviceState, deviceStateName(RUNNING), out);
    assert.deepEqual(result.chunks, [MTTY_STREAM.HEADER], `the held chunk, then the cut: ${out}`);
    console.log(`source: ${report.error}\ndestination: ${result.error}`);

    // The source runs on: RAM untouched, mtty RUNNING with its port as programmed.
    assert.equal(digestMemory(memory).hex, digestBefore, "the source RAM is untouched");
    assert.equal(deviceStateName(migration.deviceState), deviceStateName(RUNNING));
    const again = VfioDeviceMigration.probe(src.device);
    const bytes = await again.saveState();
    assert.equal(hex(bytes), hex(expectedStream(program)), `seed ${seed}: the port's whole state`);
    again.resumeRunning();
    assert.equal(deviceStateName(again.deviceState), deviceStateName(RUNNING));
    checkProgrammed(readPort(src.port), program, `seed ${seed}, the source after the failure`);
  }
  assert.deepEqual(newFds(fdsBefore), [], "every fd closed");
  assert.deepEqual(uuids.filter(mdevExists), [], "both mdevs removed");
});
