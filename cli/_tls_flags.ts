// The TLS flags `migrate` and `receive` share, their checks, and the secure
// default: a destination does not listen in plaintext beyond loopback unless
// told to.

import type { Endpoint } from "../migration/transport/endpoint.ts";
import { formatEndpoint } from "../migration/transport/endpoint.ts";
import { TlsAuthz } from "../migration/transport/tls_authz.ts";
import { loadTlsCredentials } from "../migration/transport/tls_credentials.ts";
import type { TlsListenOptions } from "../migration/transport/tls.ts";
import type { TlsCredentials } from "../migration/transport/tls_credentials.ts";
import { UsageError } from "./describe_error.ts";
import { parseSeconds } from "./parse.ts";

/** `migrate`'s TLS flags. */
export const SOURCE_TLS_FLAGS = {
  "tls-creds": {
    type: "string",
    value: "DIR",
    help: "for tls: ca-cert.pem, client-cert.pem and client-key.pem (QEMU's layout)",
  },
  "tls-hostname": {
    type: "string",
    value: "NAME",
    help: "the name the destination's certificate must carry",
    default: "the endpoint's host",
  },
} as const;

/** `receive`'s TLS flags. */
export const DESTINATION_TLS_FLAGS = {
  "tls-creds": {
    type: "string",
    value: "DIR",
    help: "for tls: ca-cert.pem, server-cert.pem and server-key.pem (QEMU's layout)",
  },
  "tls-authz": {
    type: "string",
    value: "FILE",
    help: "allowed clients, one subject (CN=client-1,O=lab) or SHA-256 fingerprint a line",
    default: "any client with a certificate from the CA",
  },
  "tls-handshake-timeout": {
    type: "string",
    value: "SECONDS",
    help: "drop a peer that has not completed the TLS handshake within this",
    default: "10",
  },
  "insecure-plaintext": {
    type: "boolean",
    help: "listen on tcp: beyond loopback without TLS (anyone who reaches the port can migrate)",
  },
} as const;

function credentials(dir: string, endpoint: "client" | "server"): TlsCredentials {
  try {
    return loadTlsCredentials(dir, endpoint);
  } catch (e) {
    throw new UsageError(`--tls-creds: ${(e as Error).message}`);
  }
}

/** The source's TLS options from its flags, checked against the endpoint. */
export function sourceTls(
  endpoint: Endpoint,
  values: { "tls-creds"?: string; "tls-hostname"?: string },
): { credentials: TlsCredentials; serverName?: string } | undefined {
  if (endpoint.transport !== "tls") {
    for (const flag of ["tls-creds", "tls-hostname"] as const) {
      if (values[flag] !== undefined) {
        throw new UsageError(`--${flag} is for tls: destinations, not ${formatEndpoint(endpoint)}`);
      }
    }
    return undefined;
  }
  if (values["tls-creds"] === undefined) {
    throw new UsageError(
      `--to ${
        formatEndpoint(endpoint)
      } needs --tls-creds DIR (make one with \`mod.ts tls-creds init DIR\`)`,
    );
  }
  return {
    credentials: credentials(values["tls-creds"], "client"),
    serverName: values["tls-hostname"],
  };
}

function loopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * The destination's TLS options from its flags; refuses plaintext TCP
 * beyond loopback unless `--insecure-plaintext`.
 *
 * @returns The TLS options (for tls:), and a warning line to print, if any.
 */
export function destinationTls(
  endpoint: Endpoint,
  values: {
    "tls-creds"?: string;
    "tls-authz"?: string;
    "tls-handshake-timeout"?: string;
    "insecure-plaintext"?: boolean;
  },
): { tls?: TlsListenOptions; warning?: string } {
  const label = formatEndpoint(endpoint);
  if (endpoint.transport !== "tls") {
    for (const flag of ["tls-creds", "tls-authz", "tls-handshake-timeout"] as const) {
      if (values[flag] !== undefined) {
        throw new UsageError(`--${flag} is for tls: endpoints, not ${label}`);
      }
    }
    if (endpoint.transport !== "tcp" || loopback(endpoint.hostname)) return {};
    const exposure =
      "anyone who can reach the port could replace this guest's memory with their own, or " +
      "read a guest's memory by posing as this destination to a source";
    if (!values["insecure-plaintext"]) {
      throw new UsageError(
        `Refusing to listen on ${label} without TLS: ${exposure}. Listen on tls:${
          label.slice(4)
        } with --tls-creds DIR and --tls-authz FILE, or pass --insecure-plaintext on a network ` +
          "you trust",
      );
    }
    return { warning: `warning: listening on ${label} in plaintext: ${exposure}` };
  }
  if (values["insecure-plaintext"]) {
    throw new UsageError(`--insecure-plaintext is for tcp: endpoints, not ${label}`);
  }
  if (values["tls-creds"] === undefined) {
    throw new UsageError(
      `--from ${label} needs --tls-creds DIR (make one with \`mod.ts tls-creds init DIR\`)`,
    );
  }
  let authz: TlsAuthz | undefined;
  if (values["tls-authz"] !== undefined) {
    try {
      authz = TlsAuthz.load(values["tls-authz"]);
    } catch (e) {
      throw new UsageError(`--tls-authz: ${(e as Error).message}`);
    }
  }
  const handshakeTimeoutMs = values["tls-handshake-timeout"] === undefined
    ? undefined
    : parseSeconds("--tls-handshake-timeout", values["tls-handshake-timeout"]);
  return {
    tls: { credentials: credentials(values["tls-creds"], "server"), authz, handshakeTimeoutMs },
    warning: authz === undefined
      ? `note: no --tls-authz: any client with a certificate from ${
        values["tls-creds"].replace(/\/+$/, "")
      }/ca-cert.pem may migrate here`
      : undefined,
  };
}
