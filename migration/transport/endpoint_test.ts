import assert from "node:assert/strict";
import { formatEndpoint, parseEndpoint } from "./endpoint.ts";

Deno.test("parseEndpoint() parses tcp, unix and file endpoints", () => {
  assert.deepEqual(parseEndpoint("tcp:127.0.0.1:4444"), {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 4444,
  });
  assert.deepEqual(parseEndpoint("tcp:[::1]:0"), { transport: "tcp", hostname: "::1", port: 0 });
  assert.deepEqual(parseEndpoint("tcp:dest.example:65535"), {
    transport: "tcp",
    hostname: "dest.example",
    port: 65535,
  });
  assert.deepEqual(parseEndpoint("unix:/run/mig.sock"), {
    transport: "unix",
    path: "/run/mig.sock",
  });
  assert.deepEqual(parseEndpoint("file:/tmp/a:b"), { transport: "file", path: "/tmp/a:b" });
});

Deno.test("parseEndpoint() rejects malformed endpoints naming them", () => {
  for (
    const bad of [
      "",
      "tcp",
      "tcp:",
      "tcp:host",
      "tcp::80",
      "tcp:host:",
      "tcp:host:8x",
      "tcp:::1:80",
      "udp:h:1",
      "unix:",
      "file:",
      "TCP:h:1",
      "tcp:h:-1",
    ]
  ) {
    assert.throws(() => parseEndpoint(bad), (e: unknown) => {
      assert.ok(e instanceof TypeError, `${bad}: ${e}`);
      assert.ok(e.message.includes(`"${bad}"`), e.message);
      return true;
    });
  }
  assert.throws(() => parseEndpoint(42 as unknown as string), TypeError);
});

Deno.test("parseEndpoint() rejects a port above 65535 with a RangeError", () => {
  assert.throws(() => parseEndpoint("tcp:h:65536"), {
    name: "RangeError",
    message: 'Cannot parse endpoint "tcp:h:65536": port 65536 is not in 0 to 65535',
  });
});

Deno.test("formatEndpoint() round-trips parseEndpoint()", () => {
  for (const s of ["tcp:127.0.0.1:1", "tcp:[::1]:80", "unix:/x/y.sock", "file:rel/path"]) {
    assert.equal(formatEndpoint(parseEndpoint(s)), s);
  }
});

Deno.test("parseEndpoint() parses tls endpoints as it parses tcp ones", () => {
  assert.deepEqual(parseEndpoint("tls:dest.lab:4444"), {
    transport: "tls",
    hostname: "dest.lab",
    port: 4444,
  });
  assert.deepEqual(parseEndpoint("tls:[::1]:0"), { transport: "tls", hostname: "::1", port: 0 });
  for (const bad of ["tls:", "tls:host", "tls:::1:80", "tls:h:x"]) {
    assert.throws(() => parseEndpoint(bad), TypeError, bad);
  }
  assert.throws(() => parseEndpoint("tls:h:70000"), RangeError);
  for (const s of ["tls:10.0.0.2:4444", "tls:[::1]:80"]) {
    assert.equal(formatEndpoint(parseEndpoint(s)), s);
  }
});
