// X.509 facts the TLS transport needs beyond what node:crypto gives: the
// subject as `openssl x509 -noout -subject -nameopt RFC2253` prints it, the
// SHA-256 fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it,
// whether a presented chain links up to one of our CA certificates by
// signature, and what is wrong with a certificate, in words.

import { X509Certificate } from "node:crypto";
import type { TlsPeerIdentity } from "./tls_authz.ts";

/** The PEM certificate blocks in `text` (a bundle may hold several). */
export function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The identity of a certificate. */
export function certificateIdentity(cert: X509Certificate): TlsPeerIdentity {
  return { subject: subjectRfc2253(new Uint8Array(cert.raw)), fingerprint256: cert.fingerprint256 };
}

/** `CN=client-1,O=lab (SHA-256 AB:CD:…)`, for messages. */
export function describeIdentity(id: TlsPeerIdentity): string {
  return `${id.subject || "(empty subject)"} (SHA-256 ${id.fingerprint256})`;
}

/**
 * Whether `leaf` links by signature, through `intermediates` the peer
 * presented, to one of `cas`.
 */
export function chainsTo(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  cas: readonly X509Certificate[],
): boolean {
  let cur = leaf;
  for (let depth = 0; depth < 8; depth++) {
    if (cas.some((ca) => issuedBy(cur, ca))) return true;
    const next = intermediates.find((i) => i.ca && i !== cur && issuedBy(cur, i));
    if (next === undefined) return false;
    cur = next;
  }
  return false;
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

const OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/**
 * What keeps `cert` from being accepted for `usage` under `cas` at `now`,
 * one phrase each (empty when nothing is wrong that can be seen here).
 */
export function certificateProblems(
  cert: X509Certificate,
  options: {
    cas: readonly X509Certificate[];
    usage: "serverAuth" | "clientAuth";
    intermediates?: readonly X509Certificate[];
    now?: Date;
  },
): string[] {
  const problems: string[] = [];
  const now = options.now ?? new Date();
  if (now < cert.validFromDate) {
    problems.push(`it is not valid before ${cert.validFromDate.toISOString()}`);
  }
  if (now > cert.validToDate) problems.push(`it expired on ${cert.validToDate.toISOString()}`);
  if (!chainsTo(cert, options.intermediates ?? [], options.cas)) {
    const issuer = nameLines(cert.issuer);
    problems.push(`it was issued by ${issuer}, not by the CA in ca-cert.pem`);
  }
  const eku = extendedKeyUsage(new Uint8Array(cert.raw));
  const wanted = options.usage === "serverAuth" ? OID_SERVER_AUTH : OID_CLIENT_AUTH;
  if (eku !== undefined && !eku.includes(wanted)) {
    problems.push(`its extended key usage does not include ${options.usage}`);
  }
  return problems;
}

// node:crypto prints names one attribute a line, most significant first.
function nameLines(text: string): string {
  return text.split("\n").reverse().join(",");
}

const OID_EXT_KEY_USAGE = "2.5.29.37";

/** The extended key usages (OIDs) of a DER certificate, or undefined without the extension. */
export function extendedKeyUsage(der: Uint8Array): string[] | undefined {
  const [tbs] = children(der, tlv(der, 0));
  const extensions = children(der, tbs).find((f) => f.tag === 0xa3);
  if (extensions === undefined) return undefined;
  for (const ext of children(der, children(der, extensions)[0])) {
    const parts = children(der, ext);
    if (oidText(der, parts[0]) !== OID_EXT_KEY_USAGE) continue;
    const octets = parts[parts.length - 1];
    const seq = tlv(der, octets.body);
    return children(der, seq).map((oid) => oidText(der, oid));
  }
  return undefined;
}

// ---- DER: the subject of a certificate, RFC 2253 the way OpenSSL prints it.

interface Tlv {
  tag: number;
  start: number; // of the whole TLV
  body: number;
  end: number;
}

function tlv(der: Uint8Array, at: number): Tlv {
  const tag = der[at];
  let len = der[at + 1];
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new RangeError("Cannot parse certificate: bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[body + i];
    body += n;
  }
  const end = body + len;
  if (end > der.length || tag === undefined) {
    throw new RangeError("Cannot parse certificate: DER runs past its end");
  }
  return { tag, start: at, body, end };
}

function children(der: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = t.body; at < t.end;) {
    const c = tlv(der, at);
    out.push(c);
    at = c.end;
  }
  return out;
}

const SHORT_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "street",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.17": "postalCode",
  "2.5.4.42": "GN",
  "2.5.4.43": "initials",
  "2.5.4.44": "generationQualifier",
  "2.5.4.46": "dnQualifier",
  "2.5.4.65": "pseudonym",
  "2.5.4.97": "organizationIdentifier",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.2.840.113549.1.9.1": "emailAddress",
};

function oidText(der: Uint8Array, t: Tlv): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = t.body; i < t.end; i++) {
    v = v * 128 + (der[i] & 0x7f);
    if (!(der[i] & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
}

// The value's characters as code points, or undefined for a type that is dumped.
function codePoints(der: Uint8Array, t: Tlv): number[] | undefined {
  const body = der.subarray(t.body, t.end);
  switch (t.tag) {
    case 0x0c: // UTF8String
      return [...new TextDecoder().decode(body)].map((c) => c.codePointAt(0)!);
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // T61String, read as Latin-1 as OpenSSL does
    case 0x1a: // VisibleString
      return [...body];
    case 0x1e: { // BMPString
      const out: number[] = [];
      for (let i = 0; i + 1 < body.length; i += 2) out.push(body[i] * 256 + body[i + 1]);
      return out;
    }
    case 0x1c: { // UniversalString
      const out: number[] = [];
      for (let i = 0; i + 3 < body.length; i += 4) {
        out.push(((body[i] << 24) | (body[i + 1] << 16) | (body[i + 2] << 8) | body[i + 3]) >>> 0);
      }
      return out;
    }
    default:
      return undefined;
  }
}

// ASN1_STRFLGS_RFC2253: UTF-8 bytes above 0x7f and control bytes as \XX,
// `,+"\<>;` backslashed, a leading `#` or space and a trailing space too.
function escapeValue(points: number[]): string {
  const bytes = new TextEncoder().encode(String.fromCodePoint(...points));
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    const ch = String.fromCharCode(b);
    if (b > 0x7e || b < 0x20) out += `\\${b.toString(16).padStart(2, "0").toUpperCase()}`;
    else if (',+"\\<>;'.includes(ch)) out += `\\${ch}`;
    else if (i === 0 && (ch === "#" || ch === " ")) out += `\\${ch}`;
    else if (i === bytes.length - 1 && ch === " ") out += `\\${ch}`;
    else out += ch;
  }
  return out;
}

/**
 * The subject of a DER certificate as `openssl x509 -noout -subject -nameopt
 * RFC2253` prints it: the RDNs last first, `,` between them, `+` inside a
 * multi-valued one.
 */
export function subjectRfc2253(der: Uint8Array): string {
  const cert = tlv(der, 0);
  const [tbs] = children(der, cert);
  const fields = children(der, tbs);
  // [0] version is optional; then serial, signature, issuer, validity, subject.
  const subject = fields[fields[0].tag === 0xa0 ? 5 : 4];
  const entries: string[][] = [];
  for (const rdn of children(der, subject)) {
    const parts: string[] = [];
    for (const atv of children(der, rdn)) {
      const [type, value] = children(der, atv);
      const oid = oidText(der, type);
      const name = SHORT_NAMES[oid];
      const points = name === undefined ? undefined : codePoints(der, value);
      parts.push(
        `${name ?? oid}=${
          points === undefined
            ? `#${hex(der.subarray(value.start, value.end))}`
            : escapeValue(points)
        }`,
      );
    }
    entries.push(parts);
  }
  return entries.reverse().map((parts) => parts.reverse().join("+")).join(",");
}

/** Parses a PEM certificate, naming `what` in the error. */
export function parseCertificate(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new TypeError(`Cannot read ${what}: not a PEM certificate (${(e as Error).message})`, {
      cause: e,
    });
  }
}
