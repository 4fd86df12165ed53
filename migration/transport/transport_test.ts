import assert from "node:assert/strict";
import {
  LAYOUT,
  PAGE,
  randomRam,
  sameRam,
  sampleStream,
  sha256Ram,
} from "../../tests/_stream_samples.ts";
import { formatEndpoint } from "./endpoint.ts";
import { connectEndpoint, listenEndpoint } from "./open.ts";
import { arrayRam, type RamAccess } from "../stream/ram.ts";
import { StreamError } from "../stream/error.ts";
import { receiveStream } from "../stream/reader.ts";
import { StreamWriter } from "../stream/writer.ts";
import { guestAddress as g } from "../../sys/address.ts";
import { seeded, testSeed } from "../../tests/_random.ts";

// 12 MiB in two regions with a gap: large enough for partial socket reads.
const BIG = [{ gpa: g(0n), size: 8n << 20n }, { gpa: g(1n << 30n), size: 4n << 20n }];

async function send(endpoint: string, src: RamAccess): Promise<number> {
  using sink = await connectEndpoint(endpoint);
  const w = new StreamWriter(sink);
  await w.writeHeader(src.layout, PAGE);
  for (const [i, r] of src.layout.entries()) {
    await w.writePages(src, r.gpa, Number(r.size) / PAGE);
    await w.writeIteration(i);
  }
  await w.writeDeviceState("vfio-0000:01:00.0", new Uint8Array([1, 2, 3]));
  await w.writeEnd(sha256Ram(src));
  return w.bytesWritten;
}

async function roundTrip(endpoint: string, halfZero: boolean) {
  const src = randomRam(BIG, halfZero);
  const dst = arrayRam(BIG);
  using listener = listenEndpoint(endpoint);
  const bound = formatEndpoint(listener.endpoint);
  let sent: number;
  let summary;
  if (listener.endpoint.transport === "file") {
    sent = await send(bound, src);
    using source = await listener.accept();
    summary = await receiveStream(source, dst, {
      digest: sha256Ram,
      devices: ["vfio-0000:01:00.0"],
    });
  } else {
    const receiving = (async () => {
      using source = await listener.accept();
      return await receiveStream(source, dst, {
        digest: sha256Ram,
        devices: ["vfio-0000:01:00.0"],
      });
    })();
    [sent, summary] = await Promise.all([send(bound, src), receiving]);
  }
  assert.equal(summary.bytes, sent);
  assert.equal(summary.pages + summary.zeroPages, 3 * 1024);
  assert.equal(summary.zeroPages, halfZero ? 3 * 512 : 0);
  assert.equal(summary.iterations, 2);
  assert.deepEqual(summary.deviceStates.get("vfio-0000:01:00.0"), [new Uint8Array([1, 2, 3])]);
  assert.ok(sameRam(src, dst), "destination RAM differs from the source");
}

async function inTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const halfZero of [false, true]) {
  const kind = halfZero ? "half-zero" : "random";
  Deno.test(`receiveStream() round-trips ${kind} RAM through a file`, async () => {
    await inTempDir((dir) => roundTrip(`file:${dir}/ram.mig`, halfZero));
  });
  Deno.test(`receiveStream() round-trips ${kind} RAM over a unix socket`, async () => {
    await inTempDir(async (dir) => {
      await roundTrip(`unix:${dir}/mig.sock`, halfZero);
      assert.deepEqual([...Deno.readDirSync(dir)], [], "socket file left behind");
    });
  });
  Deno.test(`receiveStream() round-trips ${kind} RAM over TCP`, async () => {
    await roundTrip("tcp:127.0.0.1:0", halfZero);
  });
}

Deno.test("listenEndpoint() reports the bound TCP port and accepts exactly one connection", async () => {
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  assert.equal(listener.endpoint.transport, "tcp");
  const port = listener.endpoint.transport === "tcp" ? listener.endpoint.port : 0;
  assert.ok(port > 0);
  const accepted = listener.accept();
  using first = await connectEndpoint(`tcp:127.0.0.1:${port}`);
  using conn = await accepted;
  await assert.rejects(connectEndpoint(`tcp:127.0.0.1:${port}`), Deno.errors.ConnectionRefused);
  await assert.rejects(listener.accept(), TypeError);
  await first.write(new Uint8Array([42]));
  const b = new Uint8Array(1);
  assert.equal(await conn.read(b), 1);
  assert.equal(b[0], 42);
});

Deno.test("listenEndpoint() removes the unix socket file on close and after accept", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/a.sock`;
    listenEndpoint(`unix:${path}`).close();
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
    using listener = listenEndpoint(`unix:${path}`);
    assert.equal((await Deno.lstat(path)).isSocket, true);
    const accepted = listener.accept();
    using _source = await connectEndpoint(`unix:${path}`);
    using _conn = await accepted;
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  });
});

Deno.test("listenEndpoint() creates unix sockets mode 0600 under a permissive umask, leaving nothing beside them", async () => {
  await inTempDir(async (dir) => {
    await Deno.chmod(dir, 0o777);
    const path = `${dir}/m.sock`;
    // A child with umask 000 would create the socket 0777 by a plain bind.
    const code = [
      `import { listenEndpoint } from ${
        JSON.stringify(new URL("./open.ts", import.meta.url).href)
      };`,
      `const l = listenEndpoint("unix:${path}");`,
      `const st = Deno.lstatSync(${JSON.stringify(path)});`,
      `console.log((st.mode! & 0o777).toString(8), st.isSocket, Deno.readDirSync(${
        JSON.stringify(dir)
      }).toArray().map((e) => e.name).join(","));`,
      `l.close();`,
    ].join("\n");
    const out = await new Deno.Command("sh", {
      args: ["-c", `umask 000 && exec "$0" eval "$1"`, Deno.execPath(), code],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.equal(text, "600 true m.sock");
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  });
});

Deno.test("StreamListener.accept() closes the listener when aborted", async () => {
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  const port = listener.endpoint.transport === "tcp" ? listener.endpoint.port : 0;
  const controller = new AbortController();
  const accepting = listener.accept({ signal: controller.signal });
  controller.abort(new DOMException("gave up", "AbortError"));
  await assert.rejects(accepting, { name: "AbortError" });
  await assert.rejects(connectEndpoint(`tcp:127.0.0.1:${port}`), Deno.errors.ConnectionRefused);
});

Deno.test("connectEndpoint() fails cleanly when nothing listens", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(connectEndpoint(`unix:${dir}/none.sock`), Deno.errors.NotFound);
    await assert.rejects(connectEndpoint(`file:${dir}/no/such/dir`), Deno.errors.NotFound);
  });
  await assert.rejects(connectEndpoint("tcp:127.0.0.1:99999"), RangeError);
});

Deno.test("receiveStream() rejects a TCP stream the sender cuts at a random point", async () => {
  const [bytes, off] = await sampleStream();
  const seed = testSeed();
  const random = seeded(seed);
  for (let trial = 0; trial < 5; trial++) {
    const cut = 1 + Math.floor(random() * (off.length - 1));
    using listener = listenEndpoint("tcp:127.0.0.1:0");
    const receiving = (async () => {
      using source = await listener.accept();
      return await receiveStream(source, arrayRam(LAYOUT), {
        digest: sha256Ram,
        devices: ["dev0"],
      });
    })().catch((e) => e);
    {
      using sink = await connectEndpoint(formatEndpoint(listener.endpoint));
      await sink.write(bytes.subarray(0, cut)); // then close early
    }
    const err = await receiving;
    assert.ok(err instanceof StreamError, `cut ${cut} (seed ${seed}): ${err}`);
    assert.equal(err.offset, cut, `${err.message} (seed ${seed})`);
    assert.match(err.reason, /^Stream (truncated|ended without an END section)/);
  }
});

Deno.test("StreamWriter.writeRamRun() waits while a slow TCP reader does not read", async () => {
  const layout = [{ gpa: g(0n), size: 64n << 20n }];
  const src = arrayRam(layout);
  using listener = listenEndpoint("tcp:127.0.0.1:0");
  const accepted = listener.accept();
  using sink = await connectEndpoint(formatEndpoint(listener.endpoint));
  using source = await accepted;
  const w = new StreamWriter(sink);
  await w.writeHeader(layout, PAGE);
  let done = false;
  const writing = w.writeRamRun(g(0n), src.view(g(0n), 64 << 20)).then(() => (done = true));
  // No socket buffers hold 64 MiB: while the reader has taken less than
  // half of it, the writer cannot have finished.
  let read = 0;
  const buf = new Uint8Array(1 << 20);
  while (read < 32 << 20) {
    const n = await source.read(buf);
    assert.notEqual(n, null);
    read += n!;
    assert.equal(done, false, `the writer finished with only ${read} bytes read`);
  }
  // Drain: the writer finishes only as the reader makes room.
  while (!done) {
    const n = await source.read(buf);
    assert.notEqual(n, null);
    read += n!;
  }
  await writing;
  await w.flush(); // the last trailer was batched
  while (read < w.bytesWritten) read += (await source.read(buf))!;
  assert.equal(read, w.bytesWritten);
});

/** Has a child process listen on `path` and SIGKILLs it: the socket file stays, nobody listens. */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); console.log("up");` +
      "setInterval(() => {}, 60_000);",
    ],
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read(); // "up": the socket file exists
  reader.releaseLock();
  child.kill("SIGKILL");
  await child.status;
  await child.stdout.cancel();
}

Deno.test("listenEndpoint() replaces a stale unix socket and refuses a live one or another file", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/mig.sock`;
    // A socket file whose listener is gone, as a killed destination leaves it.
    await leaveStaleSocket(path);
    assert.equal((await Deno.lstat(path)).isSocket, true, "the stale socket file is there");
    {
      using listener = listenEndpoint(`unix:${path}`);
      const accepted = listener.accept();
      using _c = await connectEndpoint(`unix:${path}`);
      using _a = await accepted;
    }
    using live = listenEndpoint(`unix:${path}`);
    assert.throws(
      () => listenEndpoint(`unix:${path}`),
      (e: Error) =>
        e instanceof Deno.errors.AddrInUse &&
        e.message === `Cannot listen on unix:${path}: another process is listening on ${path}`,
    );
    live.close();
    await Deno.writeTextFile(path, "not a socket");
    assert.throws(
      () => listenEndpoint(`unix:${path}`),
      (e: Error) =>
        e instanceof Deno.errors.AlreadyExists &&
        e.message.startsWith(`Cannot listen on unix:${path}: ${path} exists and is not a socket`),
    );
    assert.equal(await Deno.readTextFile(path), "not a socket", "the file is left alone");
  });
});

Deno.test("connectEndpoint() and listenEndpoint() errors name the endpoint", async () => {
  using taken = listenEndpoint("tcp:127.0.0.1:0");
  const port = taken.endpoint.transport === "tcp" ? taken.endpoint.port : 0;
  assert.throws(
    () => listenEndpoint(`tcp:127.0.0.1:${port}`),
    (e: Error) =>
      e instanceof Deno.errors.AddrInUse &&
      e.message.startsWith(`Cannot listen on tcp:127.0.0.1:${port}: Address already in use`),
  );
  taken.close();
  await assert.rejects(
    connectEndpoint(`tcp:127.0.0.1:${port}`),
    (e: Error) =>
      e instanceof Deno.errors.ConnectionRefused &&
      e.message.startsWith(`Cannot connect to tcp:127.0.0.1:${port}: Connection refused`),
  );
  await assert.rejects(
    listenEndpoint("file:/nonexistent/dir/x.mig").accept(),
    (e: Error) =>
      e instanceof Deno.errors.NotFound &&
      e.message.startsWith("Cannot open file:/nonexistent/dir/x.mig: No such file"),
  );
});
