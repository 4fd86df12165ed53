/**
 * TLS credentials laid out as QEMU's `tls-creds-x509` object reads them: a
 * directory holding `ca-cert.pem` (the CA both sides verify their peer
 * against), `server-cert.pem` and `server-key.pem` (the destination's), and
 * `client-cert.pem` and `client-key.pem` (the source's). Requires
 * `--allow-read` for the directory.
 *
 * @module
 */

import { parseCertificate, pemCertificates } from "./_x509.ts";

/** Which side of a migration the credentials are for. */
export type TlsCredentialsEndpoint = "client" | "server";

/** A side's credentials, read from a QEMU-style directory. */
export interface TlsCredentials {
  /** The directory they were read from. */
  readonly dir: string;
  /** `server` (the destination) or `client` (the source). */
  readonly endpoint: TlsCredentialsEndpoint;
  /** `ca-cert.pem`: one or more PEM CA certificates. */
  readonly caCert: string;
  /**
   * This side's PEM certificate (`server-cert.pem` or `client-cert.pem`);
   * a client may have none, but a destination always asks for one.
   */
  readonly cert?: string;
  /** The PEM private key that goes with `cert`. */
  readonly key?: string;
}

function read(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    const err = e as Error;
    const Kind = err.constructor as new (m: string, o?: ErrorOptions) => Error;
    throw new Kind(`Cannot read ${path}: ${err.message}`, { cause: e });
  }
}

/**
 * Reads one side's credentials from `dir`.
 *
 * @param dir The directory (QEMU's layout; `mod.ts tls-creds init DIR` writes one).
 * @param endpoint `server` needs `ca-cert.pem`, `server-cert.pem` and
 *   `server-key.pem`; `client` needs `ca-cert.pem`, and `client-cert.pem`
 *   with `client-key.pem` to authenticate (a destination refuses clients
 *   without).
 * @returns The credentials.
 * @throws {TypeError} Naming the file that is missing or not PEM.
 * @throws {Deno.errors.PermissionDenied} And other read errors, naming the file.
 *
 * @example Read a destination's credentials
 * ```ts ignore
 * import { loadTlsCredentials } from "./tls_credentials.ts";
 * const creds = loadTlsCredentials("/etc/deno-vmm/tls", "server");
 * ```
 */
export function loadTlsCredentials(
  dir: string,
  endpoint: TlsCredentialsEndpoint,
): TlsCredentials {
  if (endpoint !== "client" && endpoint !== "server") {
    throw new TypeError(`Cannot load TLS credentials for "${endpoint}": expected client or server`);
  }
  const path = (name: string) => `${dir.replace(/\/+$/, "") || "/"}/${name}`;
  const caCert = read(path("ca-cert.pem"));
  if (caCert === undefined) {
    throw new TypeError(
      `Cannot use TLS credentials in ${dir}: ${path("ca-cert.pem")} is missing ` +
        "(create a set with `mod.ts tls-creds init DIR`)",
    );
  }
  const cas = pemCertificates(caCert);
  if (cas.length === 0) {
    throw new TypeError(`Cannot read ${path("ca-cert.pem")}: it holds no PEM certificate`);
  }
  for (const pem of cas) parseCertificate(pem, path("ca-cert.pem"));
  const cert = read(path(`${endpoint}-cert.pem`));
  const key = read(path(`${endpoint}-key.pem`));
  if (endpoint === "server" && (cert === undefined || key === undefined)) {
    throw new TypeError(
      `Cannot use TLS credentials in ${dir} to listen: ${
        path(cert === undefined ? "server-cert.pem" : "server-key.pem")
      } is missing`,
    );
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(
      `Cannot use TLS credentials in ${dir}: ${
        path(cert === undefined ? "client-cert.pem" : "client-key.pem")
      } is missing while its pair is there`,
    );
  }
  if (cert !== undefined) {
    parseCertificate(cert, path(`${endpoint}-cert.pem`));
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key!)) {
      throw new TypeError(`Cannot read ${path(`${endpoint}-key.pem`)}: not a PEM private key`);
    }
  }
  return { dir, endpoint, caCert, cert, key };
}
