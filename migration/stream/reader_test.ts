import assert from "node:assert/strict";
import {
  concat,
  LAYOUT,
  MemorySink,
  MemorySource,
  PAGE,
  sameRam,
  sampleStream,
  section,
  sha256Ram,
} from "../../tests/_stream_samples.ts";
import { arrayRam } from "./ram.ts";
import { listenEndpoint } from "../transport/open.ts";
import { StreamError } from "./error.ts";
import { receiveStream } from "./reader.ts";
import { StreamWriter } from "./writer.ts";
import { encodeSectionHeader, encodeStreamHeader, SectionType } from "./format.ts";
import { guestAddress as g } from "../../sys/address.ts";
import { fillSeeded } from "../../tests/_random.ts";

/** Receives `bytes` into fresh RAM (read 5000 bytes at a time) and returns the StreamError. */
async function reject(bytes: Uint8Array, options: { digest?: () => Uint8Array } = {}) {
  const dst = arrayRam(LAYOUT);
  const err = await receiveStream(new MemorySource(bytes, 5000), dst, {
    digest: options.digest ?? sha256Ram,
    devices: ["dev0", "d"],
  }).then(() => undefined, (e) => e);
  assert.ok(err instanceof StreamError, `expected a StreamError, got ${err}`);
  return err;
}

function assertError(e: StreamError, offset: number, reason: RegExp) {
  assert.match(e.reason, reason);
  assert.equal(e.offset, offset, `offset of "${e.reason}"`);
  assert.equal(e.message, `Cannot receive migration stream at offset ${offset}: ${e.reason}`);
}

const HEADER = encodeStreamHeader(LAYOUT, PAGE);
const H = HEADER.length; // 60

function flipped(bytes: Uint8Array, at: number) {
  const b = bytes.slice();
  b[at] ^= 0x10;
  return b;
}

Deno.test("receiveStream() loads a stream with every section type and reports it", async () => {
  const [bytes, off] = await sampleStream();
  const dst = arrayRam(LAYOUT);
  dst.view(g(2n * BigInt(PAGE)), PAGE).fill(0xee); // the zero run must clear it
  const seen: number[] = [];
  const s = await receiveStream(new MemorySource(bytes, 3), dst, {
    digest: sha256Ram,
    devices: ["dev0"],
    onIteration: (n) => seen.push(n),
  });
  assert.deepEqual(s.sections, {
    ram: 1,
    zero: 1,
    sparse: 0,
    compressed: 0,
    deviceState: 1,
    devicePrecopy: 0,
    deviceInitialSent: 0,
    iteration: 1,
    end: 1,
  });
  assert.equal(s.pages, 2);
  assert.equal(s.zeroPages, 1);
  assert.equal(s.bytes, off.length);
  assert.deepEqual(s.deviceStates, new Map([["dev0", [new Uint8Array([1, 2, 3, 4, 5])]]]));
  assert.equal(s.iterations, 1);
  assert.equal(s.lastIteration, 1);
  assert.deepEqual(seen, [1]);
  assert.deepEqual(s.digest, sha256Ram(dst));
});

Deno.test("receiveStream() rejects a truncated file at every kind of point", async () => {
  const [bytes, off] = await sampleStream();
  const dir = await Deno.makeTempDir();
  try {
    const cuts: [number, RegExp][] = [
      [0, /^Stream truncated in the stream header/],
      [10, /^Stream truncated in the stream header: 14 more/],
      [H - 1, /^Stream truncated in the stream header region table/],
      [H, /^Stream ended without an END section$/],
      [off.iteration + 5, /^Stream truncated in a section header/],
      [off.ram + 28 + 100, /^Stream truncated in a RAM run: /],
      [off.zero + 30, /^Stream truncated in the Zero run section checksum/],
      [off.device + 30, /^Stream truncated in a device id/],
      [off.device + 28 + 4 + 2, /^Stream truncated in a device state section/],
      [off.complete + 20, /^Stream truncated in a section header/],
      [off.complete + 30, /^Stream truncated in the COMPLETE section checksum/],
      [off.end + 28 + 10, /^Stream truncated in the END section/],
      [off.length - 1, /^Stream truncated in the END section checksum/],
    ];
    for (const [cut, reason] of cuts) {
      const path = `${dir}/cut-${cut}.mig`;
      await Deno.writeFile(path, bytes.subarray(0, cut));
      using file = await listenEndpoint(`file:${path}`).accept();
      const err = await receiveStream(file, arrayRam(LAYOUT), {
        digest: sha256Ram,
        devices: ["dev0"],
      }).catch((e) => e);
      assert.ok(err instanceof StreamError, `cut ${cut}: ${err}`);
      assertError(err, cut, reason);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
});

Deno.test("receiveStream() rejects a flipped byte in the stream header", async () => {
  const [bytes] = await sampleStream();
  assertError(await reject(flipped(bytes, 30)), 0, /^Stream header checksum mismatch$/);
  assertError(await reject(flipped(bytes, 2)), 0, /^Bad magic/);
  assertError(await reject(flipped(bytes, 8)), 8, /^Unsupported version 21, expected 5$/);
});

Deno.test("receiveStream() rejects a flipped byte in a RAM run", async () => {
  const [bytes, off] = await sampleStream();
  assertError(
    await reject(flipped(bytes, off.ram + 28 + 4000)),
    off.ram,
    /^RAM run section checksum mismatch$/,
  );
  assertError(
    await reject(flipped(bytes, off.ram + 9)),
    off.ram,
    /^Section header checksum mismatch$/,
  );
});

Deno.test("receiveStream() rejects a flipped byte in a zero run", async () => {
  const [bytes, off] = await sampleStream();
  assertError(
    await reject(flipped(bytes, off.zero + 17)),
    off.zero,
    /^Section header checksum mismatch$/,
  );
  assertError(
    await reject(flipped(bytes, off.zero + 29)),
    off.zero,
    /^Zero run section checksum mismatch$/,
  );
});

Deno.test("receiveStream() rejects a flipped byte in a device state", async () => {
  const [bytes, off] = await sampleStream();
  // In the state: the trailer CRC catches it.
  assertError(
    await reject(flipped(bytes, off.device + 28 + 4 + 1)),
    off.device,
    /^Device state section checksum mismatch$/,
  );
  // In the id: an id this destination does not have is refused as it arrives.
  assertError(
    await reject(flipped(bytes, off.device + 28 + 1)),
    off.device,
    /^Device state for device "duv0", which this destination does not have \(it has dev0, d\)$/,
  );
});

Deno.test("receiveStream() rejects a flipped byte in an iteration marker", async () => {
  const [bytes, off] = await sampleStream();
  assertError(
    await reject(flipped(bytes, off.iteration + 8)),
    off.iteration,
    /^Section header checksum mismatch$/,
  );
  assertError(
    await reject(flipped(bytes, off.iteration + 30)),
    off.iteration,
    /^Iteration section checksum mismatch$/,
  );
});

Deno.test("receiveStream() rejects a flipped byte in the END section", async () => {
  const [bytes, off] = await sampleStream();
  assertError(
    await reject(flipped(bytes, off.end + 28 + 31)),
    off.end,
    /^END section checksum mismatch$/,
  );
});

Deno.test("receiveStream() rejects an oversized length before allocating", async () => {
  const huge = 1n << 50n; // allocating this would throw a RangeError, not a StreamError
  assertError(
    await reject(concat(HEADER, section(SectionType.RAM, 0n, huge))),
    H,
    /^RAM run length 1125899906842624 is not in 1 to 67108864$/,
  );
  assertError(
    await reject(concat(HEADER, section(SectionType.DEVICE_STATE, 4n, huge))),
    H,
    /^Device state section of 1125899906842624 bytes exceeds the remaining device-state limit of 67108800 bytes \(67108864 in all\)$/,
  );
  assertError(
    await reject(concat(HEADER, section(SectionType.END, 0n, huge))),
    H,
    /^END section digest length/,
  );
  assertError(
    await reject(concat(HEADER, section(SectionType.ZERO, 0n, huge))),
    H,
    /^Zero run at GPA 0x0 of 1125899906842624 bytes crosses the end/,
  );
});

Deno.test("receiveStream() rejects a GPA outside the layout", async () => {
  const page = new Uint8Array(PAGE);
  const bytes = concat(HEADER, section(SectionType.RAM, 0x80000n, BigInt(PAGE), page));
  assertError(await reject(bytes), H, /^RAM run GPA 0x80000 is outside the destination's layout$/);
  const zero = concat(HEADER, section(SectionType.ZERO, 0x200000n, BigInt(PAGE)));
  assertError(await reject(zero), H, /^Zero run GPA 0x200000 is outside the destination's layout$/);
});

Deno.test("receiveStream() rejects a run crossing a region end", async () => {
  const twoPages = new Uint8Array(2 * PAGE);
  const bytes = concat(
    HEADER,
    section(SectionType.RAM, 63n * BigInt(PAGE), 2n * BigInt(PAGE), twoPages),
  );
  assertError(
    await reject(bytes),
    H,
    /^RAM run at GPA 0x3f000 of 8192 bytes crosses the end of its region$/,
  );
});

Deno.test("receiveStream() rejects an unaligned run", async () => {
  const bytes = concat(HEADER, section(SectionType.ZERO, 0x800n, BigInt(PAGE)));
  assertError(await reject(bytes), H, /not page-aligned/);
});

Deno.test("receiveStream() rejects a digest mismatch at the end", async () => {
  const [bytes, off] = await sampleStream();
  const e = await reject(bytes, { digest: () => new Uint8Array(32) });
  assertError(e, off.end, /^RAM digest mismatch/);
  assertError(
    await reject(bytes, { digest: () => new Uint8Array(4) }),
    off.end,
    /^RAM digest mismatch/,
  );
});

Deno.test("receiveStream() rejects data after the END section", async () => {
  const [bytes, off] = await sampleStream();
  const more = concat(bytes, section(SectionType.ITERATION, 9n, 0n));
  assertError(await reject(more), off.length, /^Data follows the END section$/);
});

Deno.test("receiveStream() rejects an unknown section type and non-zero flags", async () => {
  assertError(await reject(concat(HEADER, section(11, 0n, 0n))), H, /^Unknown section type 11$/);
  const s = new Uint8Array(32);
  const seed = encodeSectionHeader(s, 0, {
    type: SectionType.ITERATION,
    flags: 1,
    arg: 0n,
    length: 0n,
  });
  new DataView(s.buffer).setUint32(28, seed, true);
  assertError(await reject(concat(HEADER, s)), H, /^Iteration section has non-zero flags 0x1$/);
});

Deno.test("receiveStream() rejects a page size or layout mismatch", async () => {
  const dst = arrayRam(LAYOUT);
  const [bytes] = await sampleStream();
  const e1 = await receiveStream(new MemorySource(bytes), dst, {
    digest: sha256Ram,
    pageSize: 8192,
  })
    .catch((e) => e);
  assertError(e1, 12, /^Page size mismatch: stream has 4096, destination has 8192$/);
  const other = arrayRam([LAYOUT[0], { gpa: g(0x100000n), size: 16n * BigInt(PAGE) }]);
  const e2 = await receiveStream(new MemorySource(bytes), other, {
    digest: sha256Ram,
    devices: ["dev0"],
  }).catch((e) => e);
  assertError(e2, 40, /^Layout mismatch: region 1 is 0x20000 bytes at GPA 0x100000 in the stream/);
  const one = arrayRam([LAYOUT[0]]);
  const e3 = await receiveStream(new MemorySource(bytes), one, {
    digest: sha256Ram,
    devices: ["dev0"],
  }).catch((e) => e);
  assertError(e3, 16, /^Layout mismatch: stream has 2 regions, destination has 1$/);
});

Deno.test("receiveStream() rejects iteration numbers that do not increase", async () => {
  const bytes = concat(
    HEADER,
    section(SectionType.ITERATION, 3n, 0n),
    section(SectionType.ITERATION, 3n, 0n),
  );
  assertError(await reject(bytes), H + 32, /^Iteration 3 does not follow iteration 3$/);
});

Deno.test("receiveStream() caps the device state it keeps", async () => {
  const id = new TextEncoder().encode("d");
  const payload = concat(id, new Uint8Array(100));
  const bytes = concat(
    HEADER,
    section(SectionType.DEVICE_STATE, 1n, 101n, payload),
    section(SectionType.DEVICE_STATE, 1n, 101n, payload),
  );
  const err = await receiveStream(new MemorySource(bytes), arrayRam(LAYOUT), {
    digest: sha256Ram,
    devices: ["d"],
    maxDeviceStateBytes: 250,
  }).catch((e) => e);
  // The first section costs 101 bytes and 64 of overhead: 85 remain, 21 for a state.
  assertError(
    err,
    H + 133,
    /^Device state section of 101 bytes exceeds the remaining device-state limit of 21 bytes \(250 in all\)$/,
  );
});

Deno.test("receiveStream() wraps a transport failure in a StreamError", async () => {
  const [bytes] = await sampleStream();
  let served = false;
  const source = {
    read(into: Uint8Array) {
      if (served) return Promise.reject(new Deno.errors.ConnectionReset("reset by peer"));
      served = true;
      into.set(bytes.subarray(0, 100));
      return Promise.resolve(100);
    },
  };
  const err = await receiveStream(source, arrayRam(LAYOUT), {
    digest: sha256Ram,
    devices: ["dev0"],
  }).catch((e) => e);
  assertError(err, 100, /^Cannot read the stream: reset by peer$/);
  assert.ok(err.cause instanceof Deno.errors.ConnectionReset);
});

Deno.test("receiveStream() leaves the image equal to the source on success", async () => {
  const [bytes] = await sampleStream();
  const dst = arrayRam(LAYOUT);
  await receiveStream(new MemorySource(bytes, 4096), dst, { digest: sha256Ram, devices: ["dev0"] });
  const again = arrayRam(LAYOUT);
  await receiveStream(new MemorySource(bytes), again, { digest: sha256Ram, devices: ["dev0"] });
  assert.ok(sameRam(dst, again));
});

Deno.test("receiveStream() rejects a stream cut inside a large RAM run read in place", async () => {
  const layout = [{ gpa: g(0n), size: 1n << 20n }];
  const src = arrayRam(layout);
  fillSeeded(src.view(g(0n), 65536), 349);
  const sink = new MemorySink();
  const w = new StreamWriter(sink);
  await w.writeHeader(layout, PAGE);
  await w.writeRamRun(g(0n), src.view(g(0n), 1 << 20));
  await w.writeEnd(sha256Ram(src));
  const cut = 44 + 28 + 300_000; // far more than the read buffer still to come
  const err = await receiveStream(
    new MemorySource(sink.bytes().subarray(0, cut), 70_000),
    arrayRam(layout),
    { digest: sha256Ram, bufferBytes: 8192 },
  ).catch((e) => e);
  assert.ok(err instanceof StreamError, String(err));
  assertError(err, cut, /^Stream truncated in a RAM run: 748576 more bytes expected$/);
});

Deno.test("receiveStream() bounds a flood of empty device states by count and overhead", async () => {
  const empty = section(SectionType.DEVICE_STATE, 1n, 1n, new TextEncoder().encode("d"));
  assert.equal(empty.length, 33);
  const flood = concat(HEADER, ...Array.from({ length: 5000 }, () => empty));
  const receive = (options: Record<string, number>) =>
    receiveStream(new MemorySource(flood, 65536), arrayRam(LAYOUT), {
      digest: sha256Ram,
      devices: ["d"],
      ...options,
    }).catch((e) => e);
  assertError(
    await receive({}),
    H + 1024 * 33,
    /^More than 1024 device-state sections for device "d"$/,
  );
  assertError(
    await receive({ maxDeviceStateChunksPerDevice: 10_000, maxDeviceStateChunks: 100 }),
    H + 100 * 33,
    /^More than 100 device-state sections$/,
  );
  // Each empty state costs its id and 64 bytes: 650 bytes hold 10 of them.
  assertError(
    await receive({ maxDeviceStateChunksPerDevice: 10_000, maxDeviceStateBytes: 650 }),
    H + 10 * 33,
    /^Device state section of 1 bytes exceeds the remaining device-state limit of 0 bytes \(650 in all\)$/,
  );
});

Deno.test("receiveStream() refuses a device it does not have at its first section, its id escaped", async () => {
  const id = new TextEncoder().encode("x\n\x1b[2Jmigration completed: fake");
  const bytes = concat(
    HEADER,
    section(SectionType.DEVICE_STATE, BigInt(id.length), BigInt(id.length), id),
  );
  const err = await receiveStream(new MemorySource(bytes), arrayRam(LAYOUT), {
    digest: sha256Ram,
  }).catch((e) => e);
  assertError(
    err,
    H,
    /^Device state for device "x\\n\\x1b\[2Jmigration completed: fake", which this destination does not have \(it restores no devices\)$/,
  );
  assert.ok(![...err.message].some((c) => c.charCodeAt(0) < 0x20), "no control character");
});
