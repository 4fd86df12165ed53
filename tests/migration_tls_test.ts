// Migration over tls: between two processes (receive and migrate), and the
// failure table: each way a TLS peer can fail gives one clear line on both
// sides, and the destination never takes a byte of the stream into RAM.
import assert from "node:assert/strict";
import tls from "node:tls";
import { startCli } from "./_support.ts";
import { makeTlsFixture, type TlsFixture } from "./_tls_fixture.ts";
import { startFlipProxy } from "./flip_proxy.ts";

let fixture: Promise<TlsFixture> | undefined;
function creds(): Promise<TlsFixture> {
  fixture ??= makeTlsFixture();
  return fixture;
}

// Removes the fixture once this file's tests are done.
globalThis.addEventListener("unload", () => {
  fixture?.then((f) => Deno.removeSync(f.good.replace(/\/good$/, ""), { recursive: true }));
});

interface Side {
  code: number;
  lines: string[];
  report: Record<string, unknown>;
}

/**
 * Runs `receive` (with `dst` flags) and then `migrate` against it (with
 * `src` flags, its endpoint made by `to` from the listening one).
 */
async function migrateOnce(options: {
  dst: string[];
  src: string[];
  to?: (listening: string) => string | Promise<string>;
  ram?: string;
  beforeSource?: (listening: string) => Promise<void>;
}): Promise<{ src: Side; dst: Side }> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-tls-run-" });
  const ram = options.ram ?? "16M";
  try {
    await using dst = startCli([
      ...["receive", "--ram", ram, "--report", `${dir}/dst.json`, ...options.dst],
    ]);
    const [, listening] = await dst.line(/^listening on (\S+)/);
    await options.beforeSource?.(listening);
    const to = options.to ? await options.to(listening) : listening;
    await using src = startCli([
      ...["migrate", "--to", to, "--ram", ram, "--report", `${dir}/src.json`],
      ...["--peer-timeout", "5", "--max-seconds", "60", ...options.src],
    ]);
    const [s, d] = await Promise.all([src.exit(60_000), dst.exit(60_000)]);
    const read = async (f: string) => JSON.parse(await Deno.readTextFile(`${dir}/${f}`));
    return {
      src: { code: s.code, lines: src.stderr, report: await read("src.json") },
      dst: { code: d.code, lines: dst.stderr, report: await read("dst.json") },
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Both sides failed, each with one line matching its pattern; no stream reached RAM. */
function assertRefused(
  got: { src: Side; dst: Side },
  want: { src: RegExp; dst: RegExp },
): void {
  const { src, dst } = got;
  const context = `\nsource:\n${src.lines.join("\n")}\ndestination:\n${dst.lines.join("\n")}`;
  assert.equal(src.code, 1, `migrate exits 1${context}`);
  assert.equal(dst.code, 1, `receive exits 1${context}`);
  assert.equal(dst.report.result, "failed", context);
  assert.equal(dst.report.imageTouched, false, `the destination's RAM was untouched${context}`);
  assert.equal(src.report.result, "failed", context);
  for (const [side, text] of [["source", src.report.error], ["destination", dst.report.error]]) {
    assert.equal(typeof text, "string", `${side} reports an error${context}`);
    assert.ok(!(text as string).includes("\n"), `${side}'s error is one line: ${text}`);
  }
  assert.match(src.report.error as string, want.src, context);
  assert.match(dst.report.error as string, /^No migration stream was received: /, context);
  // The first dropped peer is the source (a source that looks at a refused
  // certificate afterwards connects once more, without sending a byte).
  const dropped = dst.lines.find((l) => l.startsWith("dropped "));
  assert.ok(dropped !== undefined, `the destination names the dropped peer${context}`);
  assert.match(dropped, /^dropped 127\.0\.0\.1:\d+: /, context);
  assert.match(dropped, want.dst, context);
}

function swapTransport(to: string): (listening: string) => string {
  return (listening) => listening.replace(/^(tcp|tls):/, `${to}:`);
}

const DST = (f: TlsFixture, dir = f.good, attempts = 1) => [
  ...["--tls-creds", dir, "--tls-authz", f.authz, "--max-attempts", String(attempts)],
  ...["--tls-handshake-timeout", "5"],
];

Deno.test("migrate/receive over tls: with mutual authentication and an authz list completes with equal digests", async () => {
  const f = await creds();
  for (const authz of [f.authz, f.authzByFingerprint]) {
    const { src, dst } = await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", "--tls-creds", f.good, "--tls-authz", authz],
      src: ["--tls-creds", f.good, "--fill", "random", "--seed", "7"],
      ram: "64M",
    });
    const context = `${src.lines.join("\n")}\n${dst.lines.join("\n")}`;
    assert.equal(src.code, 0, context);
    assert.equal(dst.code, 0, context);
    assert.equal(src.report.result, "completed");
    assert.equal(dst.report.result, "completed");
    assert.equal(src.report.sourceDigest, dst.report.digest);
    assert.equal(src.report.destinationDigest, dst.report.digest);
    assert.equal(dst.report.peerIdentity, "CN=client-1,O=lab");
    assert.match(src.report.transport as string, /^tls:127\.0\.0\.1:\d+$/);
  }
});

Deno.test("tls failure table: a source that trusts another CA refuses the destination", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f, f.good, 2)],
      src: ["--tls-creds", f.trustsOtherCa],
    }),
    {
      src:
        /destination's certificate CN=dest,O=lab was not accepted: it was issued by CN=lab CA,O=lab, not by the CA in ca-cert\.pem/,
      dst:
        /TLS handshake failed: the client does not accept this destination's certificate \(alert UnknownCA\)/,
    },
  );
});

Deno.test("tls failure table: a client certificate from another CA is refused", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f.clientFromOtherCa],
    }),
    {
      src:
        /the destination closed the connection right after the handshake: it did not accept our client certificate; our .*client-cert\.pem may be why: it was issued by CN=other CA,O=elsewhere, not by the CA in ca-cert\.pem/,
      dst:
        /TLS handshake failed: the client's certificate was refused or the client hung up: a client certificate must be issued by the CA in .*ca-cert\.pem, be valid now, and allow clientAuth/,
    },
  );
});

Deno.test("tls failure table: a source without a client certificate is refused", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f.noClientCert],
    }),
    {
      src:
        /the destination requires a client certificate, and .*no-client-cert has no client-cert\.pem/,
      dst: /TLS handshake failed: the client sent no certificate, and one is required/,
    },
  );
});

for (
  const [what, dir, why] of [
    ["an expired", "expiredClient", /it expired on 20/],
    ["a not yet valid", "futureClient", /it is not valid before 20/],
  ] as const
) {
  Deno.test(`tls failure table: ${what} client certificate is refused`, async () => {
    const f = await creds();
    const got = await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f[dir]],
    });
    assertRefused(got, {
      src: /did not accept our client certificate; our .*client-cert\.pem may be why: /,
      dst: /TLS handshake failed: the client's certificate was refused/,
    });
    assert.match(got.src.report.error as string, why);
  });
}

for (
  const [what, dir, why] of [
    ["an expired", "expiredServer", /: it expired on 20/],
    ["a not yet valid", "futureServer", /: it is not valid before 20/],
  ] as const
) {
  Deno.test(`tls failure table: the source refuses ${what} destination certificate`, async () => {
    const f = await creds();
    const got = await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f, f[dir], 2)],
      src: ["--tls-creds", f.good],
    });
    assertRefused(got, {
      src: /the destination's certificate CN=dest,O=lab was not accepted/,
      dst: /the client refused this destination's certificate as expired or not yet valid/,
    });
    assert.match(got.src.report.error as string, why);
  });
}

Deno.test("tls failure table: the source refuses a destination whose certificate is for another name", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f.good, "--tls-hostname", "other.example"],
    }),
    {
      src:
        /the destination's certificate is not for that name: Host: other\.example\. is not in the cert's altnames: DNS:localhost, IP Address:127\.0\.0\.1/,
      dst:
        /The source closed the TLS connection right after the handshake, before sending a byte: it may not accept this destination's certificate/,
    },
  );
});

Deno.test("tls failure table: an authenticated client that the authz list does not name is refused", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f.client2],
    }),
    {
      src:
        /the destination refused us: client CN=client-2,O=lab \(SHA-256 [0-9A-F:]{95}\) is not in the authorization list .*authz\.txt/,
      dst:
        /Refused: client CN=client-2,O=lab \(SHA-256 [0-9A-F:]{95}\) is not in the authorization list/,
    },
  );
});

Deno.test("tls failure table: a plaintext source against a TLS listener", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: [],
      to: swapTransport("tcp"),
    }),
    {
      src: /Destination answered with TLS: it listens on tls:, so connect with tls:HOST:PORT/,
      dst: /TLS handshake failed: the peer does not speak TLS/,
    },
  );
});

Deno.test("tls failure table: a TLS source against a plaintext listener", async () => {
  const f = await creds();
  assertRefused(
    await migrateOnce({
      dst: ["--from", "tcp:127.0.0.1:0", "--max-attempts", "1"],
      src: ["--tls-creds", f.good],
      to: swapTransport("tls"),
    }),
    {
      src:
        /the destination does not speak TLS \(it answered in plaintext: is it listening on tcp: rather than tls:\?\)/,
      dst: /Bad magic: the peer speaks TLS \(a tls: source dialling this plaintext endpoint\?\)/,
    },
  );
});

Deno.test("tls failure table: a byte flipped in the TLS handshake fails it, RAM untouched", async () => {
  const f = await creds();
  let proxy: ReturnType<typeof startFlipProxy> | undefined;
  try {
    const got = await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f.good],
      to: (listening) => (proxy = startFlipProxy(listening, { at: 100 })).endpoint,
    });
    assert.equal(await proxy!.flipped, 100);
    assertRefused(got, { src: /Cannot connect to tls:/, dst: /TLS handshake failed: / });
  } finally {
    await proxy?.[Symbol.asyncDispose]();
  }
});

Deno.test("tls failure table: a byte flipped mid-stream fails the TLS record check and the image is discarded", async () => {
  const f = await creds();
  let proxy: ReturnType<typeof startFlipProxy> | undefined;
  try {
    const at = 4 << 20;
    const { src, dst } = await migrateOnce({
      dst: ["--from", "tls:127.0.0.1:0", ...DST(f)],
      src: ["--tls-creds", f.good],
      to: (listening) => (proxy = startFlipProxy(listening, { at })).endpoint,
    });
    assert.equal(await proxy!.flipped, at);
    const context = `\n${src.lines.join("\n")}\n${dst.lines.join("\n")}`;
    assert.equal(src.code, 1, context);
    assert.equal(dst.code, 1, context);
    // The bytes before the flip were authenticated and written; the image is
    // never verified, and is reported partial and discarded.
    assert.equal(dst.report.imageTouched, true, context);
    assert.match(
      dst.report.error as string,
      /^Cannot restore the image: .*A TLS record on tls:127\.0\.0\.1:\d+ failed its integrity check \(its bytes were altered in transit\)/,
      context,
    );
    assert.ok(!(src.report.error as string).includes("\n"));
    assert.match(src.report.error as string, /tls:127\.0\.0\.1:\d+/, context);
    assert.ok(dst.lines.some((l) => /the partial image was discarded/.test(l)), context);
  } finally {
    await proxy?.[Symbol.asyncDispose]();
  }
});

Deno.test("tls failure table: a peer that stalls the handshake is dropped after the handshake timeout, and a source still gets in", async () => {
  const f = await creds();
  let staller: Deno.TcpConn | undefined;
  try {
    const { src, dst } = await migrateOnce({
      dst: [
        ...["--from", "tls:127.0.0.1:0", "--tls-creds", f.good, "--tls-authz", f.authz],
        ...["--tls-handshake-timeout", "0.5", "--max-attempts", "2"],
      ],
      src: ["--tls-creds", f.good],
      beforeSource: async (listening) => {
        const [, port] = /:(\d+)$/.exec(listening)!;
        staller = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
        // Half a ClientHello, then nothing: the destination ends it at its bound.
        await staller.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
        const n = await staller.read(new Uint8Array(64)).catch(() => null);
        assert.equal(n, null, "the destination closed the stalled connection");
      },
    });
    const context = `\n${src.lines.join("\n")}\n${dst.lines.join("\n")}`;
    assert.ok(
      dst.lines.some((l) =>
        /^dropped 127\.0\.0\.1:\d+: .*TLS handshake did not complete within 0\.5 s$/.test(l)
      ),
      context,
    );
    assert.equal(src.code, 0, context);
    assert.equal(dst.code, 0, context);
    assert.equal(src.report.sourceDigest, dst.report.digest);
  } finally {
    staller?.close();
  }
});

Deno.test("tls failure table: a destination that stalls the handshake fails the source within its peer timeout", async () => {
  const f = await creds();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const holding = (async () => {
    for await (const c of listener) held.push(c); // accepts, never answers
  })().catch(() => {});
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-tls-run-" });
  try {
    await using src = startCli([
      ...["migrate", "--to", `tls:127.0.0.1:${listener.addr.port}`, "--ram", "16M"],
      ...["--tls-creds", f.good, "--peer-timeout", "1", "--report", `${dir}/src.json`],
    ]);
    const s = await src.exit(30_000);
    assert.equal(s.code, 1, src.stderr.join("\n"));
    const report = JSON.parse(await Deno.readTextFile(`${dir}/src.json`));
    assert.match(
      report.error,
      /^Cannot connect to tls:127\.0\.0\.1:\d+: the TLS handshake did not complete within 1 s$/,
    );
  } finally {
    listener.close();
    for (const c of held) c.close();
    await holding;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("receive refuses plaintext tcp: beyond loopback unless --insecure-plaintext, saying what is exposed", async () => {
  await using refused = startCli(["receive", "--from", "tcp:0.0.0.0:0", "--ram", "16M"]);
  const s = await refused.exit(30_000);
  assert.equal(s.code, 2);
  assert.equal(refused.stderr.length, 1, refused.stderr.join("\n"));
  assert.match(
    refused.stderr[0],
    /^deno-vmm: Refusing to listen on tcp:0\.0\.0\.0:0 without TLS: anyone who can reach the port could replace this guest's memory with their own, or read a guest's memory by posing as this destination to a source\. Listen on tls:0\.0\.0\.0:0 with --tls-creds DIR and --tls-authz FILE, or pass --insecure-plaintext/,
  );
  await using allowed = startCli([
    ...["receive", "--from", "tcp:0.0.0.0:0", "--ram", "16M", "--insecure-plaintext"],
  ]);
  await allowed.line(/^warning: listening on tcp:0\.0\.0\.0:0 in plaintext: anyone who can reach/);
  await allowed.line(/^listening on tcp:0\.0\.0\.0:\d+/);
});

Deno.test("receive and migrate check their TLS flags before any work", async () => {
  const f = await creds();
  const cases: [string[], RegExp][] = [
    [["receive", "--from", "tls:127.0.0.1:0", "--ram", "16M"], /needs --tls-creds DIR/],
    [
      ["receive", "--from", "tcp:127.0.0.1:0", "--ram", "16M", "--tls-creds", f.good],
      /--tls-creds is for tls: endpoints/,
    ],
    [
      ["receive", "--from", "tls:127.0.0.1:0", "--ram", "16M", "--tls-creds", f.noClientCert],
      /server-cert\.pem is missing/,
    ],
    [[
      "receive",
      "--from",
      "tls:127.0.0.1:0",
      "--ram",
      "16M",
      "--tls-creds",
      f.good,
      "--tls-authz",
      "/nonexistent",
    ], /--tls-authz: Cannot read the authorization list \/nonexistent/],
    [["migrate", "--to", "tls:127.0.0.1:1", "--ram", "16M"], /needs --tls-creds DIR/],
    [
      ["migrate", "--to", "tcp:127.0.0.1:1", "--ram", "16M", "--tls-hostname", "x"],
      /--tls-hostname is for tls: destinations/,
    ],
  ];
  for (const [args, want] of cases) {
    await using cli = startCli(args);
    const s = await cli.exit(30_000);
    assert.equal(s.code, 2, `${args.join(" ")}: ${cli.stderr.join("\n")}`);
    assert.equal(cli.stderr.length, 1, cli.stderr.join("\n"));
    assert.match(cli.stderr[0], want);
  }
});

Deno.test("tls-creds init writes QEMU's layout with v3 certificates that authenticate both ways, keys 0600", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-tls-init-" });
  try {
    const out = `${dir}/creds`;
    await using cli = startCli([
      ...["tls-creds", "init", out, "--server-name", "localhost,127.0.0.1", "--client-cn", "src-a"],
      ...["--org", "lab"],
    ]);
    assert.equal((await cli.exit(30_000)).code, 0, cli.stderr.join("\n"));
    assert.equal((await Deno.stat(out)).mode! & 0o777, 0o700);
    for (const key of ["ca-key.pem", "server-key.pem", "client-key.pem"]) {
      assert.equal((await Deno.stat(`${out}/${key}`)).mode! & 0o777, 0o600, key);
    }
    const authz = await Deno.readTextFile(`${out}/authz.txt`);
    assert.match(authz, /^CN=src-a,O=lab$/m);
    // The pair authenticates over node:tls: the server sees the client's subject.
    const r = (name: string) => Deno.readTextFileSync(`${out}/${name}`);
    const seen = Promise.withResolvers<string>();
    const server = tls.createServer({
      cert: r("server-cert.pem"),
      key: r("server-key.pem"),
      ca: r("ca-cert.pem"),
      requestCert: true,
      rejectUnauthorized: true,
    }, (s) => {
      const cn = (s.getPeerCertificate() as { subject?: { CN?: string } }).subject?.CN ?? "";
      seen.resolve(`${s.authorized} ${cn}`);
      s.end();
    });
    server.on("tlsClientError", (e) => seen.reject(e));
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", () => ok()));
    const port = (server.address() as { port: number }).port;
    const c = tls.connect({
      host: "127.0.0.1",
      port,
      ca: r("ca-cert.pem"),
      cert: r("client-cert.pem"),
      key: r("client-key.pem"),
      servername: "localhost",
    });
    c.on("error", () => {});
    try {
      assert.equal(await seen.promise, "true src-a");
    } finally {
      c.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
    }
    // A second init into the same directory writes nothing.
    await using again = startCli(["tls-creds", "init", out]);
    assert.equal((await again.exit(30_000)).code, 2);
    assert.match(again.stderr[0], /already holds ca-cert\.pem, .*nothing was written/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
