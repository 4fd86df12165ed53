// Parallel channels against failures and hostile peers: a channel cut
// mid-stream fails both sides; a connection with another nonce, a taken
// index, bad sections, device state and a flood of silent peers are
// refused or fail the migration as the main stream's rules say; mismatched
// channel counts fail clearly.
import assert from "node:assert/strict";
import { testSeed } from "./_random.ts";
import { startChannelProxy } from "./_channel_proxy.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { DestinationFailure, receiveGuest } from "../migration/guest/destination.ts";
import { formatEndpoint, parseEndpoint } from "../migration/transport/endpoint.ts";
import {
  CHANNEL_HELLO_BYTES,
  CHANNEL_NONCE_ANSWER_BYTES,
  decodeChannelNonce,
  encodeChannelHello,
} from "../migration/stream/channel_hello.ts";
import { StreamWriter } from "../migration/stream/writer.ts";
import type { StreamChannel } from "../migration/transport/channel.ts";
import { connectEndpoint, openListener } from "../migration/transport/open.ts";
import { crc32 } from "node:zlib";
import {
  encodeSectionHeader,
  SECTION_HEADER_BYTES,
  SectionType,
} from "../migration/stream/format.ts";
import { readAck } from "../migration/stream/ack.ts";
import { migratePair } from "./_channel_pair.ts";

const MiB = 1 << 20;

Deno.test("migrateGuest() over 2 channels fails on both sides when a channel is cut mid-stream", async () => {
  const seed = testSeed();
  const r = await migratePair({
    ram: 16 * MiB,
    channels: 2,
    seed,
    proxy: (target) => startChannelProxy(target, { cut: { stream: 1, after: 256 << 10 } }),
  });
  assert.equal(r.source.ok, false, `seed ${seed}: the source must fail`);
  assert.equal(r.destination.ok, false, `seed ${seed}: the destination must fail`);
  const src = !r.source.ok ? r.source.error : undefined;
  const dst = !r.destination.ok ? r.destination.error : undefined;
  assert.match(src!.message, /^Migration failed in pre-copy: Channel [01] of 2 failed: /);
  assert.match(dst!.message, /^Cannot restore the image: .*Parallel channel 1 of 2: /);
  assert.equal(dst!.imageTouched, true);
  r.destinationMemory.close();
});

Deno.test("receiveGuest() refuses an extra connection with another nonce and the migration goes on", async () => {
  const seed = testSeed();
  let refused!: (reason: string) => void;
  const refusal = new Promise<string>((resolve) => refused = resolve);
  let answer: Promise<string> | undefined;
  let target = "";
  const r = await migratePair({
    ram: 4 * MiB,
    channels: 2,
    seed,
    // The real channels wait until the hostile one has been refused.
    proxy: (t) => {
      target = t;
      return startChannelProxy(t, {
        hold: (s) => s === "main" ? undefined : { from: 0, until: refusal.then(() => {}) },
      });
    },
    destination: {
      onAccepted: () => answer = hostileChannel(target),
      onRejected: (_peer, reason) => refused(reason),
    },
  });
  assert.equal(r.source.ok, true, `seed ${seed}: ${!r.source.ok && r.source.error.message}`);
  assert.equal(r.destination.ok, true, `${!r.destination.ok && r.destination.error.message}`);
  assert.equal(await refusal, "Channel hello carries another migration's nonce");
  assert.match(await answer!, /^Refused: Channel hello carries another migration's nonce$/);
  r.destinationMemory.close();
});

// Connects to the destination with a well-formed hello whose nonce is not
// the migration's; resolves with the destination's answer.
async function hostileChannel(target: string): Promise<string> {
  const ep = parseEndpoint(target);
  if (ep.transport !== "tcp") throw new TypeError(`Cannot dial ${target}`);
  using conn = await Deno.connect({ hostname: ep.hostname, port: ep.port });
  const hello = encodeChannelHello({
    index: 1,
    count: 2,
    pageSize: 4096,
    nonce: new Uint8Array(16).fill(0x42),
  });
  await conn.write(hello);
  const source = { read: (b: Uint8Array) => conn.read(b) };
  const ack = await readAck(source);
  return ack.text;
}

// A RAM-run section of one page at `gpa`; `badCrc` spoils its trailer.
function ramSection(gpa: bigint, badCrc = false): Uint8Array {
  const out = new Uint8Array(SECTION_HEADER_BYTES + 4096 + 4);
  out.fill(0x5a, SECTION_HEADER_BYTES, SECTION_HEADER_BYTES + 4096);
  const seed = encodeSectionHeader(out, 0, {
    type: SectionType.RAM,
    flags: 0,
    arg: gpa,
    length: 4096n,
  });
  const crc = crc32(out.subarray(SECTION_HEADER_BYTES, SECTION_HEADER_BYTES + 4096), seed);
  new DataView(out.buffer).setUint32(SECTION_HEADER_BYTES + 4096, badCrc ? ~crc >>> 0 : crc, true);
  return out;
}

const HOSTILE_CHANNELS: {
  name: string;
  /** The channel indexes the hellos claim (default 0 and 1). */
  indexes?: number[];
  send?: (w: StreamWriter, c: StreamChannel) => Promise<void>;
  reason: RegExp;
  /** What the destination told of the peer it refused. */
  rejected?: string;
}[] = [
  {
    name: "a hello for a channel already taken, and no other",
    indexes: [0, 0],
    reason: /Not every one of 2 parallel channels joined within 0\.5 s/,
    rejected: "Channel 0 has already joined",
  },
  {
    name: "a RAM run outside the layout",
    send: (_w, c) => c.write(ramSection(1n << 40n)),
    reason:
      /Parallel channel 1 of 2: RAM run GPA 0x10000000000 is outside the destination's layout/,
  },
  {
    name: "a section checksum mismatch",
    send: (_w, c) => c.write(ramSection(0x1000n, true)),
    reason: /Parallel channel 1 of 2: RAM run section checksum mismatch/,
  },
  {
    name: "device state",
    send: async (w) => {
      await w.writeDeviceState("vfio", new Uint8Array(8));
      await w.flush();
    },
    reason:
      /Parallel channel 1 of 2: Device state section on a parallel channel \(it carries RAM only\)/,
  },
  {
    name: "a cut after the hello",
    send: (_w, c) => Promise.resolve(c.close()),
    reason: /Parallel channel 1 of 2: Stream ended without an END section/,
  },
];

for (const hostile of HOSTILE_CHANNELS) {
  Deno.test(`receiveGuest() fails the migration on a channel that sends ${hostile.name}`, async () => {
    const layout = [{ gpa: guestAddress(0n), size: 1n << 20n }];
    using memory = GuestMemory.create(layout, { prefault: true });
    await using stack = new AsyncDisposableStack();
    const listener = await openListener("tcp:127.0.0.1:0");
    stack.defer(() => listener.close());
    const rejected: string[] = [];
    const received = receiveGuest({
      memory,
      from: listener,
      channels: 2,
      zeroed: true,
      headerTimeoutMs: 500,
      onRejected: (_peer, reason) => rejected.push(reason),
    }).then(
      () => undefined,
      (e) => e as DestinationFailure,
    );
    // A source that knows the nonce (it holds the main connection), and
    // then breaks the rules on channel 1.
    const to = formatEndpoint(listener.endpoint);
    const main = stack.use(await connectEndpoint(to, { timeoutMs: 10_000 }));
    const w = new StreamWriter(main);
    await w.writeHeader(layout, 4096);
    await w.flush();
    const answer = new Uint8Array(CHANNEL_NONCE_ANSWER_BYTES);
    for (let at = 0; at < answer.length;) at += (await main.read(answer.subarray(at)))!;
    const nonce = decodeChannelNonce(answer);
    const writers: [StreamWriter, StreamChannel][] = [];
    for (const index of hostile.indexes ?? [0, 1]) {
      const c = stack.use(await connectEndpoint(to, { timeoutMs: 10_000 }));
      const cw = new StreamWriter(c);
      await cw.writeChannelHeader(
        encodeChannelHello({ index, count: 2, pageSize: 4096, nonce }),
        layout,
        4096,
      );
      await cw.flush();
      writers.push([cw, c]);
    }
    await hostile.send?.(...writers[1]);
    const e = await received;
    assert.ok(e instanceof DestinationFailure, "the destination fails");
    assert.match(e.message, hostile.reason);
    assert.equal(e.imageTouched, true);
    assert.deepEqual(rejected, hostile.rejected === undefined ? [] : [hostile.rejected]);
  });
}

Deno.test("migrateGuest() with 1 channel fails clearly against a destination receiving with 2", async () => {
  const seed = testSeed();
  const r = await migratePair({
    ram: 4 * MiB,
    channels: 2,
    seed,
    source: { channels: 1 },
    destination: { headerTimeoutMs: 500 },
  });
  assert.equal(r.source.ok, false);
  assert.match(
    !r.source.ok ? r.source.error.message : "",
    /receives over parallel channels, so migrate with the --channels it receives with/,
  );
  // Its own message depends on when the source's close reaches it.
  assert.equal(r.destination.ok, false, "the destination never reports success");
  r.destinationMemory.close();
});

Deno.test("migrateGuest() with 2 channels fails clearly when the destination receives with 1", async () => {
  const seed = testSeed();
  const r = await migratePair({
    ram: 4 * MiB,
    channels: 2,
    seed,
    source: { peerTimeoutMs: 500 },
    destination: { channels: 1 },
  });
  assert.equal(r.source.ok, false);
  assert.match(
    !r.source.ok ? r.source.error.message : "",
    /gave no channel nonce within 0\.5 s: does it receive with --channels 2\?/,
  );
  assert.equal(r.destination.ok, false, "the destination never reports success");
  r.destinationMemory.close();
});

Deno.test("receiveGuest() lets the channels in past a flood of silent connections", async () => {
  const seed = testSeed();
  const silent: Promise<Deno.Conn>[] = [];
  let displaced = 0;
  let flooded!: () => void;
  const full = new Promise<void>((resolve) => flooded = resolve);
  let target = "";
  try {
    const r = await migratePair({
      ram: 4 * MiB,
      channels: 2,
      seed,
      // The channels connect once 10 silent peers have made the destination
      // displace two of its 8 waiting ones.
      proxy: (t) => {
        target = t;
        return startChannelProxy(t, {
          hold: (s) => s === "main" ? undefined : { from: 0, until: full },
        });
      },
      destination: {
        onAccepted: () => {
          const ep = parseEndpoint(target);
          if (ep.transport !== "tcp") return;
          for (let i = 0; i < 10; i++) {
            silent.push(Deno.connect({ hostname: ep.hostname, port: ep.port }));
          }
        },
        onRejected: (_peer, reason) => {
          if (/Dropped for a newer peer/.test(reason) && ++displaced === 2) flooded();
        },
      },
    });
    assert.equal(r.source.ok, true, `seed ${seed}: ${!r.source.ok && r.source.error.message}`);
    assert.equal(r.destination.ok, true, `${!r.destination.ok && r.destination.error.message}`);
    assert.ok(displaced >= 2);
    r.destinationMemory.close();
  } finally {
    for (const c of await Promise.all(silent)) c.close();
  }
});

Deno.test("receiveGuest() fails the migration when a channel goes silent for its idle bound", async () => {
  const seed = testSeed();
  // Channel 1 stops after its hello and 64 KiB, until the destination has
  // answered its failure on the main connection: the source stalls (its
  // iteration waits for channel 1), so a channel of the destination waits
  // in vain, whichever notices first.
  let failed!: () => void;
  const answered = new Promise<void>((resolve) => failed = resolve);
  const r = await migratePair({
    ram: 16 * MiB,
    channels: 2,
    seed,
    destination: { idleTimeoutMs: 300 },
    proxy: (t) =>
      startChannelProxy(t, {
        hold: (s) =>
          s === 1 ? { from: CHANNEL_HELLO_BYTES + (64 << 10), until: answered } : undefined,
        onAnswer: (s, chunk) => {
          // DVMA, status 1: the destination's failure answer.
          const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          const dvma = chunk.length >= 8 && v.getUint32(0, true) === 0x414d5644;
          if (s === "main" && dvma && v.getUint32(4, true) === 1) failed();
        },
      }),
  });
  assert.equal(r.destination.ok, false);
  assert.equal(r.source.ok, false, `seed ${seed}: the source must fail`);
  assert.match(
    !r.destination.ok ? r.destination.error.message : "",
    /Parallel channel [01] of 2: Cannot read the stream: No progress on .* for 0\.3 s: the peer stopped sending/,
  );
  r.destinationMemory.close();
});
