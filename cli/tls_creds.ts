/**
 * `tls-creds init DIR`: writes a CA and the four leaf files of QEMU's
 * `tls-creds-x509` layout (ca-cert.pem, server-cert.pem, server-key.pem,
 * client-cert.pem, client-key.pem), plus an authorization list naming the
 * client, for tests and first use.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { subjectRfc2253 } from "../migration/transport/_x509.ts";
import { UsageError } from "./describe_error.ts";
import { helpText, parseCommand } from "./flags.ts";
import { parseInteger } from "./parse.ts";
import { issueLeaf, makeCa } from "./_x509_issue.ts";

/** The flags of `tls-creds`. */
export const TLS_CREDS_COMMAND = {
  name: "tls-creds",
  positionals: "init DIR",
  summary:
    "Write a CA, a server and a client certificate with their keys (QEMU's tls-creds-x509 layout) and an authorization list naming the client into DIR.",
  flags: {
    "server-name": {
      type: "string",
      value: "NAMES",
      help: "comma-separated DNS names and IP addresses the destination is reached by",
      default: "localhost,127.0.0.1,::1 and this host's name",
    },
    "client-cn": {
      type: "string",
      value: "NAME",
      help: "the client certificate's common name",
      default: "client-1",
    },
    org: {
      type: "string",
      value: "NAME",
      help: "the organisation (O=) of every certificate",
      default: "deno-vmm",
    },
    days: {
      type: "string",
      value: "N",
      help: "how long the certificates are valid",
      default: "365",
    },
  },
  notes: [
    "Files: ca-cert.pem, ca-key.pem, server-cert.pem, server-key.pem, client-cert.pem,",
    "client-key.pem (keys mode 0600, DIR 0700) and authz.txt. Copy DIR without client-key.pem",
    "to the destination and without server-key.pem to the source; ca-key.pem signs new",
    "certificates: keep it off both. Existing files are never overwritten.",
  ],
} as const;

// This host's name, when the process may ask for it (--allow-sys).
function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

const FILES = [
  "ca-cert.pem",
  "ca-key.pem",
  "server-cert.pem",
  "server-key.pem",
  "client-cert.pem",
  "client-key.pem",
  "authz.txt",
];

function writeNew(path: string, text: string, mode: number): void {
  const file = Deno.openSync(path, { createNew: true, write: true, mode });
  try {
    file.writeSync(new TextEncoder().encode(text));
  } finally {
    file.close();
  }
  Deno.chmodSync(path, mode); // whatever the umask
}

/**
 * Runs `tls-creds`.
 *
 * @param args The arguments after `tls-creds`.
 * @returns 0 once every file is written.
 * @throws {UsageError} For bad arguments, or a DIR that already holds credentials.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runTlsCreds(["init", "/tmp/creds"]));
 * ```
 */
export async function runTlsCreds(args: string[]): Promise<number> {
  const parsed = parseCommand(TLS_CREDS_COMMAND, args);
  if (parsed === "help") {
    console.log(helpText(TLS_CREDS_COMMAND));
    return 0;
  }
  const { values, positionals } = parsed;
  if (positionals[0] !== "init" || positionals.length !== 2) {
    throw new UsageError("tls-creds takes `init DIR` (see `mod.ts tls-creds --help`)");
  }
  const dir = positionals[1];
  const days = values.days === undefined ? 365 : parseInteger("--days", values.days, { min: 1 });
  const org = values.org ?? "deno-vmm";
  const cn = values["client-cn"] ?? "client-1";
  if (cn.trim().length === 0 || [...cn].some((c) => c < " ")) {
    throw new UsageError("--client-cn takes a name without control characters");
  }
  const names = (values["server-name"] ?? `localhost,127.0.0.1,::1,${hostName()}`)
    .split(",").map((n) => n.trim()).filter((n) => n.length > 0);
  for (const n of names) {
    if (!/^[A-Za-z0-9.\-:*\[\]]+$/.test(n)) {
      throw new UsageError(`--server-name: "${n}" is not a DNS name or IP address`);
    }
  }
  if (names.length === 0) throw new UsageError("--server-name names no host");
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new UsageError(`Cannot create ${dir}: ${(e as Error).message}`);
  }
  const taken = FILES.filter((f) => {
    try {
      Deno.lstatSync(`${dir}/${f}`);
      return true;
    } catch {
      return false;
    }
  });
  if (taken.length > 0) {
    throw new UsageError(
      `${dir} already holds ${taken.join(", ")}: choose an empty directory (nothing was written)`,
    );
  }
  const notAfter = new Date(Date.now() + days * 86400_000);
  const ca = await makeCa({ cn: `${org} migration CA`, org, days: days + 1 });
  const server = await issueLeaf(ca, {
    role: "server",
    subject: [["O", org], ["CN", names[0]]],
    names,
    notAfter,
  });
  const client = await issueLeaf(ca, {
    role: "client",
    subject: [["O", org], ["CN", cn]],
    notAfter,
  });
  const id = new X509Certificate(client.cert);
  const subject = subjectRfc2253(new Uint8Array(id.raw));
  const authz = [
    "# Clients allowed to migrate to a destination started with --tls-authz this-file:",
    "# a subject (openssl x509 -noout -subject -nameopt RFC2253) or a SHA-256 fingerprint",
    "# (openssl x509 -noout -fingerprint -sha256), one a line.",
    subject,
    "",
  ].join("\n");
  const contents: [string, string, number][] = [
    ["ca-cert.pem", ca.cert, 0o644],
    ["ca-key.pem", ca.key, 0o600],
    ["server-cert.pem", server.cert, 0o644],
    ["server-key.pem", server.key, 0o600],
    ["client-cert.pem", client.cert, 0o644],
    ["client-key.pem", client.key, 0o600],
    ["authz.txt", authz, 0o644],
  ];
  const written: string[] = [];
  try {
    for (const [name, text, mode] of contents) {
      writeNew(`${dir}/${name}`, text, mode);
      written.push(`${dir}/${name}`);
    }
  } catch (e) {
    // All or nothing: a half-written set would be refused next time.
    for (const path of written) Deno.removeSync(path);
    throw new UsageError(`Cannot write TLS credentials to ${dir}: ${(e as Error).message}`);
  }
  console.error(
    `wrote TLS credentials to ${dir}: server ${names.join(", ")}; client ${subject} ` +
      `(SHA-256 ${id.fingerprint256}), listed in ${dir}/authz.txt; valid until ${
        notAfter.toISOString().slice(0, 10)
      }`,
  );
  return 0;
}
