import assert from "node:assert/strict";
import {
  LAYOUT,
  MemorySink,
  MemorySource,
  PAGE,
  randomRam,
  sameRam,
  sha256Ram,
} from "../../tests/_stream_samples.ts";
import { arrayRam } from "./ram.ts";
import { receiveStream } from "./reader.ts";
import { StreamWriter } from "./writer.ts";
import type { StreamSink } from "../transport/channel.ts";
import { type GuestAddress, guestAddress as g } from "../../sys/address.ts";
import { fillSeeded } from "../../tests/_random.ts";

const P = BigInt(PAGE);

Deno.test("StreamWriter.writePages() splits zero and data pages and batches runs", async () => {
  const src = arrayRam(LAYOUT);
  src.view(g(0n), 10 * PAGE).fill(7); // pages 0-9 data, 10-19 zero, 20 data, rest zero
  src.view(g(20n * P), PAGE)[PAGE - 1] = 1;
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { maxRunBytes: 4 * PAGE });
  await w.writeHeader(LAYOUT, PAGE);
  assert.deepEqual(await w.writePages(src, g(0n), 64), {
    pages: 11,
    zeroPages: 53,
    skippedPages: 0,
  });
  await w.writeEnd(sha256Ram(src));
  const dst = arrayRam(LAYOUT);
  dst.view(g(30n * P), PAGE).fill(3); // a stale page the zero run must clear
  const s = await receiveStream(new MemorySource(sink.bytes()), dst, { digest: sha256Ram });
  // data: 4 + 4 + 2 pages, then 1; zero: pages 10-19 and 21-63
  assert.deepEqual(s.sections, {
    ram: 4,
    zero: 2,
    sparse: 0,
    compressed: 0,
    deviceState: 0,
    devicePrecopy: 0,
    deviceInitialSent: 0,
    iteration: 0,
    end: 1,
  });
  assert.equal(s.bytes, w.bytesWritten);
  assert.equal(sink.bytes().length, w.bytesWritten);
  assert.equal(sink.writes, 1); // small sections went out in one batched write
  assert.ok(sameRam(src, dst));
});

Deno.test("StreamWriter.writePages() spans adjacent regions and rejects gaps", async () => {
  const layout = [{ gpa: g(0n), size: 4n * P }, { gpa: g(4n * P), size: 4n * P }];
  const src = arrayRam(layout);
  src.view(g(2n * P), 2 * PAGE).fill(1);
  src.view(g(4n * P), 2 * PAGE).fill(1);
  const w = new StreamWriter(new MemorySink());
  await w.writeHeader(layout, PAGE);
  assert.deepEqual(await w.writePages(src, g(0n), 8), { pages: 4, zeroPages: 4, skippedPages: 0 });
  // A range running into the hole between LAYOUT's regions is refused whole,
  // before a byte goes out, and the writer stays usable.
  const sink = new MemorySink();
  const gap = new StreamWriter(sink);
  await gap.writeHeader(LAYOUT, PAGE);
  const ram = arrayRam(LAYOUT);
  fillSeeded(ram.view(g(0n), 64 * PAGE).subarray(0, 65536), 64);
  const before = gap.bytesWritten;
  await assert.rejects(
    gap.writePages(ram, g(0n), 65),
    /Cannot send pages at GPA 0x0 length 266240: GPA 0x40000 is in no region/,
  );
  assert.equal(gap.bytesWritten, before, "nothing was framed");
  await gap.flush();
  assert.equal(sink.bytes().length, before, "nothing was sent");
  assert.deepEqual(await gap.writePages(ram, g(0n), 64), {
    pages: 16,
    zeroPages: 48,
    skippedPages: 0,
  });
});

Deno.test("StreamWriter is failed after a write that failed part way through a section", async () => {
  let writes = 0;
  const sink = {
    write: () =>
      ++writes > 2 ? Promise.reject(new Deno.errors.BrokenPipe("gone")) : Promise.resolve(),
  };
  const ram = arrayRam([{ gpa: g(0n), size: 64n * P }]);
  ram.view(g(0n), 64 * PAGE).fill(7);
  const w = new StreamWriter(sink, { maxRunBytes: 8 * PAGE, batchBytes: 16 * PAGE });
  await w.writeHeader(ram.layout, PAGE);
  await assert.rejects(w.writePages(ram, g(0n), 64), Deno.errors.BrokenPipe);
  await assert.rejects(w.writeIteration(1), /the stream is failed, expected open/);
});

Deno.test("StreamWriter.writeRamRun() hands the RAM view itself to the sink", async () => {
  const ram = arrayRam([{ gpa: g(0n), size: 1024n * P }]);
  const view = ram.view(g(0n), 1024 * PAGE);
  fillSeeded(view.subarray(0, 65536), 97);
  const seen: Uint8Array[] = [];
  const sink: StreamSink = { write: (b) => (seen.push(b), Promise.resolve()) };
  const w = new StreamWriter(sink);
  await w.writeHeader(ram.layout, PAGE);
  await w.writeRamRun(g(0n), view);
  const direct = seen.filter((b) => b.buffer === view.buffer);
  assert.equal(direct.length, 1);
  assert.equal(direct[0].byteOffset, view.byteOffset);
  assert.equal(direct[0].length, view.length);
});

Deno.test("StreamWriter.writeRamRun() copies first with snapshotRuns and splits at maxRunBytes", async () => {
  const ram = arrayRam([{ gpa: g(0n), size: 1024n * P }]);
  const view = ram.view(g(0n), 1024 * PAGE);
  const seen: Uint8Array[] = [];
  const sink: StreamSink = { write: (b) => (seen.push(b.slice()), Promise.resolve()) };
  const w = new StreamWriter(sink, { snapshotRuns: true, maxRunBytes: 1 << 20 });
  await w.writeHeader(ram.layout, PAGE);
  await w.writeRamRun(g(0n), view);
  assert.equal(seen.filter((b) => b.length === 1 << 20).length, 4);
  const w2 = new StreamWriter({ write: (b) => (seen.push(b), Promise.resolve()) }, {
    snapshotRuns: true,
  });
  seen.length = 0;
  await w2.writeHeader(ram.layout, PAGE);
  await w2.writeRamRun(g(0n), view);
  assert.equal(seen.filter((b) => b.buffer === view.buffer).length, 0);
});

Deno.test("StreamWriter rejects writes out of order or overlapping", async () => {
  const w = new StreamWriter(new MemorySink());
  await assert.rejects(w.writeIteration(0), {
    name: "TypeError",
    message: /is new, expected open/,
  });
  await w.writeHeader(LAYOUT, PAGE);
  await assert.rejects(w.writeHeader(LAYOUT, PAGE), TypeError);
  const first = w.writeIteration(1);
  await assert.rejects(w.writeIteration(2), { name: "TypeError", message: /pending/ });
  await first;
  await w.writeEnd(new Uint8Array(32));
  await assert.rejects(w.writeZeroRun(g(0n), 1), { name: "TypeError", message: /is ended/ });
});

Deno.test("StreamWriter rejects bad arguments with RangeError", async () => {
  const w = new StreamWriter(new MemorySink());
  await assert.rejects(w.writeHeader(LAYOUT, 1000), RangeError);
  await w.writeHeader(LAYOUT, PAGE);
  const page = new Uint8Array(PAGE);
  await assert.rejects(w.writeRamRun(g(0x800n), page), {
    name: "RangeError",
    message: /page-aligned/,
  });
  await assert.rejects(w.writeRamRun(g(0x80000n), page), {
    name: "RangeError",
    message: /outside/,
  });
  await assert.rejects(w.writeRamRun(g(63n * P), new Uint8Array(2 * PAGE)), RangeError);
  await assert.rejects(w.writeZeroRun(g(0n), -1), RangeError);
  await assert.rejects(w.writeDeviceState("", page), RangeError);
  await assert.rejects(w.writeDeviceState("x".repeat(256), page), RangeError);
  await assert.rejects(w.writeIteration(1.5), RangeError);
  await assert.rejects(w.writeEnd(new Uint8Array(65)), RangeError);
  await w.writeEnd(new Uint8Array(1)); // still usable after argument errors
  assert.throws(() => new StreamWriter(new MemorySink(), { maxRunBytes: 1 << 30 }), RangeError);
});

Deno.test("StreamWriter waits for each sink write and holds at most one batch", async () => {
  // A sink that only completes a write when the test releases it.
  const pending: (() => void)[] = [];
  let outstanding = 0;
  let maxOutstanding = 0;
  let maxBytes = 0;
  const sink: StreamSink = {
    write(b) {
      outstanding++;
      maxOutstanding = Math.max(maxOutstanding, outstanding);
      maxBytes = Math.max(maxBytes, b.length);
      return new Promise((resolve) => pending.push(() => (outstanding--, resolve())));
    },
  };
  const ram = arrayRam([{ gpa: g(0n), size: 4096n * P }]); // 16 MiB, alternating zero pages
  const v = ram.view(g(0n), 4096 * PAGE);
  for (let o = 0; o < v.length; o += 2 * PAGE) v[o] = 1;
  // Runs (and so sparse sections) of at most one batch: no write may exceed it.
  const w = new StreamWriter(sink, { batchBytes: 64 * 1024, maxRunBytes: 64 * 1024 });
  await w.writeHeader(ram.layout, PAGE);
  let done = false;
  const sending = w.writePages(ram, g(0n), 4096).then(() => (done = true));
  let released = 0;
  // The writer advances on the event loop; a bound keeps a stuck one from hanging the test.
  for (let turns = 0; !done; turns++) {
    assert.ok(turns < 1_000_000, `writePages stuck after ${released} released writes`);
    await new Promise((r) => setTimeout(r, 0));
    if (pending.length === 0) continue;
    assert.equal(done, false, "writePages resolved while a sink write was pending");
    pending.shift()!();
    released++;
  }
  await sending;
  assert.equal(maxOutstanding, 1);
  assert.ok(maxBytes <= 64 * 1024, `a write of ${maxBytes} bytes`);
  assert.ok(released > 100, `${released} writes`);
});

Deno.test("StreamWriter.writePageRuns() sends scattered runs like writePages() does", async () => {
  const src = randomRam(LAYOUT, true); // even pages zero
  // Runs in region 1 (at 0x100000): single pages (data and zero), and a long run.
  const runs = [1, 1, 2, 1, 5, 1, 9, 20, 31, 1];
  const viaRuns = new MemorySink();
  const a = new StreamWriter(viaRuns);
  await a.writeHeader(LAYOUT, PAGE);
  const got = await a.writePageRuns(src, g(0x100000n), runs);
  await a.writeEnd(new Uint8Array(1));
  const viaPages = new MemorySink();
  const b = new StreamWriter(viaPages);
  await b.writeHeader(LAYOUT, PAGE);
  const sum = { pages: 0, zeroPages: 0, skippedPages: 0 };
  for (let k = 0; k < runs.length; k += 2) {
    const r = await b.writePages(src, g(0x100000n + BigInt(runs[k]) * P), runs[k + 1]);
    sum.pages += r.pages;
    sum.zeroPages += r.zeroPages;
  }
  await b.writeEnd(new Uint8Array(1));
  assert.deepEqual(got, sum);
  assert.deepEqual(got, { pages: 2 + 10 + 1, zeroPages: 1 + 10, skippedPages: 0 });
  assert.deepEqual(viaRuns.bytes(), viaPages.bytes(), "the same stream, byte for byte");
});

Deno.test("StreamWriter.writePageRuns() rejects malformed runs and runs past the region", async () => {
  const src = arrayRam(LAYOUT);
  const w = new StreamWriter(new MemorySink());
  await w.writeHeader(LAYOUT, PAGE);
  for (const runs of [[1], [3, 1, 2, 1], [0, 0], [1.5, 1], [-1, 2]]) {
    await assert.rejects(w.writePageRuns(src, g(0n), runs), RangeError, JSON.stringify(runs));
  }
  await assert.rejects(w.writePageRuns(src, g(0n), [60, 8]), /outside one region/);
  assert.deepEqual(await w.writePageRuns(src, g(0n), []), {
    pages: 0,
    zeroPages: 0,
    skippedPages: 0,
  });
});

Deno.test("StreamWriter asks RAM for never-written ranges once per large span, never per small run", async () => {
  // Each answer costs the kernel a walk to the next hole (O(file) on tmpfs).
  const layout = [{ gpa: g(0n), size: 64n << 20n }];
  const base = arrayRam(layout);
  const asked: [bigint, number][] = [];
  const ram = {
    ...base,
    layout: base.layout,
    view: (gpa: GuestAddress, n: number) => base.view(gpa, n),
    unpopulated(gpa: GuestAddress, n: number): [number, number][] {
      asked.push([gpa, n]);
      return [[0, n]]; // all never written
    },
  };
  const sink = new MemorySink();
  const w = new StreamWriter(sink);
  await w.writeHeader(layout, PAGE);
  assert.deepEqual(await w.writePages(ram, g(0n), (64 << 20) / PAGE), {
    pages: 0,
    zeroPages: (64 << 20) / PAGE,
    skippedPages: (64 << 20) / PAGE, // never written: sent as zero, not read
  });
  assert.deepEqual(asked, [[0n, 64 << 20]], "one question for the whole span");
  asked.length = 0;
  const runs: number[] = [];
  for (let p = 0; p < 4000; p += 8) runs.push(p, 2);
  await w.writePageRuns(ram, g(0n), runs);
  assert.deepEqual(asked, [], "small runs are scanned, not asked about");
});
