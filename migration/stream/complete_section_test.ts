import assert from "node:assert/strict";
import {
  concat,
  LAYOUT,
  MemorySink,
  MemorySource,
  PAGE,
  randomRam,
  sameRam,
  sampleStream,
  section,
  sha256Ram,
} from "../../tests/_stream_samples.ts";
import { arrayRam, type RamAccess } from "./ram.ts";
import { StreamError } from "./error.ts";
import { encodeStreamHeader, SectionType } from "./format.ts";
import { receiveStream } from "./reader.ts";
import { StreamWriter } from "./writer.ts";
import { guestAddress as g } from "../../sys/address.ts";

async function reject(bytes: Uint8Array, ram: RamAccess = arrayRam(LAYOUT)): Promise<StreamError> {
  const err = await receiveStream(new MemorySource(bytes), ram, { digest: sha256Ram })
    .then(() => undefined, (e) => e);
  assert.ok(err instanceof StreamError, `expected a StreamError, got ${err}`);
  return err;
}

const HEADER = encodeStreamHeader(LAYOUT, PAGE);
const DIGEST = new Uint8Array(32);

Deno.test("receiveStream() calls onComplete at COMPLETE, then digests once, before END", async () => {
  const [bytes] = await sampleStream();
  const events: string[] = [];
  // The source's bytes arrive 100 at a time: END cannot have been read at COMPLETE.
  const source = new MemorySource(bytes, 100);
  const s = await receiveStream(source, arrayRam(LAYOUT), {
    devices: ["dev0"],
    digest: (ram) => {
      events.push("digest");
      return sha256Ram(ram);
    },
    onComplete: () => {
      events.push("complete");
    },
  });
  assert.deepEqual(events, ["complete", "digest"]);
  assert.equal(s.sections.end, 1);
});

Deno.test("StreamWriter.writeEnd() writes COMPLETE first unless writeComplete() did", async () => {
  const types = (bytes: Uint8Array) => {
    const v = new DataView(bytes.buffer);
    const out: number[] = [];
    for (let at = HEADER.length; at < bytes.length;) {
      out.push(v.getUint32(at, true));
      at += 28 + Number(v.getBigUint64(at + 16, true)) + 4;
    }
    return out;
  };
  const implicit = new MemorySink();
  const a = new StreamWriter(implicit);
  await a.writeHeader(LAYOUT, PAGE);
  await a.writeEnd(DIGEST);
  assert.deepEqual(types(implicit.bytes()), [SectionType.COMPLETE, SectionType.END]);

  const explicit = new MemorySink();
  const b = new StreamWriter(explicit);
  await b.writeHeader(LAYOUT, PAGE);
  await b.writeComplete();
  const flushed = explicit.bytes().length;
  assert.equal(flushed, HEADER.length + 32, "COMPLETE is flushed to the sink at once");
  await assert.rejects(b.writeIteration(1), TypeError, "nothing but END after COMPLETE");
  await assert.rejects(b.writeComplete(), TypeError);
  await b.writeEnd(DIGEST);
  assert.deepEqual(types(explicit.bytes()), [SectionType.COMPLETE, SectionType.END]);
});

Deno.test("receiveStream() rejects END without COMPLETE, and any section after COMPLETE", async () => {
  const complete = section(SectionType.COMPLETE, 0n, 0n);
  const end = section(SectionType.END, 0n, 32n, DIGEST);
  const H = HEADER.length;
  let e = await reject(concat(HEADER, end));
  assert.equal(e.reason, "END section before COMPLETE");
  assert.equal(e.offset, H);
  e = await reject(concat(HEADER, complete, section(SectionType.ITERATION, 1n, 0n), end));
  assert.equal(e.reason, "Iteration section after COMPLETE (only END may follow)");
  assert.equal(e.offset, H + 32);
  e = await reject(concat(HEADER, complete, complete, end));
  assert.equal(e.reason, "COMPLETE section after COMPLETE (only END may follow)");
  e = await reject(concat(HEADER, section(SectionType.COMPLETE, 0n, 4n, new Uint8Array(4)), end));
  assert.equal(e.reason, "COMPLETE section has length 4, expected 0");
  e = await reject(concat(HEADER, section(SectionType.COMPLETE, 7n, 0n), end));
  assert.equal(e.reason, "COMPLETE section has arg 7, expected 0");
  e = await reject(concat(HEADER, complete));
  assert.equal(e.reason, "Stream ended without an END section");
});

Deno.test("receiveStream({ zeroed }) leaves never-written zero pages alone and clears written ones", async () => {
  // Even pages are zero. Iteration 0 sends pages 3 and 5 with data (in sparse
  // windows, with the zero pages); iteration 1 sends them as zero.
  const src = randomRam(LAYOUT, true);
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { maxRunBytes: 64 * 1024 });
  await w.writeHeader(LAYOUT, PAGE);
  await w.writePages(src, g(0n), 64);
  await w.writePages(src, g(0x100000n), 32);
  await w.writeIteration(0);
  src.view(g(3n * BigInt(PAGE)), PAGE).fill(0);
  await w.writePages(src, g(3n * BigInt(PAGE)), 1);
  await w.writeZeroRun(g(5n * BigInt(PAGE)), 2);
  src.view(g(5n * BigInt(PAGE)), 2 * PAGE).fill(0);
  await w.writeEnd(sha256Ram(src));
  const bytes = sink.bytes();

  // Fresh RAM: the result equals the source.
  const fresh = arrayRam(LAYOUT);
  await receiveStream(new MemorySource(bytes), fresh, { digest: sha256Ram, zeroed: true });
  assert.ok(sameRam(src, fresh));

  // A marker in a zero page the stream never wrote shows it was not touched
  // with `zeroed` (the caller vouched for zero), and is cleared without it.
  const marked = () => {
    const ram = arrayRam(LAYOUT);
    ram.view(g(2n * BigInt(PAGE)), PAGE).fill(0xaa); // page 2: zero in every section that carries it
    return ram;
  };
  const trusting = marked();
  const err = await receiveStream(new MemorySource(bytes), trusting, {
    digest: sha256Ram,
    zeroed: true,
  }).then(() => undefined, (e) => e);
  assert.ok(err instanceof StreamError && /RAM digest mismatch/.test(err.reason), String(err));
  assert.equal(trusting.view(g(2n * BigInt(PAGE)), 1)[0], 0xaa, "not read or written");
  const careful = marked();
  await receiveStream(new MemorySource(bytes), careful, { digest: sha256Ram });
  assert.ok(sameRam(src, careful));
});
