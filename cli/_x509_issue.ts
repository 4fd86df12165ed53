// Makes a CA and X.509 v3 leaf certificates with openssl (node:crypto cannot
// sign certificates): P-256 keys, the basic constraints, key usages and
// extended key usage each role needs (a client certificate without
// clientAuth, or a v1 one, is refused), subject alternative names for a
// server, and chosen validity dates (tests make expired and not-yet-valid
// ones). All work happens in a private 0700 directory; keys are written 0600.

const OPENSSL = "openssl";

/** A certificate with its key, as PEM. */
export interface Issued {
  cert: string;
  key: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  let out;
  try {
    out = await new Deno.Command(OPENSSL, { args, cwd, stdout: "null", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(
        "Cannot make certificates: openssl is not installed (apt-get install openssl)",
        { cause: e },
      );
    }
    throw e;
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join("; ");
    throw new TypeError(`Cannot make certificates: openssl ${args[0]} failed: ${err}`);
  }
}

function opensslTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
}

// An OpenSSL -subj value from RDNs given most significant first.
function subj(rdns: [string, string][]): string {
  return rdns.map(([k, v]) => `/${k}=${v.replace(/[\/\\]/g, (c) => `\\${c}`)}`).join("");
}

async function inScratch<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-x509-" });
  try {
    await Deno.chmod(dir, 0o700);
    return await work(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A self-signed CA, valid from now for `days`.
 *
 * @param options The CA's common name and organisation, and its lifetime.
 * @returns Its certificate and key.
 */
export function makeCa(options: { cn: string; org?: string; days: number }): Promise<Issued> {
  return inScratch(async (dir) => {
    await openssl([
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", "key.pem", "-out", "cert.pem", "-days", String(options.days), "-utf8"],
      ...[
        "-subj",
        subj([...(options.org ? [["O", options.org]] as [string, string][] : []), [
          "CN",
          options.cn,
        ]]),
      ],
      ...["-addext", "basicConstraints=critical,CA:TRUE"],
      ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
      ...["-addext", "subjectKeyIdentifier=hash"],
    ], dir);
    return {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
  });
}

/** What to issue. */
export interface LeafOptions {
  /** `server` (serverAuth, with SANs) or `client` (clientAuth). */
  role: "server" | "client";
  /** Subject RDNs, most significant first: `[["O", "lab"], ["CN", "client-1"]]`. */
  subject: [string, string][];
  /** For a server: DNS names and IP addresses it is reached by. */
  names?: string[];
  /** Validity start (default now). */
  notBefore?: Date;
  /** Validity end (default `notBefore` + 365 days). */
  notAfter?: Date;
}

/**
 * A leaf certificate signed by `ca`.
 *
 * @param ca The issuing CA.
 * @param options Role, subject, names and validity.
 * @returns The certificate and its new key.
 */
export function issueLeaf(ca: Issued, options: LeafOptions): Promise<Issued> {
  return inScratch(async (dir) => {
    const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
    const notAfter = options.notAfter ?? new Date(notBefore.getTime() + 365 * 86400_000);
    await Deno.writeTextFile(`${dir}/ca.pem`, ca.cert);
    await Deno.writeTextFile(`${dir}/ca-key.pem`, ca.key, { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/index.txt`, "");
    const serial = crypto.getRandomValues(new Uint8Array(16));
    serial[0] &= 0x7f;
    await Deno.writeTextFile(
      `${dir}/serial`,
      [...serial].map((b) => b.toString(16).padStart(2, "0")).join("") + "\n",
    );
    const san = (options.names ?? []).map((n) =>
      /^[0-9.]+$|:/.test(n) ? `IP:${n.replace(/^\[|\]$/g, "")}` : `DNS:${n}`
    );
    await Deno.writeTextFile(
      `${dir}/ca.cnf`,
      [
        "[ca]",
        "default_ca = issuer",
        "[issuer]",
        "database = index.txt",
        "new_certs_dir = .",
        "serial = serial",
        "default_md = sha256",
        "policy = any",
        "unique_subject = no",
        "email_in_dn = no",
        "preserve = yes",
        "[any]",
        ...[
          "countryName",
          "stateOrProvinceName",
          "localityName",
          "organizationName",
          "organizationalUnitName",
          "commonName",
          "emailAddress",
          "domainComponent",
          "serialNumber",
          "userId",
        ].map((f) => `${f} = optional`),
        "[leaf]",
        "basicConstraints = critical,CA:FALSE",
        `keyUsage = critical,digitalSignature${
          options.role === "server" ? ",keyEncipherment" : ""
        }`,
        `extendedKeyUsage = ${options.role === "server" ? "serverAuth" : "clientAuth"}`,
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
        ...(san.length > 0 ? [`subjectAltName = ${san.join(",")}`] : []),
        "",
      ].join("\n"),
    );
    await openssl([
      ...["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", "key.pem", "-out", "req.pem", "-utf8", "-subj", subj(options.subject)],
    ], dir);
    await openssl([
      ...["ca", "-config", "ca.cnf", "-batch", "-notext", "-utf8", "-cert", "ca.pem"],
      ...["-keyfile", "ca-key.pem", "-in", "req.pem", "-out", "cert.pem", "-extensions", "leaf"],
      ...["-startdate", opensslTime(notBefore), "-enddate", opensslTime(notAfter)],
    ], dir);
    return {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
  });
}
