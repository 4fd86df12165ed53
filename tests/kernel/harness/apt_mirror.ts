/**
 * A private apt directory for one extra suite (bookworm-backports), reached
 * through the Debian mirror that this machine's own apt sources already
 * name. The system's sources, lists and archives are never touched: every
 * apt call gets `-o Dir::Etc::SourceList=/dev/null`,
 * `-o Dir::Etc::SourceParts=<dir>/sources.list.d`,
 * `-o Dir::State::Lists=<dir>/lists` and `-o Dir::Cache=<dir>/cache`.
 * No mirror host is written in this file: it is read from
 * `/etc/apt/sources.list.d/*.sources` or `/etc/apt/sources.list` at run time.
 *
 * @module
 */

import { exec, execText, HarnessError, type Progress, withDirLock } from "./exec.ts";
import { isRoot } from "./packages.ts";

/** A `deb` source of the system's apt configuration. */
export interface AptSource {
  /** The archive URI, such as the mirror's `/debian` URL. */
  uri: string;
  /** The suites (codenames) it serves. */
  suites: string[];
  /** The components. */
  components: string[];
  /** The keyring that signs it, when the entry names one. */
  signedBy?: string;
}

/**
 * Parses deb822 `.sources` text into its `deb` entries.
 *
 * @param text The file's text.
 * @returns The entries of type `deb` that are not disabled.
 *
 * @example
 * ```ts ignore
 * parseDeb822("Types: deb\nURIs: http://mirror/debian\nSuites: bookworm\nComponents: main\n");
 * ```
 */
export function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      const m = /^([\w-]+):\s*(.*)$/.exec(line);
      if (m) {
        last = m[1].toLowerCase();
        fields.set(last, m[2].trim());
      } else if (/^\s+\S/.test(line) && last !== undefined) {
        fields.set(last, `${fields.get(last)} ${line.trim()}`);
      }
    }
    const words = (k: string) => (fields.get(k) ?? "").split(/\s+/).filter(Boolean);
    if (!words("types").includes("deb") || fields.get("enabled")?.toLowerCase() === "no") continue;
    for (const uri of words("uris")) {
      out.push({
        uri: uri.replace(/\/+$/, ""),
        suites: words("suites"),
        components: words("components"),
        signedBy: fields.get("signed-by"),
      });
    }
  }
  return out;
}

/**
 * Parses one-line `sources.list` text into its `deb` entries.
 *
 * @param text The file's text.
 * @returns The `deb` entries.
 */
export function parseSourcesList(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const signedBy = /signed-by=(\S+)/.exec(m[1] ?? "")?.[1];
    out.push({
      uri: m[2].replace(/\/+$/, ""),
      suites: [m[3]],
      components: m[4].split(/\s+/).filter(Boolean),
      signedBy,
    });
  }
  return out;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** This machine's Debian codename, from `/etc/os-release`. */
export function codename(): string {
  const text = readText("/etc/os-release") ?? "";
  const name = /^VERSION_CODENAME=["']?([\w-]+)/m.exec(text)?.[1];
  if (name === undefined) {
    throw new HarnessError(
      "Cannot tell the Debian codename: no VERSION_CODENAME in /etc/os-release",
    );
  }
  return name;
}

/**
 * Finds the system's main Debian archive: the `deb` source that serves the
 * codename itself (not `-security`, not `-updates`) with component `main`.
 *
 * @param name The codename, such as `bookworm`.
 * @param etc The apt configuration dir (default `/etc/apt`).
 * @returns The source.
 * @throws {HarnessError} When the system's sources name no such archive.
 */
export function systemArchive(name: string, etc = "/etc/apt"): AptSource {
  const sources: AptSource[] = [];
  const list = readText(`${etc}/sources.list`);
  if (list !== undefined) sources.push(...parseSourcesList(list));
  let parts: string[] = [];
  try {
    parts = [...Deno.readDirSync(`${etc}/sources.list.d`)].map((e) => e.name).sort();
  } catch {
    // no parts dir
  }
  for (const part of parts) {
    const text = readText(`${etc}/sources.list.d/${part}`) ?? "";
    if (part.endsWith(".sources")) sources.push(...parseDeb822(text));
    else if (part.endsWith(".list")) sources.push(...parseSourcesList(text));
  }
  const found = sources.find((s) => s.suites.includes(name) && s.components.includes("main"));
  if (found === undefined) {
    throw new HarnessError(
      `Cannot find the Debian archive for ${name} in ${etc}/sources.list or ${etc}/sources.list.d/: ` +
        `add a 'deb' source for ${name} main`,
    );
  }
  return found;
}

/** One extra suite fetched through a private apt directory. */
export class PrivateApt {
  readonly #dir: string;
  readonly #progress: Progress;
  readonly #suite: string;
  #updated = false;

  /**
   * Writes the private sources for `<codename>-backports` next to the system's archive.
   *
   * @param dir The private apt dir (created).
   * @param options `suite`: the suite to add; `progress`: phase printer.
   * @throws {HarnessError} When the system's sources name no archive.
   */
  constructor(dir: string, options: { suite: string; archive: AptSource; progress: Progress }) {
    this.#dir = dir;
    this.#progress = options.progress;
    this.#suite = options.suite;
    for (const sub of ["sources.list.d", "lists/partial", "cache/archives/partial"]) {
      Deno.mkdirSync(`${dir}/${sub}`, { recursive: true });
    }
    const stanza = [
      "Types: deb",
      `URIs: ${options.archive.uri}`,
      `Suites: ${options.suite}`,
      "Components: main",
      ...(options.archive.signedBy ? [`Signed-By: ${options.archive.signedBy}`] : []),
      "",
    ].join("\n");
    const path = `${dir}/sources.list.d/deno-vmm.sources`;
    if (readText(path) !== stanza) Deno.writeTextFileSync(path, stanza);
  }

  /** The `-o` options that confine apt to the private dir. */
  get options(): string[] {
    const d = this.#dir;
    return [
      ...["-o", "Dir::Etc::SourceList=/dev/null"],
      ...["-o", `Dir::Etc::SourceParts=${d}/sources.list.d`],
      ...["-o", `Dir::State::Lists=${d}/lists`],
      ...["-o", `Dir::Cache=${d}/cache`],
      // As root apt drops to _apt, which cannot write a private dir under $HOME.
      ...(isRoot() ? ["-o", "APT::Sandbox::User=root"] : []),
    ];
  }

  /**
   * Refreshes the private lists, once per run.
   *
   * @throws {HarnessError} When apt-get fails.
   */
  async update(): Promise<void> {
    if (this.#updated) return;
    this.#progress.step(`apt-get update (private lists for ${this.#suite})`);
    // apt-get fails at once on lists another run is updating: wait for it instead.
    await withDirLock(
      this.#dir,
      () => exec(["apt-get", ...this.options, "update"], { timeoutMs: 300_000 }),
    );
    this.#updated = true;
  }

  /**
   * The candidate version of a package in the private lists.
   *
   * @param pkg The package name.
   * @returns The version, or undefined when the lists do not have it.
   */
  async candidate(pkg: string): Promise<string | undefined> {
    const text = await execText(["apt-cache", ...this.options, "policy", pkg], {
      timeoutMs: 60_000,
      allowFailure: true,
    });
    const v = /^\s*Candidate:\s*(\S+)/m.exec(text)?.[1];
    return v === undefined || v === "(none)" ? undefined : v;
  }

  /**
   * The packages of the private lists whose names match a regular expression
   * (`apt-cache search --names-only`).
   *
   * @param pattern The POSIX regular expression apt matches names against.
   * @returns The package names.
   */
  async search(pattern: string): Promise<string[]> {
    const text = await execText(
      ["apt-cache", ...this.options, "search", "--names-only", pattern],
      { timeoutMs: 60_000, allowFailure: true },
    );
    return text.split("\n").map((l) => l.split(" ")[0]).filter((n) => n !== "");
  }

  /**
   * Downloads a package's .deb into a dir (`apt-get download`).
   *
   * @param pkg The package name.
   * @param version The version.
   * @param dir Where the .deb goes.
   * @returns The .deb's path.
   * @throws {HarnessError} When apt-get fails or leaves no .deb.
   */
  async download(pkg: string, version: string, dir: string): Promise<string> {
    this.#progress.step(`downloading ${pkg} ${version}`);
    await exec(["apt-get", ...this.options, "download", `${pkg}=${version}`], {
      cwd: dir,
      timeoutMs: 1_200_000,
    });
    const deb = [...Deno.readDirSync(dir)].map((e) => e.name).find((n) =>
      n.startsWith(`${pkg}_`) && n.endsWith(".deb")
    );
    if (deb === undefined) throw new HarnessError(`Cannot find the downloaded ${pkg} package`);
    return `${dir}/${deb}`;
  }
}
