// The destination against peers that are not (good) sources: silent
// connections, bursts of them, garbage, a source that stops after its header
// or mid-section, a header trickled a byte at a time. Peers that fail before a
// valid header are dropped while the listener goes on accepting; an
// established source that goes quiet is bounded.
import assert from "node:assert/strict";
import { GuestMemory } from "../memory/guest_memory.ts";
import { DestinationFailure, receiveGuest } from "../migration/guest/destination.ts";
import { formatEndpoint } from "../migration/transport/endpoint.ts";
import { connectEndpoint, listenEndpoint } from "../migration/transport/open.ts";
import { migrateGuest } from "../migration/guest/source.ts";
import { encodeStreamHeader } from "../migration/stream/format.ts";
import type { StreamChannel } from "../migration/transport/channel.ts";
import { guestAddress } from "../sys/address.ts";
import { readProcFile } from "../sys/procfs.ts";
import { until, within } from "./_support.ts";
import { guestAddress as g } from "../sys/address.ts";
import { fillSeeded } from "./_random.ts";

const MiB = 2 ** 20;
const RAM = 8 * MiB;
const LAYOUT = [{ gpa: g(0n), size: BigInt(RAM) }];

function ram(): GuestMemory {
  const m = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(RAM) }]);
  fillSeeded(m.view(guestAddress(0n), 65536), 25);
  return m;
}

/** A destination on a free port, with a bounded wait for its outcome. */
function destination(
  memory: GuestMemory,
  options: Partial<Parameters<typeof receiveGuest>[0]> = {},
) {
  const listener = listenEndpoint("tcp:127.0.0.1:0");
  const endpoint = formatEndpoint(listener.endpoint);
  const rejected: string[] = [];
  const outcome = receiveGuest({
    memory,
    from: listener,
    onRejected: (peer, reason) => rejected.push(`${peer}: ${reason}`),
    ...options,
  }).then((g) => ({ ok: true as const, got: g }), (e) => ({ ok: false as const, error: e }));
  return {
    endpoint,
    rejected,
    async settle(ms = 30_000) {
      const r = await within(outcome, ms);
      assert.notEqual(r, "timeout", `receiveGuest() settled within ${ms} ms`);
      return r as Exclude<typeof r, "timeout">;
    },
  };
}

Deno.test("receiveGuest() takes a real source that connects after a silent peer", async () => {
  using src = ram();
  using dst = ram();
  const d = destination(dst);
  using _idle = await connectEndpoint(d.endpoint); // connects, sends nothing
  const report = await migrateGuest({ memory: src, to: d.endpoint });
  assert.equal(report.result, "completed", report.error);
  const r = await d.settle();
  assert.ok(r.ok, r.ok ? "" : r.error.message);
  assert.equal(r.got.digest, report.sourceDigest);
});

Deno.test("receiveGuest() takes a real source after a burst of 50 silent connections", async () => {
  using src = ram();
  using dst = ram();
  const d = destination(dst, { maxPending: 8 });
  const idle: StreamChannel[] = [];
  try {
    for (let i = 0; i < 50; i++) idle.push(await connectEndpoint(d.endpoint));
    const report = await migrateGuest({ memory: src, to: d.endpoint });
    assert.equal(report.result, "completed", report.error);
    const r = await d.settle();
    assert.ok(r.ok, r.ok ? "" : r.error.message);
    // Silent peers made room for newer ones, oldest first (those still in
    // the kernel's backlog when the source won were never accepted).
    assert.ok(d.rejected.length > 0, "silent peers were dropped");
    for (const r of d.rejected) {
      assert.match(r, /Dropped for a newer peer: 8 peers were waiting to send a header/);
    }
  } finally {
    for (const c of idle) c.close();
  }
});

Deno.test("receiveGuest() drops peers that send garbage and gives up after maxAttempts", async () => {
  using dst = ram();
  const d = destination(dst, { maxAttempts: 5 });
  for (let i = 0; i < 5; i++) {
    using c = await connectEndpoint(d.endpoint);
    await c.write(new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: x${i}\r\n\r\n`));
  }
  const r = await d.settle();
  assert.ok(!r.ok);
  assert.ok(r.error instanceof DestinationFailure);
  assert.equal(r.error.imageTouched, false, "no peer got as far as RAM");
  assert.match(
    r.error.message,
    /^No migration stream was received: Gave up after 5 peers failed before sending a valid stream header \(the last: Cannot receive migration stream at offset 0: Bad magic/,
  );
  assert.equal(d.rejected.length, 5);
});

Deno.test("receiveGuest() drops a peer that trickles its header, then takes the real source", async () => {
  using src = ram();
  using dst = ram();
  const d = destination(dst, { headerTimeoutMs: 500 });
  const header = encodeStreamHeader(LAYOUT, 4096);
  const slow = await connectEndpoint(d.endpoint);
  // One byte every 50 ms: progress every time, but no header within 500 ms.
  const trickle = (async () => {
    for (const b of header) {
      await slow.write(new Uint8Array([b]));
      await new Promise((r) => setTimeout(r, 50));
    }
  })().catch(() => {});
  try {
    assert.ok(await until(() => d.rejected.length > 0, 10_000), "the trickling peer was dropped");
    assert.match(d.rejected[0], /No valid stream header within 0\.5 s/);
    const report = await migrateGuest({ memory: src, to: d.endpoint });
    assert.equal(report.result, "completed", report.error);
    assert.ok((await d.settle()).ok);
  } finally {
    slow.close();
    await trickle;
  }
});

for (
  const [what, after] of [
    ["a valid header", new Uint8Array(0)],
    ["a header and part of a section", new Uint8Array(10)],
  ] as const
) {
  Deno.test(`receiveGuest() fails in one line when a source stops after ${what}`, async () => {
    using dst = ram();
    const d = destination(dst, { idleTimeoutMs: 500 });
    using c = await connectEndpoint(d.endpoint);
    await c.write(encodeStreamHeader(LAYOUT, 4096));
    if (after.length > 0) await c.write(after);
    const r = await d.settle();
    assert.ok(!r.ok);
    assert.ok(r.error instanceof DestinationFailure);
    assert.equal(r.error.imageTouched, true, "a valid header began the image");
    assert.match(
      r.error.message,
      /^Cannot restore the image: Cannot receive migration stream at offset \d+: Cannot read the stream: No progress on tcp:127\.0\.0\.1:\d+ \(peer 127\.0\.0\.1:\d+\) for 0\.5 s: the peer stopped sending$/,
    );
    assert.equal(r.error.message.split("\n").length, 1);
  });
}

/** The `tr` (timer) field of each /proc/net/tcp row whose local port is `port`. */
function tcpTimers(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readProcFile("/proc/net/tcp").split("\n").slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 5 && (f[1].endsWith(`:${hex}`) || f[2].endsWith(`:${hex}`)))
    .map((f) => f[5].split(":")[0]);
}

Deno.test("connectEndpoint() and accepted TCP connections run the keepalive timer", async () => {
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  const port = listener.endpoint.transport === "tcp" ? listener.endpoint.port : 0;
  const accepted = listener.accept();
  using _src = await connectEndpoint(`tcp:127.0.0.1:${port}`);
  using _dst = await accepted;
  // An idle established socket with SO_KEEPALIVE has its keepalive timer (2) armed.
  const timers = tcpTimers(port);
  assert.equal(timers.length, 2, `two connection ends on port ${port}: ${timers}`);
  assert.deepEqual(timers, ["02", "02"], "both ends arm the keepalive timer");
});
