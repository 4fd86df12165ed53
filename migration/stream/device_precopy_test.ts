// Device pre-copy sections (types 9 and 10): written, streamed to the device
// as they arrive, the switchover point, and every hostile form refused with
// its offset.
import assert from "node:assert/strict";
import {
  concat,
  LAYOUT,
  MemorySink,
  MemorySource,
  PAGE,
  section,
  sha256Ram,
} from "../../tests/_stream_samples.ts";
import { fillSeeded, testSeed } from "../../tests/_random.ts";
import { guestAddress as g } from "../../sys/address.ts";
import { arrayRam } from "./ram.ts";
import { StreamError } from "./error.ts";
import { receiveStream } from "./reader.ts";
import type { ReceiveOptions } from "./receive_types.ts";
import { StreamWriter } from "./writer.ts";
import { encodeStreamHeader, MAX_DEVICE_PRECOPY_BYTES, SectionType } from "./format.ts";

const HEADER = encodeStreamHeader(LAYOUT, PAGE);
const H = HEADER.length;
const enc = new TextEncoder();

function idPayload(id: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(enc.encode(id), data);
}

function precopy(id: string, data?: Uint8Array): Uint8Array {
  const p = idPayload(id, data);
  return section(SectionType.DEVICE_PRECOPY, BigInt(enc.encode(id).length), BigInt(p.length), p);
}

function marker(id: string): Uint8Array {
  const p = idPayload(id);
  return section(SectionType.DEVICE_INIT_DATA_SENT, BigInt(p.length), BigInt(p.length), p);
}

async function reject(bytes: Uint8Array, options: Partial<ReceiveOptions> = {}) {
  const err = await receiveStream(new MemorySource(bytes, 5000), arrayRam(LAYOUT), {
    digest: sha256Ram,
    devices: ["dev0", "d"],
    ...options,
  }).then(() => undefined, (e) => e);
  assert.ok(err instanceof StreamError, `expected a StreamError, got ${err}`);
  return err;
}

function assertError(e: StreamError, offset: number, reason: RegExp) {
  assert.match(e.reason, reason);
  assert.equal(e.offset, offset, `offset of "${e.reason}"`);
}

Deno.test("StreamWriter.writeDevicePrecopy() chunks reach onDeviceChunk in order, then the switchover", async () => {
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const ram = arrayRam(LAYOUT);
  fillSeeded(ram.view(g(0n), PAGE * 4), seed);
  const data = new Uint8Array(3 * PAGE + 17);
  fillSeeded(data, seed + 1);
  const sink = new MemorySink();
  const w = new StreamWriter(sink);
  await w.writeHeader(ram.layout, PAGE);
  await w.writeDevicePrecopy("dev0", new Uint8Array(0)); // announces
  await w.writeDevicePrecopy("d", new Uint8Array(0));
  await w.writeDevicePrecopy("dev0", data.subarray(0, PAGE));
  await w.writePages(ram, g(0n), 4);
  await w.writeDevicePrecopy("dev0", data.subarray(PAGE));
  await w.writeDeviceInitialSent("dev0");
  await w.writeIteration(0);
  await w.writeDeviceInitialSent("d");
  await w.writeIteration(1);
  await w.writeDeviceState("dev0", new Uint8Array([9, 9]));
  await w.writeDeviceState("d", new Uint8Array([7]));
  await w.writeEnd(sha256Ram(ram));
  const events: string[] = [];
  const got: Uint8Array[] = [];
  const s = await receiveStream(new MemorySource(sink.bytes(), 1000), arrayRam(LAYOUT), {
    digest: sha256Ram,
    devices: ["dev0", "d"],
    streamDevices: ["dev0"],
    onDeviceChunk: (id, bytes) => {
      events.push(`${id}:${bytes.length}`);
      got.push(bytes);
    },
    onSwitchoverReady: () => void events.push("switchover"),
    onIteration: (n) => void events.push(`iteration ${n}`),
  });
  assert.deepEqual(events, [
    "dev0:0",
    `dev0:${PAGE}`,
    `dev0:${2 * PAGE + 17}`,
    "iteration 0",
    "switchover",
    "iteration 1",
    "dev0:2",
  ]);
  assert.deepEqual(concat(...got.slice(0, 3)), data, `byte-exact (seed ${seed})`);
  // A device without onDeviceChunk keeps its pre-copy and stop-copy chunks, in order.
  assert.deepEqual(s.deviceStates.get("d"), [new Uint8Array(0), new Uint8Array([7])]);
  assert.equal(s.deviceStates.has("dev0"), false);
  assert.equal(s.sections.devicePrecopy, 4);
  assert.equal(s.sections.deviceInitialSent, 2);
  assert.equal(s.sections.deviceState, 2);
});

Deno.test("receiveStream() refuses pre-copy data for an unknown device at its offset", async () => {
  assertError(
    await reject(concat(HEADER, precopy("dev0"), precopy("nope", new Uint8Array(8)))),
    H + precopy("dev0").length,
    /^Device pre-copy section for device "nope", which this destination does not have \(it has dev0, d\)$/,
  );
  assertError(
    await reject(concat(HEADER, marker("nope"))),
    H,
    /^Initial-data-sent section for device "nope", which this destination does not have/,
  );
});

Deno.test("receiveStream() refuses a marker for a device that sent no pre-copy data", async () => {
  const announced = precopy("dev0");
  assertError(
    await reject(concat(HEADER, announced, marker("d"))),
    H + announced.length,
    /^Initial-data-sent marker for device "d", which sent no pre-copy data$/,
  );
  assertError(
    await reject(concat(HEADER, announced, marker("dev0"), marker("dev0"))),
    H + announced.length + marker("dev0").length,
    /^Second initial-data-sent marker for device "dev0"$/,
  );
});

Deno.test("receiveStream() refuses an oversize pre-copy chunk before reading it", async () => {
  const big = BigInt(MAX_DEVICE_PRECOPY_BYTES + 1);
  assertError(
    await reject(concat(HEADER, section(SectionType.DEVICE_PRECOPY, 4n, big))),
    H,
    /^Device pre-copy section of 16777217 bytes exceeds the 16777216-byte section limit$/,
  );
  // Under the section limit, over the device-state limit: the same bound as device state.
  const chunk = precopy("d", new Uint8Array(200));
  assertError(
    await reject(concat(HEADER, chunk, chunk), { maxDeviceStateBytes: 400 }),
    H + chunk.length,
    /^Device pre-copy section of 201 bytes exceeds the remaining device-state limit of 71 bytes \(400 in all\)$/,
  );
  assertError(
    await reject(concat(HEADER, precopy("d"), precopy("d"), precopy("d")), {
      maxDeviceStateChunksPerDevice: 2,
    }),
    H + 2 * precopy("d").length,
    /^More than 2 device-state sections for device "d"$/,
  );
});

Deno.test("receiveStream() refuses a late announcement, a bad marker length and a missing marker", async () => {
  const it0 = section(SectionType.ITERATION, 0n, 0n);
  assertError(
    await reject(concat(HEADER, it0, precopy("d"))),
    H + it0.length,
    /^Device pre-copy section for device "d" after the first iteration or marker/,
  );
  const p = idPayload("d", new Uint8Array(1));
  assertError(
    await reject(
      concat(HEADER, precopy("d"), section(SectionType.DEVICE_INIT_DATA_SENT, 1n, 2n, p)),
    ),
    H + precopy("d").length,
    /^Initial-data-sent section has length 2, expected its id length 1$/,
  );
  const complete = section(SectionType.COMPLETE, 0n, 0n);
  assertError(
    await reject(concat(HEADER, precopy("d"), complete)),
    H + precopy("d").length,
    /^COMPLETE before device "d" sent its initial-data-sent marker$/,
  );
});

Deno.test("StreamWriter.writeDevicePrecopy() refuses a chunk over the section limit", async () => {
  const w = new StreamWriter(new MemorySink());
  await w.writeHeader(LAYOUT, PAGE);
  await assert.rejects(
    w.writeDevicePrecopy("d", new Uint8Array(MAX_DEVICE_PRECOPY_BYTES)),
    /Cannot write device pre-copy data of 16777216 bytes/,
  );
  await w.writeDevicePrecopy("d", new Uint8Array(1)); // still usable
});
