import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { certificateProblems, chainsTo, subjectRfc2253 } from "./_x509.ts";

async function openssl(args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

async function selfSigned(dir: string, subj: string, extra: string[] = []): Promise<string> {
  await openssl([
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", "k.pem", "-out", "c.pem", "-days", "2", "-utf8", "-subj", subj, ...extra],
  ], dir);
  return await Deno.readTextFile(`${dir}/c.pem`);
}

Deno.test("subjectRfc2253() prints subjects as openssl -nameopt RFC2253 does", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-x509-" });
  try {
    const subjects = [
      "/O=lab/CN=client-1",
      '/C=DE/ST=Berlin/L=Mitte/O=Example, Inc./OU=ops+dev/CN=a;b<c>d"e\\\\f',
      "/CN=#lead and trail /O= space",
      "/DC=org/DC=example/UID=u1/emailAddress=ops@example.org/CN=müller ☃",
      "/O=x/CN=a+OU=b",
      "/CN=tab\there",
      "/serialNumber=42/title=t/1.2.3.4=odd/CN=z",
    ];
    for (const subj of subjects) {
      const pem = await selfSigned(dir, subj, subj.includes("+OU") ? ["-multivalue-rdn"] : []);
      const want = (await openssl(
        ["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", "c.pem"],
        dir,
      )).replace(/\n$/, "").replace(/^subject=/, "");
      const got = subjectRfc2253(new Uint8Array(new X509Certificate(pem).raw));
      assert.equal(got, want, `subject ${subj}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("chainsTo() and certificateProblems() find a certificate another CA issued", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-x509-" });
  try {
    const a = new X509Certificate(
      await selfSigned(dir, "/CN=CA one", ["-addext", "basicConstraints=critical,CA:TRUE"]),
    );
    const b = new X509Certificate(
      await selfSigned(dir, "/CN=CA two", ["-addext", "basicConstraints=critical,CA:TRUE"]),
    );
    assert.equal(chainsTo(a, [], [a]), true);
    assert.equal(chainsTo(a, [], [b]), false);
    const problems = certificateProblems(a, { cas: [b], usage: "clientAuth" });
    assert.deepEqual(problems, ["it was issued by CN=CA one, not by the CA in ca-cert.pem"]);
    const later = new Date(Date.now() + 5 * 86400_000);
    assert.match(
      certificateProblems(a, { cas: [a], usage: "clientAuth", now: later })[0],
      /^it expired on 20/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
