// Turns node:tls failures into `Deno.errors` with one clear line each: what
// went wrong, on which endpoint, and what the other side most likely saw.

interface NodeError extends Error {
  code?: string;
}

/** Verification codes that mean "the peer's certificate was not accepted". */
export const CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_PURPOSE",
  "CERT_SIGNATURE_FAILURE",
]);

function alertOf(message: string): string | undefined {
  return /received fatal alert: (\w+)/.exec(message)?.[1];
}

/** Whether a TLS error says the peer sent plaintext. */
export function notTls(message: string): boolean {
  return /InvalidContentType|wrong version number|corrupt message|packet length too long/i.test(
    message,
  );
}

/** A failure on an established TLS connection (a read or a write). */
export function tlsFailure(e: Error, label: string): Error {
  const err = e as NodeError;
  const message = err.message;
  if (/bad ?record ?mac|decrypt/i.test(message)) {
    return new Deno.errors.InvalidData(
      `A TLS record on ${label} failed its integrity check (its bytes were altered in transit): ${message}`,
      { cause: e },
    );
  }
  const alert = alertOf(message);
  if (alert !== undefined) {
    return new Deno.errors.InvalidData(`The peer on ${label} ended TLS with alert ${alert}`, {
      cause: e,
    });
  }
  if (notTls(message)) {
    return new Deno.errors.InvalidData(
      `The peer on ${label} does not speak TLS (it sent plaintext): ${message}`,
      { cause: e },
    );
  }
  switch (err.code) {
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(`Connection ${label} reset by the peer`, { cause: e });
    case "EPIPE":
      return new Deno.errors.BrokenPipe(`Cannot write to ${label}: broken pipe`, { cause: e });
    case "ETIMEDOUT":
      return new Deno.errors.TimedOut(`Connection ${label} timed out`, { cause: e });
  }
  return new Deno.errors.InvalidData(`TLS failure on ${label}: ${message}`, { cause: e });
}

/** Why a server-side handshake failed, for the destination's "dropped" line. */
export function serverHandshakeFailure(e: Error, caPath: string): Error {
  const err = e as NodeError;
  const message = err.message;
  const alert = alertOf(message);
  let why: string;
  if (err.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE" || /no certificates/.test(message)) {
    why = "the client sent no certificate, and one is required";
  } else if (
    alert === "UnknownCA" || alert === "BadCertificate" || alert === "CertificateUnknown"
  ) {
    why = `the client does not accept this destination's certificate (alert ${alert}): ` +
      "its CA did not issue server-cert.pem, or the certificate does not name the host it dialled";
  } else if (alert === "CertificateExpired") {
    why = "the client refused this destination's certificate as expired or not yet valid " +
      "(alert CertificateExpired)";
  } else if (alert !== undefined) {
    why = `the client ended the handshake with alert ${alert}`;
  } else if (notTls(message)) {
    why = "the peer does not speak TLS (it sent plaintext: a tcp: source dialling this tls: " +
      "listener?)";
  } else if (err.code === "ECONNRESET" || /hang up/.test(message)) {
    why = "the client's certificate was refused or the client hung up: a client certificate " +
      `must be issued by the CA in ${caPath}, be valid now, and allow clientAuth`;
  } else {
    why = message;
  }
  return new Deno.errors.PermissionDenied(`TLS handshake failed: ${why}`, { cause: e });
}
