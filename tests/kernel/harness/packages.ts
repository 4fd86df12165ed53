/**
 * Installs the Debian packages the guest needs, or says how to.
 *
 * @module
 */

import { exec, HarnessError, type Progress, which } from "./exec.ts";

/** A Debian package and a file that shows it is installed. */
export interface Requirement {
  /** The package name. */
  pkg: string;
  /** A program (on PATH) or absolute path the package provides. */
  provides: string;
}

/** What the guest needs on the host. */
export const REQUIREMENTS: readonly Requirement[] = [
  { pkg: "qemu-system-x86", provides: "qemu-system-x86_64" },
  { pkg: "busybox-static", provides: "/bin/busybox" },
  { pkg: "cpio", provides: "cpio" },
  { pkg: "kmod", provides: "depmod" },
];

const APT_ENV = { DEBIAN_FRONTEND: "noninteractive" };

/** Runs `apt-get update` at most once per harness run. */
export class Apt {
  #updated = false;
  #progress: Progress;

  /**
   * Creates the state for one run.
   *
   * @param progress Where phase lines go.
   */
  constructor(progress: Progress) {
    this.#progress = progress;
  }

  /** Whether this run has already refreshed the package lists. */
  get updated(): boolean {
    return this.#updated;
  }

  /**
   * Refreshes the package lists, once.
   *
   * @throws {HarnessError} When apt-get fails or times out.
   */
  async update(): Promise<void> {
    if (this.#updated) return;
    this.#progress.step("apt-get update");
    await exec(["apt-get", "update"], { timeoutMs: 300_000, env: APT_ENV });
    this.#updated = true;
  }
}

/** Whether this process runs as root. */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

async function installed(req: Requirement): Promise<boolean> {
  if (which("dpkg-query")) {
    const r = await exec(["dpkg-query", "-W", "-f=${db:Status-Status}", req.pkg], {
      timeoutMs: 30_000,
      allowFailure: true,
    });
    return r.code === 0 && new TextDecoder().decode(r.stdout).trim() === "installed";
  }
  if (req.provides.startsWith("/")) {
    try {
      return Deno.statSync(req.provides).isFile;
    } catch {
      return false;
    }
  }
  return which(req.provides) !== undefined;
}

/**
 * Installs whatever of {@linkcode REQUIREMENTS} is missing.
 *
 * @param apt The run's apt-get state.
 * @param progress Where phase lines go.
 * @throws {HarnessError} When something is missing and this is not root, or apt-get fails.
 */
export async function ensurePackages(apt: Apt, progress: Progress): Promise<void> {
  const missing: string[] = [];
  for (const req of REQUIREMENTS) {
    if (!(await installed(req))) missing.push(req.pkg);
  }
  if (missing.length === 0) return;
  const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (!isRoot() || !which("apt-get")) {
    throw new HarnessError(
      `Missing packages: ${
        missing.join(", ")
      }; install them with: sudo apt-get update && sudo ${command}`,
    );
  }
  progress.step(`installing ${missing.join(" ")}`);
  await apt.update();
  const install = ["apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y"];
  await exec([...install, "--no-install-recommends", ...missing], {
    timeoutMs: 900_000,
    env: APT_ENV,
  });
  for (const req of REQUIREMENTS) {
    if (missing.includes(req.pkg) && !(await installed(req))) {
      throw new HarnessError(
        `Cannot install ${req.pkg}: apt-get reported success but it is absent`,
      );
    }
  }
}
