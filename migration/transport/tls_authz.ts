/**
 * The destination's authorization list for TLS clients (`--tls-authz FILE`):
 * which authenticated client identities may send a migration stream.
 *
 * @module
 */

/** Who a TLS peer is, from its verified certificate. */
export interface TlsPeerIdentity {
  /**
   * The subject as `openssl x509 -noout -subject -nameopt RFC2253` prints it
   * (`CN=client-1,O=lab`).
   */
  readonly subject: string;
  /**
   * The SHA-256 fingerprint as `openssl x509 -noout -fingerprint -sha256`
   * prints it (upper-case hex pairs joined by colons).
   */
  readonly fingerprint256: string;
}

const FINGERPRINT = /^(?:sha256 fingerprint=)?((?:[0-9a-f]{2}:){31}[0-9a-f]{2})$/i;

/**
 * An authorization list: client identities allowed to connect, each a
 * subject or a SHA-256 fingerprint. A client must have passed certificate
 * verification first; the list then decides whether it may migrate.
 *
 * @example Allow one subject and one fingerprint
 * ```ts
 * import { TlsAuthz } from "./tls_authz.ts";
 * const authz = TlsAuthz.parse([
 *   "# the lab's source hosts",
 *   "CN=client-1,O=lab",
 *   "sha256 Fingerprint=" + Array(32).fill("AB").join(":"),
 * ].join("\n"));
 * console.log(authz.allows({ subject: "CN=client-1,O=lab", fingerprint256: "00:11" })); // true
 * console.log(authz.allows({ subject: "CN=client-2,O=lab", fingerprint256: "00:11" })); // false
 * ```
 */
export class TlsAuthz {
  #subjects: Set<string>;
  #fingerprints: Set<string>;
  /** The list, for messages: `the authorization list PATH`. */
  readonly source: string;

  private constructor(subjects: Set<string>, fingerprints: Set<string>, source: string) {
    this.#subjects = subjects;
    this.#fingerprints = fingerprints;
    this.source = source;
  }

  /**
   * Parses a list: one identity a line, either a subject as `openssl x509
   * -noout -subject -nameopt RFC2253` prints it (`CN=client-1,O=lab`, with or
   * without the leading `subject=`) or a SHA-256 fingerprint as `openssl x509
   * -noout -fingerprint -sha256` prints it (with or without `sha256
   * Fingerprint=`; any case). A line whose first non-blank character is `#`
   * is a comment, and so is the rest of a line from a blank followed by `#`.
   * Subjects are compared exactly.
   *
   * @param text The list.
   * @param path The file it came from, for messages.
   * @returns The list.
   * @throws {TypeError} Naming the line, for a line that is neither; or if
   *   the list names nobody (every client would be refused).
   */
  static parse(text: string, path?: string): TlsAuthz {
    const source = path === undefined ? "the authorization list" : `the authorization list ${path}`;
    const subjects = new Set<string>();
    const fingerprints = new Set<string>();
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].replace(/(^|\s)#.*$/, "").trim();
      if (line === "") continue;
      const fp = FINGERPRINT.exec(line);
      if (fp) {
        fingerprints.add(fp[1].toUpperCase());
        continue;
      }
      const subject = line.replace(/^subject=\s*/, "");
      if (!/^[A-Za-z][A-Za-z0-9-]*=|^[0-9]+(\.[0-9]+)+=/.test(subject)) {
        throw new TypeError(
          `Cannot read ${source}, line ${i + 1}: expected a subject such as CN=client-1,O=lab ` +
            `or a SHA-256 fingerprint such as AB:CD:...; got "${line.slice(0, 80)}"`,
        );
      }
      subjects.add(subject);
    }
    if (subjects.size + fingerprints.size === 0) {
      throw new TypeError(`Cannot use ${source}: it names no client, so every client is refused`);
    }
    return new TlsAuthz(subjects, fingerprints, source);
  }

  /**
   * Reads and parses a list file.
   *
   * @param path The file.
   * @returns The list.
   * @throws {Deno.errors.NotFound} And other read errors, naming the path.
   * @throws {TypeError} As {@linkcode TlsAuthz.parse} does.
   */
  static load(path: string): TlsAuthz {
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (e) {
      const err = e as Error;
      const Kind = err.constructor as new (m: string, o?: ErrorOptions) => Error;
      throw new Kind(`Cannot read the authorization list ${path}: ${err.message}`, { cause: e });
    }
    return TlsAuthz.parse(text, path);
  }

  /** How many identities the list names. */
  get size(): number {
    return this.#subjects.size + this.#fingerprints.size;
  }

  /**
   * Whether the list names this (already verified) identity.
   *
   * @param identity The client's subject and fingerprint.
   * @returns True when its subject or its fingerprint is listed.
   */
  allows(identity: TlsPeerIdentity): boolean {
    return this.#subjects.has(identity.subject) ||
      this.#fingerprints.has(identity.fingerprint256.toUpperCase());
  }
}
