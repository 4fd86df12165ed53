import assert from "node:assert/strict";
import { TlsAuthz } from "./tls_authz.ts";

const FP = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, "0")).join(":");

Deno.test("TlsAuthz.parse() takes subjects and fingerprints as openssl prints them", () => {
  const authz = TlsAuthz.parse(
    [
      "# sources allowed to migrate here",
      "   ",
      "subject=CN=client-1,O=lab",
      "CN=client-3,O=lab   # the spare host",
      `sha256 Fingerprint=${FP.toUpperCase()}`,
      FP,
    ].join("\r\n"),
  );
  assert.equal(authz.size, 3);
  assert.equal(authz.allows({ subject: "CN=client-1,O=lab", fingerprint256: "00" }), true);
  assert.equal(authz.allows({ subject: "CN=client-3,O=lab", fingerprint256: "00" }), true);
  assert.equal(authz.allows({ subject: "CN=x", fingerprint256: FP.toUpperCase() }), true);
  // Exact subjects: another order, case or spacing is another subject.
  for (const subject of ["O=lab,CN=client-1", "cn=client-1,o=lab", "CN=client-1, O=lab"]) {
    assert.equal(authz.allows({ subject, fingerprint256: "00" }), false, subject);
  }
});

Deno.test("TlsAuthz.parse() names the line it cannot read, and refuses an empty list", () => {
  assert.throws(() => TlsAuthz.parse("CN=a\nclient-2\n", "authz.txt"), {
    name: "TypeError",
    message:
      /^Cannot read the authorization list authz\.txt, line 2: expected a subject .* got "client-2"$/,
  });
  assert.throws(() => TlsAuthz.parse("AB:CD\n"), /line 1/);
  assert.throws(() => TlsAuthz.parse("# nobody\n", "authz.txt"), {
    message:
      "Cannot use the authorization list authz.txt: it names no client, so every client is refused",
  });
});

Deno.test("TlsAuthz.load() names a missing file", () => {
  assert.throws(() => TlsAuthz.load("/nonexistent/authz.txt"), {
    name: "NotFound",
    message: /^Cannot read the authorization list \/nonexistent\/authz\.txt: /,
  });
});
