// kernel-profiles: stock-6.1-kvm
// Live migration of a running KVM guest between two processes: `migrate
// --guest kvm` boots the test guest on the real KVM and migrates it while it
// writes and prints its heartbeat; `receive --guest kvm` restores RAM and
// vCPU state, lets the guest run on, and checks that it lived through it.
// The test reads both reports and checks the continuity itself: the counter
// restored is the source's last (never zero) and grows, the checksum is the
// one the counter implies, the guest's own sum of its pages matches, the
// heartbeat numbering goes on past the source's.
import assert from "node:assert/strict";
import type { DestinationGuestReport, SourceGuestReport } from "../../cli/_kvm_guest.ts";
import type { ReceiveReport } from "../../cli/receive.ts";
import { checksumAfter } from "../../kvm/guest/workload.ts";
import type { MigrationReport } from "../../migration/engine/report.ts";
import { startCli } from "../_support.ts";

// Small and slow: TCG's nested KVM writes a page in about 90 µs.
const RAM = "8M";
const SOURCE_FLAGS = [
  "--guest",
  "kvm",
  "--ram",
  RAM,
  "--workload",
  "hotspot",
  "--dirty-rate",
  "1M",
  "--heartbeat-ms",
  "100",
  "--run-before-ms",
  "500",
  "--seed",
  "7",
  // The subject is the guest's continuity, not the downtime limit: a loaded
  // machine (TCG, shared cores) gets room.
  "--downtime-ms",
  "5000",
];
const TIMEOUT_MS = 180_000;

type SourceReport = MigrationReport & { guest: SourceGuestReport };

function checkContinuity(src: SourceReport, dst: ReceiveReport, transport: string): void {
  assert.equal(src.result, "completed", src.error);
  assert.equal(dst.result, "completed", dst.error);
  assert.equal(dst.digest, src.sourceDigest, "the destination verified the source's image");
  assert.deepEqual(
    src.devices.filter((d) => d.migrated).map((d) => d.id),
    ["kvm-vm", "kvm-test-guest"],
    "the vCPU state went as device state",
  );
  const stop = src.guest.atStop!;
  const g = dst.guest as DestinationGuestReport;
  assert.ok(stop.checksumOk, "the guest was consistent at the source's stop");
  assert.ok(BigInt(stop.counter) > 0n, "the guest had written before it stopped");
  assert.ok(BigInt(stop.heartbeats) > 0n, "and printed its heartbeat");
  assert.deepEqual(g.failures, [], "the destination's checks");
  assert.equal(g.verdict, "continued");
  assert.equal(g.source?.counter, stop.counter, "the stream carried the source's view");
  assert.equal(g.atRestore?.counter, stop.counter, "restored at the source's last value");
  const after = BigInt(g.after!.counter);
  assert.ok(
    after >= BigInt(stop.counter) + 64n,
    `the counter went on: ${stop.counter} -> ${after}`,
  );
  assert.equal(g.after!.boots, "1", "the guest did not boot again");
  assert.equal(BigInt(g.after!.checksum), checksumAfter(stop.seed, after), "its checksum");
  assert.equal(g.after!.verifySum, g.after!.pageSum, "its own sum of its pages");
  const first = /^heartbeat (\d+) counter=(\d+)$/.exec(g.heartbeats[0] ?? "");
  assert.ok(first !== null, `a heartbeat at the destination: ${g.heartbeats}`);
  assert.ok(BigInt(first[1]) > BigInt(stop.heartbeats), "the heartbeat numbering goes on");
  assert.ok(BigInt(first[2]) >= BigInt(stop.counter));
  console.log(
    `${transport}: counter ${stop.counter} (heartbeat ${stop.heartbeats}) at the source's stop, ` +
      `${g.atRestore?.counter} restored, ${after} after ${g.ranMs?.toFixed(0)} ms at the ` +
      `destination; downtime ${src.downtimeMs?.toFixed(0)} ms, ${src.iterations.length} iterations`,
  );
}

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "deno-vmm-kvm-migration-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("migrate --guest kvm over TCP: the running guest goes on at the destination", async () => {
  await using dir = await tempDir();
  await using dst = startCli([
    "receive",
    "--guest",
    "kvm",
    "--from",
    "tcp:127.0.0.1:0",
    "--ram",
    RAM,
    "--run-after-ms",
    "500",
    "--report",
    `${dir.path}/dst.json`,
  ]);
  const to = (await dst.line(/^listening on (tcp:\S+)/, TIMEOUT_MS))[1];
  await using src = startCli([
    "migrate",
    ...SOURCE_FLAGS,
    "--to",
    to,
    "--report",
    `${dir.path}/src.json`,
  ]);
  assert.equal((await src.exit(TIMEOUT_MS)).code, 0, src.stderr.join("\n"));
  assert.equal((await dst.exit(TIMEOUT_MS)).code, 0, dst.stderr.join("\n"));
  assert.ok(src.stderr.some((l) => /^guest: heartbeat \d+ counter=\d+$/.test(l)), "source beats");
  assert.ok(dst.stderr.some((l) => /^guest: heartbeat \d+ counter=\d+$/.test(l)), "dest beats");
  checkContinuity(
    JSON.parse(await Deno.readTextFile(`${dir.path}/src.json`)),
    JSON.parse(await Deno.readTextFile(`${dir.path}/dst.json`)),
    "tcp",
  );
});

Deno.test("migrate --guest kvm --kvm-dirty ring to a file, then receive --guest kvm from it", async () => {
  await using dir = await tempDir();
  const file = `file:${dir.path}/guest.mig`;
  {
    await using src = startCli([
      "migrate",
      ...SOURCE_FLAGS,
      "--kvm-dirty",
      "ring",
      "--to",
      file,
      "--report",
      `${dir.path}/src.json`,
    ]);
    assert.equal((await src.exit(TIMEOUT_MS)).code, 0, src.stderr.join("\n"));
  }
  await using dst = startCli([
    "receive",
    "--guest",
    "kvm",
    "--from",
    file,
    "--ram",
    RAM,
    "--run-after-ms",
    "500",
    "--report",
    `${dir.path}/dst.json`,
  ]);
  assert.equal((await dst.exit(TIMEOUT_MS)).code, 0, dst.stderr.join("\n"));
  const src = JSON.parse(await Deno.readTextFile(`${dir.path}/src.json`)) as SourceReport;
  assert.equal(src.guest.dirtyLog, "ring");
  assert.ok(src.dirtyScope["kvm-dirty-ring"] === "precise");
  checkContinuity(src, JSON.parse(await Deno.readTextFile(`${dir.path}/dst.json`)), "file");
});
