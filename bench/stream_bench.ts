// Stream format throughput, each group against a baseline measured in the
// same run. Run: deno bench -A migration/stream_bench.ts
//
// - zero-page detection vs a Uint8Array copy of the same bytes;
// - encode (StreamWriter into a null sink) and decode (receiveStream from
//   memory) vs the same copy;
// - 1 GiB over loopback TCP, receiver on a worker thread with pre-touched
//   RAM, vs a raw Deno socket pump and a C pump (1 MiB writes; needs cc).

import { crcDigest } from "./_stream_receiver.ts";
import { connectEndpoint } from "../migration/transport/open.ts";
import { arrayRam, type RamAccess } from "../migration/stream/ram.ts";
import { receiveStream } from "../migration/stream/reader.ts";
import { StreamWriter } from "../migration/stream/writer.ts";
import { pageRuns } from "../migration/stream/zero_pages.ts";
import { guestAddress as g } from "../sys/address.ts";

const PAGE = 4096;
const MIB = 1 << 20;
const SIZE = 256 * MIB;
const layout = [{ gpa: g(0n), size: BigInt(SIZE) }];

function filled(kind: "zero" | "random" | "half"): RamAccess {
  const ram = arrayRam(layout);
  const v = ram.view(g(0n), SIZE);
  v.fill(1);
  if (kind === "zero") v.fill(0);
  else for (let o = 0; o < SIZE; o += 65536) crypto.getRandomValues(v.subarray(o, o + 65536));
  if (kind === "half") { for (let o = 0; o < SIZE; o += 2 * PAGE) v.fill(0, o, o + PAGE); }
  return ram;
}
const zero = filled("zero");
const random = filled("random");
const half = filled("half");
const copyDst = new Uint8Array(SIZE).fill(1);
const nullSink = { write: () => Promise.resolve() };
let sink = 0;

for (const [name, ram] of [["zero", zero], ["random", random]] as const) {
  Deno.bench({
    name: `Uint8Array copy 256 MiB (${name})`,
    group: `zero-page detection, ${name} pages`,
    baseline: true,
    fn: () => copyDst.set(ram.view(g(0n), SIZE)),
  });
  Deno.bench({
    name: `pageRuns() 256 MiB (${name})`,
    group: `zero-page detection, ${name} pages`,
    fn() {
      for (const r of pageRuns(ram.view(g(0n), SIZE), PAGE, { maxRunBytes: 4 * MIB })) {
        sink += r.length;
      }
    },
  });
  Deno.bench({
    name: `Uint32Array scan, 8 words a step (${name})`,
    group: `zero-page detection, ${name} pages`,
    fn() {
      const v = ram.view(g(0n), SIZE);
      const w = new Uint32Array(v.buffer, v.byteOffset, SIZE / 4);
      for (let p = 0; p < w.length; p += PAGE / 4) {
        let i = p;
        for (; i < p + PAGE / 4; i += 8) {
          if (
            (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) !==
              0
          ) break;
        }
        sink += i;
      }
    },
  });
}

const encoded = new Map<string, Uint8Array>();
for (const [name, ram] of [["random", random], ["half-zero", half]] as const) {
  Deno.bench({
    name: `Uint8Array copy 256 MiB (${name})`,
    group: `encode/decode 256 MiB, ${name}`,
    baseline: true,
    fn: () => copyDst.set(ram.view(g(0n), SIZE)),
  });
  Deno.bench({
    name: `StreamWriter.writePages() (${name})`,
    group: `encode/decode 256 MiB, ${name}`,
    async fn() {
      const w = new StreamWriter(nullSink);
      await w.writeHeader(layout, PAGE);
      await w.writePages(ram, g(0n), SIZE / PAGE);
      await w.writeEnd(new Uint8Array(4));
      sink += w.bytesWritten;
    },
  });
  const chunks: Uint8Array[] = [];
  const w = new StreamWriter({ write: (b) => (chunks.push(b.slice()), Promise.resolve()) });
  await w.writeHeader(layout, PAGE);
  await w.writePages(ram, g(0n), SIZE / PAGE);
  await w.writeEnd(crcDigest(ram));
  const all = new Uint8Array(w.bytesWritten);
  chunks.reduce((at, c) => (all.set(c, at), at + c.length), 0);
  encoded.set(name, all);
  const dst = arrayRam(layout);
  dst.view(g(0n), SIZE).fill(1);
  Deno.bench({
    name: `receiveStream() (${name})`,
    group: `encode/decode 256 MiB, ${name}`,
    async fn() {
      const bytes = encoded.get(name)!;
      let pos = 0;
      const source = {
        read(into: Uint8Array) {
          if (pos >= bytes.length) return Promise.resolve(null);
          const n = Math.min(into.length, MIB, bytes.length - pos);
          into.set(bytes.subarray(pos, pos + n));
          pos += n;
          return Promise.resolve(n);
        },
      };
      sink += (await receiveStream(source, dst, { digest: crcDigest })).bytes;
    },
  });
}

// 1 GiB over loopback TCP.
const GIB = 1 << 30;
const bigLayout = [{ gpa: g(0n), size: BigInt(GIB) }];
const big = arrayRam(bigLayout);
for (let o = 0; o < GIB; o += 65536) crypto.getRandomValues(big.view(g(BigInt(o)), 65536));
const worker = new Worker(new URL("./_stream_receiver.ts", import.meta.url), { type: "module" });
let reply: ((m: { port?: number; bytes?: number }) => void) | undefined;
worker.onmessage = (e) => reply?.(e.data);
function next(): Promise<{ port?: number; bytes?: number }> {
  return new Promise((resolve) => (reply = resolve));
}
async function overTcp(raw: boolean, send: (conn: Deno.Conn | unknown) => Promise<void>) {
  const ported = next();
  worker.postMessage({ size: GIB, raw });
  const { port } = await ported;
  const done = next();
  {
    using conn = await connectEndpoint(`tcp:127.0.0.1:${port}`);
    await send(conn);
  }
  sink += (await done).bytes!;
}

Deno.bench({
  name: "raw Deno TCP pump, 1 MiB writes",
  group: "1 GiB over loopback TCP",
  baseline: true,
  n: 5,
  warmup: 1,
  async fn() {
    await overTcp(true, async (conn) => {
      const c = conn as { write(b: Uint8Array): Promise<void> };
      for (let o = 0; o < GIB; o += MIB) await c.write(big.view(g(BigInt(o)), MIB));
    });
  },
});
Deno.bench({
  name: "StreamWriter → receiveStream(), random RAM",
  group: "1 GiB over loopback TCP",
  n: 5,
  warmup: 1,
  async fn() {
    await overTcp(false, async (conn) => {
      const w = new StreamWriter(conn as { write(b: Uint8Array): Promise<void> });
      await w.writeHeader(bigLayout, PAGE);
      await w.writePages(big, g(0n), GIB / PAGE);
      await w.writeEnd(crcDigest(big));
    });
  },
});

// The C pump lives in bench/c/tcp_pump.c (shared with bench/migrate_tcp.ts).
const C_PUMP_SOURCE = new URL("./c/tcp_pump.c", import.meta.url).pathname;

const cPump = await buildCPump();
Deno.bench({
  name: "C TCP pump, 1 MiB writes (own process, both ends)",
  group: "1 GiB over loopback TCP",
  n: 5,
  warmup: 1,
  ignore: cPump === undefined,
  async fn() {
    const out = await new Deno.Command(cPump!, { args: [String(GIB)] }).output();
    if (!out.success) throw new TypeError(`C pump failed: ${new TextDecoder().decode(out.stderr)}`);
  },
});

globalThis.addEventListener("unload", () => {
  worker.terminate();
  if (sink === -1) console.log("unreachable: keeps results alive");
});

async function buildCPump(): Promise<string | undefined> {
  const dir = await Deno.makeTempDir();
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  try {
    const out = await new Deno.Command("cc", {
      args: ["-O2", "-o", `${dir}/pump`, C_PUMP_SOURCE],
    }).output();
    return out.success ? `${dir}/pump` : undefined;
  } catch {
    return undefined;
  }
}
