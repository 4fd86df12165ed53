// Credential directories for the TLS tests, made once per test file: a CA
// with a server and two clients, a second CA, and certificates that are
// expired, not yet valid, or issued by the other CA, each laid out as QEMU
// reads them (ca-cert.pem, server-*.pem, client-*.pem).
import { type Issued, issueLeaf, makeCa } from "../cli/_x509_issue.ts";

/** The directories, by what they hold. */
export interface TlsFixture {
  /** The CA's: server and client-1 (CN=client-1,O=lab) certificates. */
  good: string;
  /** An authorization list naming client-1 by subject. */
  authz: string;
  /** An authorization list naming client-1 by SHA-256 fingerprint. */
  authzByFingerprint: string;
  /** client-2 (CN=client-2,O=lab), from the CA but not in the list. */
  client2: string;
  /** Only ca-cert.pem: no client certificate. */
  noClientCert: string;
  /** A source that trusts another CA (its client certificate is from ours). */
  trustsOtherCa: string;
  /** A client certificate from the other CA. */
  clientFromOtherCa: string;
  expiredClient: string;
  futureClient: string;
  expiredServer: string;
  futureServer: string;
  /** Removes every directory. */
  remove(): Promise<void>;
}

async function writeDir(
  dir: string,
  files: { ca: Issued; server?: Issued; client?: Issued },
): Promise<string> {
  await Deno.mkdir(dir, { mode: 0o700 });
  await Deno.writeTextFile(`${dir}/ca-cert.pem`, files.ca.cert);
  for (const role of ["server", "client"] as const) {
    const leaf = files[role];
    if (leaf === undefined) continue;
    await Deno.writeTextFile(`${dir}/${role}-cert.pem`, leaf.cert);
    await Deno.writeTextFile(`${dir}/${role}-key.pem`, leaf.key, { mode: 0o600 });
  }
  return dir;
}

const DAY = 86400_000;

/** Makes the fixture under a fresh temp dir. */
export async function makeTlsFixture(): Promise<TlsFixture> {
  const root = await Deno.makeTempDir({ prefix: "deno-vmm-tls-" });
  const ca = await makeCa({ cn: "lab CA", org: "lab", days: 30 });
  const otherCa = await makeCa({ cn: "other CA", org: "elsewhere", days: 30 });
  const names = ["localhost", "127.0.0.1"];
  const server = await issueLeaf(ca, {
    role: "server",
    subject: [["O", "lab"], ["CN", "dest"]],
    names,
  });
  const client = (cn: string, by = ca, dates: { notBefore?: Date; notAfter?: Date } = {}) =>
    issueLeaf(by, { role: "client", subject: [["O", "lab"], ["CN", cn]], ...dates });
  const badServer = (dates: { notBefore: Date; notAfter: Date }) =>
    issueLeaf(ca, { role: "server", subject: [["O", "lab"], ["CN", "dest"]], names, ...dates });
  const past = { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) };
  const future = {
    notBefore: new Date(Date.now() + DAY),
    notAfter: new Date(Date.now() + 30 * DAY),
  };
  const client1 = await client("client-1");
  const dir = (name: string) => `${root}/${name}`;
  const fixture: TlsFixture = {
    good: await writeDir(dir("good"), { ca, server, client: client1 }),
    authz: `${root}/authz.txt`,
    authzByFingerprint: `${root}/authz-fingerprint.txt`,
    client2: await writeDir(dir("client2"), { ca, client: await client("client-2") }),
    noClientCert: await writeDir(dir("no-client-cert"), { ca }),
    trustsOtherCa: await writeDir(dir("trusts-other-ca"), { ca: otherCa, client: client1 }),
    clientFromOtherCa: await writeDir(dir("client-from-other-ca"), {
      ca,
      client: await client("client-1", otherCa),
    }),
    expiredClient: await writeDir(dir("expired-client"), {
      ca,
      client: await client("client-1", ca, past),
    }),
    futureClient: await writeDir(dir("future-client"), {
      ca,
      client: await client("client-1", ca, future),
    }),
    expiredServer: await writeDir(dir("expired-server"), { ca, server: await badServer(past) }),
    futureServer: await writeDir(dir("future-server"), { ca, server: await badServer(future) }),
    remove: () => Deno.remove(root, { recursive: true }),
  };
  await Deno.writeTextFile(fixture.authz, "# the lab's source\nCN=client-1,O=lab\n");
  const { X509Certificate } = await import("node:crypto");
  await Deno.writeTextFile(
    fixture.authzByFingerprint,
    `sha256 Fingerprint=${new X509Certificate(client1.cert).fingerprint256}\n`,
  );
  return fixture;
}
