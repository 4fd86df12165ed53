// Worker for stream_bench.ts: the destination side on its own thread. On each
// message it listens on a free TCP port, posts the port, receives one stream
// into its pre-touched RAM (or drains raw bytes), and posts the byte count.

import { crc32 } from "node:zlib";
import { listenEndpoint } from "../migration/transport/open.ts";
import { arrayRam, type RamAccess } from "../migration/stream/ram.ts";
import { receiveStream } from "../migration/stream/reader.ts";
import { guestAddress as g } from "../sys/address.ts";

interface Job {
  size: number;
  raw: boolean;
}

let ram: RamAccess | undefined;
const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<Job>) => void) | null;
};

/** Cheap digest for timing: CRC-32 of all RAM (the format leaves the choice to the caller). */
export function crcDigest(r: RamAccess): Uint8Array {
  let crc = 0;
  for (const g of r.layout) crc = crc32(r.view(g.gpa, Number(g.size)), crc);
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, crc, true);
  return out;
}

async function run(job: Job): Promise<number> {
  if (ram === undefined || Number(ram.layout[0].size) !== job.size) {
    ram = arrayRam([{ gpa: g(0n), size: BigInt(job.size) }]);
    ram.view(g(0n), job.size).fill(1); // pre-fault, like QEMU's prealloc=on
  }
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  scope.postMessage({ port: listener.endpoint.transport === "tcp" ? listener.endpoint.port : 0 });
  using conn = await listener.accept();
  if (!job.raw) return (await receiveStream(conn, ram, { digest: crcDigest })).bytes;
  const buf = ram.view(g(0n), 4 << 20);
  let total = 0;
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) total += n;
  return total;
}

if ("WorkerGlobalScope" in globalThis) {
  scope.onmessage = async (e: MessageEvent<Job>) => {
    scope.postMessage({ bytes: await run(e.data) });
  };
}
