import assert from "node:assert/strict";
import tls from "node:tls";
import { makeTlsFixture } from "../../tests/_tls_fixture.ts";
import { within } from "../../tests/_support.ts";
import { connectEndpoint, listenEndpoint, openListener } from "./open.ts";
import { TlsAuthz } from "./tls_authz.ts";
import { loadTlsCredentials } from "./tls_credentials.ts";
import { connectTls, listenTls, type TlsEndpoint } from "./tls.ts";

const fixture = await makeTlsFixture();
globalThis.addEventListener("unload", () => {
  Deno.removeSync(fixture.good.replace(/\/good$/, ""), { recursive: true });
});
const LOCAL: TlsEndpoint = { transport: "tls", hostname: "127.0.0.1", port: 0 };

function listen(authz = TlsAuthz.load(fixture.authz)) {
  return listenTls(LOCAL, {
    credentials: loadTlsCredentials(fixture.good, "server"),
    authz,
    handshakeTimeoutMs: 5000,
  });
}

Deno.test("connectTls() and listenTls() carry bytes both ways and name the peers", async () => {
  using listener = await listen();
  const accepted = listener.acceptNext();
  using src = await connectTls(listener.endpoint as TlsEndpoint, {
    credentials: loadTlsCredentials(fixture.good, "client"),
    timeoutMs: 5000,
  });
  using dst = await accepted;
  const bytes = new Uint8Array(200_000).map((_, i) => (i * 2654435761) >>> 24);
  const writing = src.write(bytes);
  const got = new Uint8Array(bytes.length);
  for (let at = 0; at < got.length;) {
    const n = await dst.read(got.subarray(at));
    assert.ok(n !== null);
    at += n;
  }
  await writing;
  assert.deepEqual(got, bytes);
  await dst.write(new Uint8Array([7]));
  const one = new Uint8Array(1);
  assert.equal(await src.read(one), 1);
  assert.equal(one[0], 7);
  assert.equal(dst.peerIdentity, "CN=client-1,O=lab");
  assert.match(src.peer!, /^127\.0\.0\.1:\d+ \(CN=dest,O=lab\)$/);
});

Deno.test("listenTls() reads nothing an unauthorized client sends, and tells it why", async () => {
  using listener = await listen();
  const accepted = listener.acceptNext();
  const r = (name: string) => Deno.readTextFileSync(`${fixture.client2}/${name}`);
  // A client that does not wait for the verdict: it sends at once.
  const client = tls.connect({
    host: "127.0.0.1",
    port: (listener.endpoint as TlsEndpoint).port,
    ca: r("ca-cert.pem"),
    cert: r("client-cert.pem"),
    key: r("client-key.pem"),
    servername: "localhost",
  });
  const answer: Uint8Array[] = [];
  const closed = new Promise<void>((resolve) => {
    client.on("data", (d: Uint8Array) => answer.push(d));
    client.on("close", () => resolve());
    client.on("error", () => {});
  });
  client.on("secureConnect", () => client.write(new Uint8Array(65536).fill(0x41)));
  using dst = await accepted;
  await assert.rejects(dst.read(new Uint8Array(65536)), {
    name: "PermissionDenied",
    message:
      /^Refused: client CN=client-2,O=lab \(SHA-256 [0-9A-F:]+\) is not in the authorization list /,
  });
  await closed;
  const text = new TextDecoder().decode(answer.length ? answer[0].subarray(7) : new Uint8Array());
  assert.match(text, /^client CN=client-2,O=lab .* is not in the authorization list/);
});

Deno.test("listenTls() drops a plaintext peer at its first read", async () => {
  using listener = await listen();
  const accepted = listener.acceptNext();
  const port = (listener.endpoint as TlsEndpoint).port;
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("DVMM-MIG plaintext header"));
  using dst = await accepted;
  await assert.rejects(dst.read(new Uint8Array(16)), {
    name: "PermissionDenied",
    message: /^TLS handshake failed: the peer does not speak TLS/,
  });
});

Deno.test("openListener() and connectEndpoint() need credentials for tls:, listenEndpoint() points to openListener()", async () => {
  await assert.rejects(openListener("tls:127.0.0.1:0"), {
    name: "TypeError",
    message: /needs credentials/,
  });
  await assert.rejects(connectEndpoint("tls:127.0.0.1:1"), {
    name: "TypeError",
    message: /needs credentials/,
  });
  assert.throws(() => listenEndpoint("tls:127.0.0.1:0"), {
    name: "TypeError",
    message: /openListener/,
  });
  using l = await openListener("tls:127.0.0.1:0", {
    tls: { credentials: loadTlsCredentials(fixture.good, "server") },
  });
  assert.equal(l.endpoint.transport, "tls");
  await assert.rejects(
    listenTls({ ...LOCAL, port: (l.endpoint as TlsEndpoint).port }, {
      credentials: loadTlsCredentials(fixture.good, "server"),
    }),
    { name: "AddrInUse", message: /^Cannot listen on tls:127\.0\.0\.1:\d+: / },
  );
});

Deno.test("loadTlsCredentials() names the file a directory lacks", () => {
  assert.throws(() => loadTlsCredentials(fixture.noClientCert, "server"), {
    name: "TypeError",
    message: /server-cert\.pem is missing/,
  });
  assert.throws(() => loadTlsCredentials("/nonexistent", "client"), {
    name: "TypeError",
    message:
      /\/nonexistent\/ca-cert\.pem is missing \(create a set with `mod\.ts tls-creds init DIR`\)/,
  });
  assert.equal(loadTlsCredentials(fixture.noClientCert, "client").cert, undefined);
});

Deno.test("connectTls() stops at an abort during the handshake with the signal's reason", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const first = Promise.withResolvers<void>();
  const holding = (async () => {
    for await (const c of listener) {
      held.push(c); // accepts, never answers
      first.resolve();
    }
  })().catch(() => {});
  try {
    const stop = new AbortController();
    const connecting = connectTls({ ...LOCAL, port: listener.addr.port }, {
      credentials: loadTlsCredentials(fixture.good, "client"),
      signal: stop.signal,
      timeoutMs: 30_000,
    });
    // Aborted once the TCP connection is up and the handshake waits on the silent peer.
    assert.notEqual(await within(first.promise, 10_000), "timeout", "the source connected");
    stop.abort(new Deno.errors.Interrupted("the migration was cancelled"));
    await assert.rejects(connecting, {
      name: "Interrupted",
      message: "the migration was cancelled",
    });
  } finally {
    listener.close();
    for (const c of held) c.close();
    await holding;
  }
});
