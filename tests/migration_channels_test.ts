// Live migrations over parallel channels (QEMU's multifd): the image arrives
// whole over 2 and 4 channels with a workload dirtying pages, over TCP and
// TLS; the iteration barrier keeps a page's later copy from being
// overwritten by an earlier one delayed on another channel; a channel cut
// mid-stream fails both sides; a connection with another nonce is refused.
import assert from "node:assert/strict";
import { runMigrationScenario } from "./scenario.ts";
import { fillSeeded, testSeed } from "./_random.ts";
import { type ChannelProxy, startChannelProxy } from "./_channel_proxy.ts";
import { makeTlsFixture } from "./_tls_fixture.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import type { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { guestAddress } from "../sys/address.ts";
import { migrateGuest, type MigrateGuestOptions } from "../migration/guest/source.ts";
import {
  DestinationFailure,
  receiveGuest,
  type ReceiveGuestOptions,
} from "../migration/guest/destination.ts";
import type { MigrationFailure } from "../migration/engine/types.ts";
import type { DirtySource, SourceHarvest } from "../migration/engine/dirty_source.ts";

import { formatEndpoint, parseEndpoint } from "../migration/transport/endpoint.ts";
import type { TlsListenOptions } from "../migration/transport/tls.ts";
import { loadTlsCredentials } from "../migration/transport/tls_credentials.ts";
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
  decodeSectionHeader,
  encodeSectionHeader,
  SECTION_HEADER_BYTES,
  SectionType,
} from "../migration/stream/format.ts";
import { readAck } from "../migration/stream/ack.ts";

const MiB = 1 << 20;

for (const channels of [2, 4]) {
  Deno.test(`migrateGuest() over ${channels} TCP channels with a random workload ends with equal digests`, async () => {
    const seed = testSeed();
    const r = await runMigrationScenario({
      ram: 64 * MiB,
      channels,
      workload: { pattern: "random", pagesPerSecond: 20_000, seed },
      limits: { downtimeLimitMs: 5_000 },
    });
    assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error}`);
    assert.equal(r.destination.ok, true, `seed ${seed}: ${r.destination.error}`);
    assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}`);
    assert.ok((r.workloadPages ?? 0) > 0, "the workload wrote during pre-copy");
  });
}

Deno.test("migrateGuest() over 2 channels with zstd sums every channel's compression", async () => {
  const r = await runMigrationScenario({
    ram: 16 * MiB,
    channels: 2,
    compress: "zstd",
    // Compressible: each 4 KiB page repeats one seeded byte.
    fill: (v) => {
      for (let p = 0; p < v.length / 4096; p++) v.fill((p * 37) & 0xff, p * 4096, p * 4096 + 4096);
    },
  });
  assert.equal(r.report.result, "completed", r.report.error);
  assert.equal(r.destination.digest, r.report.sourceDigest);
  const c = r.report.compression!;
  assert.ok(c.compressedRuns > 0 && c.wireBytes < c.rawBytes, JSON.stringify(c));
});

Deno.test("migrateGuest() over 2 unix-socket channels ends with equal digests", async () => {
  const seed = testSeed();
  const r = await runMigrationScenario({
    ram: 16 * MiB,
    channels: 2,
    transport: "unix",
    workload: { pattern: "hotspot", pagesPerSecond: 5_000, seed },
    limits: { downtimeLimitMs: 5_000 },
  });
  assert.equal(r.report.result, "completed", `seed ${seed}: ${r.report.error}`);
  assert.equal(r.destination.digest, r.report.sourceDigest, `seed ${seed}`);
});

// One migration between two GuestMemory objects in this process, over a
// listener of the caller's (and, optionally, a proxy in front of it).
interface Pair {
  ram: number;
  channels: number;
  seed: number;
  /** Makes the proxy the source dials instead of the listener. */
  proxy?: (target: string) => ChannelProxy;
  source?: Partial<MigrateGuestOptions>;
  destination?: Partial<ReceiveGuestOptions>;
  /** A `tls:` listener instead of a `tcp:` one. */
  tls?: { listen: TlsListenOptions; connect: MigrateGuestOptions["tls"] };
  /** Called with the source RAM (GPA 0 at index 0) before the migration. */
  prepare?: (source: GuestMemory) => void;
}

interface PairResult {
  source: { ok: true; digest: string } | { ok: false; error: MigrationFailure };
  destination: { ok: true; digest: string } | { ok: false; error: DestinationFailure };
  destinationMemory: GuestMemory;
}

async function migratePair(p: Pair): Promise<PairResult> {
  await using stack = new AsyncDisposableStack();
  const layout = [{ gpa: guestAddress(0n), size: BigInt(p.ram) }];
  const source = stack.use(GuestMemory.create(layout, { backing: "memfd" }));
  fillSeeded(source.view(guestAddress(0n), p.ram), p.seed);
  p.prepare?.(source);
  const destinationMemory = GuestMemory.create(layout, { prefault: true });
  const listener = p.tls
    ? await openListener("tls:127.0.0.1:0", { tls: p.tls.listen })
    : await openListener("tcp:127.0.0.1:0");
  stack.defer(() => listener.close());
  let to = formatEndpoint(listener.endpoint);
  if (p.proxy) {
    const proxy = p.proxy(to);
    stack.use(proxy);
    to = proxy.endpoint;
  }
  const abort = new AbortController();
  let accepted = false;
  const received = receiveGuest({
    memory: destinationMemory,
    from: listener,
    zeroed: true,
    channels: p.channels,
    signal: abort.signal,
    ...p.destination,
    onAccepted: (peer, identity) => {
      accepted = true;
      p.destination?.onAccepted?.(peer, identity);
    },
  }).then(
    (g) => ({ ok: true as const, digest: g.digest }),
    (e) => ({ ok: false as const, error: e as DestinationFailure }),
  );
  const sent = await migrateGuest({
    memory: source,
    to,
    tls: p.tls?.connect,
    channels: p.channels,
    ...p.source,
  }).then(
    (r) => ({ ok: true as const, digest: r.sourceDigest! }),
    (e) => ({ ok: false as const, error: e as MigrationFailure }),
  );
  // A source that failed before the destination took it as its source leaves
  // it waiting; one that failed later has closed its connections, which the
  // destination sees on its own.
  if (!sent.ok && !accepted) abort.abort(new Deno.errors.Interrupted("the source failed"));
  return { source: sent, destination: await received, destinationMemory };
}

// Only the pages a test names are dirty, and only at the harvest it names:
// `at(harvest, ram)` returns the pages to report (and may write them first).
function scriptedSource(at: (harvest: number) => number[]): DirtySource {
  let harvest = 0;
  return {
    name: "scripted",
    scope: "precise",
    start() {},
    stop() {},
    coverInto() {},
    harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
      const pages = at(harvest++);
      for (const p of pages) bitmaps[0].setRange(p, 1);
      return { source: "scripted", dirtyPages: pages.length, scope: "precise", coveredPages: 0 };
    },
  };
}

Deno.test("migrateGuest() over 2 channels keeps a page's later copy when its earlier one is delayed on another channel", async () => {
  const seed = testSeed();
  const ram = 1 << 20; // 256 pages: the bulk pass sends 0-127 on channel 0, 128-255 on channel 1
  const P = 200;
  let source: GuestMemory | undefined;
  // The page goes with A in iteration 0 (on channel 1); the harvest after
  // it writes B and reports it dirty, so B goes next, alone, on channel 0.
  const dirty = scriptedSource((h) => {
    if (h !== 1) return [];
    source!.view(guestAddress(BigInt(P * 4096)), 4096).fill(0xbb);
    return [P];
  });
  // Channel 1 (holding A) is held after its hello until channel 0 has sent
  // its COMPLETE (B and all): without the barrier the destination would
  // apply B first and then the stale A.
  let channel0Done!: () => void;
  const released = new Promise<void>((resolve) => channel0Done = resolve);
  let tail = new Uint8Array(0);
  const r = await migratePair({
    ram,
    channels: 2,
    seed,
    prepare: (m) => {
      source = m;
      m.view(guestAddress(BigInt(P * 4096)), 4096).fill(0xaa);
    },
    source: { guestSources: [dirty] },
    proxy: (target) =>
      startChannelProxy(target, {
        hold: (s) => s === 1 ? { from: CHANNEL_HELLO_BYTES, until: released } : undefined,
        onForward: (s, chunk) => {
          if (s !== 0) return;
          const t = new Uint8Array(tail.length + chunk.length);
          t.set(tail);
          t.set(chunk, tail.length);
          tail = t.slice(-32);
          if (endsWithComplete(tail)) channel0Done();
        },
      }),
  });
  assert.equal(r.source.ok, true, `seed ${seed}: ${!r.source.ok && r.source.error.message}`);
  assert.equal(
    r.destination.ok,
    true,
    `seed ${seed}: ${!r.destination.ok && r.destination.error.message}`,
  );
  const page = r.destinationMemory.view(guestAddress(BigInt(P * 4096)), 4096);
  assert.ok(page.every((b) => b === 0xbb), `seed ${seed}: the destination holds B, not A`);
  r.destinationMemory.close();
});

// Whether `tail` (the last 32 bytes of a channel) is a COMPLETE section.
function endsWithComplete(tail: Uint8Array): boolean {
  if (tail.length < SECTION_HEADER_BYTES + 4) return false;
  const h = decodeSectionHeader(tail.subarray(0, SECTION_HEADER_BYTES));
  return h !== undefined && h.type === SectionType.COMPLETE;
}

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

Deno.test("migrateGuest() over 2 TLS channels ends with equal digests", async () => {
  const seed = testSeed();
  const fixture = await makeTlsFixture();
  try {
    const r = await migratePair({
      ram: 16 * MiB,
      channels: 2,
      seed,
      tls: {
        listen: { credentials: loadTlsCredentials(fixture.good, "server") },
        connect: {
          credentials: loadTlsCredentials(fixture.good, "client"),
          serverName: "localhost",
        },
      },
    });
    assert.equal(r.source.ok, true, `seed ${seed}: ${!r.source.ok && r.source.error.message}`);
    assert.equal(r.destination.ok, true, `${!r.destination.ok && r.destination.error.message}`);
    assert.equal(r.source.ok && r.source.digest, r.destination.ok && r.destination.digest);
    r.destinationMemory.close();
  } finally {
    await fixture.remove();
  }
});

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
