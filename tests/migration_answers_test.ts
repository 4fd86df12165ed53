// The destination's answers on a live transport: "image complete" at
// COMPLETE (ends the downtime), then the verdict after END.
import assert from "node:assert/strict";
import { digestMemory } from "../memory/digest.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { readAck, writeAck } from "../migration/stream/ack.ts";
import { destinationRam, ramDigest } from "../migration/guest/guest_ram.ts";
import { listenEndpoint } from "../migration/transport/open.ts";
import { MigrationFailure } from "../migration/engine/precopy.ts";
import { runMigrationScenario } from "./scenario.ts";
import { migrateGuest } from "../migration/guest/source.ts";
import { receiveStream } from "../migration/stream/reader.ts";
import type { StreamSink } from "../migration/transport/channel.ts";
import { fillSeeded } from "./_random.ts";

const MiB = 1 << 20;

function ram(): GuestMemory {
  const m = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(4 * MiB) }]);
  fillSeeded(m.view(guestAddress(0n), 65536), 20);
  return m;
}

Deno.test("migrateGuest() ends the downtime at the image answer, before either side verifies", async () => {
  const r = await runMigrationScenario({ ram: 64 * MiB, transport: "tcp" });
  assert.equal(r.report.result, "completed", r.report.error);
  assert.equal(r.destination.digest, r.report.sourceDigest);
  const { imageMs, verifyMs, totalMs, downtimeMs } = r.report;
  assert.ok(imageMs !== undefined && verifyMs !== undefined && downtimeMs !== null);
  assert.ok(downtimeMs <= imageMs, `downtime ${downtimeMs} <= image ${imageMs}`);
  assert.ok(imageMs + verifyMs <= totalMs, `image ${imageMs} + verify ${verifyMs} <= ${totalMs}`);
});

/**
 * Runs migrateGuest against a destination whose answer at COMPLETE is
 * `atComplete`; returns the failure.
 */
async function againstDestination(
  atComplete: (sink: StreamSink) => Promise<void>,
): Promise<MigrationFailure> {
  using memory = ram();
  using target = ram();
  const before = digestMemory(memory).hex;
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  const ep = listener.endpoint;
  const dest = (async () => {
    using ch = await listener.accept();
    await receiveStream(ch, destinationRam(target), {
      digest: () => ramDigest(target).bytes,
      onComplete: () => atComplete(ch),
      expectEof: false,
    }).catch(() => {});
  })();
  const err = await migrateGuest({
    memory,
    to: `tcp:127.0.0.1:${ep.transport === "tcp" ? ep.port : 0}`,
  }).then(() => undefined, (e) => e);
  await dest;
  assert.ok(err instanceof MigrationFailure, String(err));
  assert.equal(digestMemory(memory).hex, before, "the source RAM is untouched");
  assert.equal(err.report.result, "failed");
  assert.equal(err.report.downtimeMs, null, "no downtime without the image answer");
  return err;
}

Deno.test("migrateGuest() fails when the destination gives its verdict before the image answer", async () => {
  const err = await againstDestination((ch) => writeAck(ch, { ok: true, text: "0".repeat(64) }));
  assert.match(err.message, /Destination answered out of order: expected image complete/);
  assert.equal(err.report.failedPhase, "stop-and-copy");
});

Deno.test("migrateGuest() fails when the destination rejects at COMPLETE", async () => {
  const err = await againstDestination((ch) => writeAck(ch, { ok: false, text: "no room" }));
  assert.match(err.message, /Destination rejected the image: no room/);
});

Deno.test("readAck() reads each status and rejects an unknown one", async () => {
  const frames: Uint8Array[] = [];
  const sink = { write: (b: Uint8Array) => Promise.resolve(void frames.push(b.slice())) };
  await writeAck(sink, { ok: true, text: "", image: true });
  await writeAck(sink, { ok: true, text: "abc" });
  await writeAck(sink, { ok: false, text: "bad" });
  await writeAck(sink, { ok: true, text: "", switchover: true });
  const bad = frames[0].slice();
  new DataView(bad.buffer).setUint32(4, 4, true);
  frames.push(bad);
  const source = {
    pending: frames.flatMap((f) => [...f]),
    read(into: Uint8Array) {
      const n = Math.min(into.length, this.pending.length);
      if (n === 0) return Promise.resolve(null);
      into.set(this.pending.splice(0, n));
      return Promise.resolve(n);
    },
  };
  assert.deepEqual(await readAck(source), { ok: true, text: "", image: true });
  assert.deepEqual(await readAck(source), { ok: true, text: "abc" });
  assert.deepEqual(await readAck(source), { ok: false, text: "bad" });
  assert.deepEqual(await readAck(source), { ok: true, text: "", switchover: true });
  await assert.rejects(readAck(source), /unknown status 4/);
});
