/**
 * The 6.12 test kernel: built from Debian's `linux-source-6.12`
 * (bookworm-backports, fetched through a private apt dir) with the config
 * fragment `kernel-6.12.config` merged onto `allnoconfig`, and cached outside
 * the checkout in `${XDG_CACHE_HOME:-$HOME/.cache}/deno-vmm/linux-6.12/`,
 * keyed by the source version and a hash of the fragment, so a machine
 * builds it once. The source and build trees stay in the cache: test modules
 * (`tests/kernel/modules/`) are built against them.
 *
 * @module
 */

import { PrivateApt, systemArchive } from "./apt_mirror.ts";
import { exec, exists, HarnessError, type Progress, which, withDirLock } from "./exec.ts";
import type { Kernel } from "./kernel.ts";
import { type Apt, isRoot } from "./packages.ts";

/** The config fragment merged onto `allnoconfig`. */
export const CONFIG_FRAGMENT: URL = new URL("./kernel-6.12.config", import.meta.url);
/** The Debian package with the source. */
export const SOURCE_PACKAGE = "linux-source-6.12";
/** Bump when the way the kernel is built changes (not the fragment: it is hashed). */
const FORMAT = 1;
const READY = "deno-vmm-ready.json";
const UNPACKED = ".deno-vmm-unpacked";

/** A built test kernel and the trees modules are built against. */
export interface CustomKernel extends Kernel {
  /** The Debian source version, such as `6.12.95-1~bpo12+1`. */
  sourceVersion: string;
  /** The unpacked source tree. */
  srcDir: string;
  /** The `O=` build tree (`.config`, `Module.symvers`). */
  buildDir: string;
  /** Seconds the build took, when this run built it. */
  builtInSeconds?: number;
}

/** A host tool the build needs, and the package that has it. */
interface BuildDep {
  pkg: string;
  /** A program on PATH, or an absolute path. */
  provides: string;
}

/** What `make` needs for this config: objtool wants libelf, kconfig flex and bison. */
export const BUILD_DEPS: readonly BuildDep[] = [
  { pkg: "make", provides: "make" },
  { pkg: "gcc", provides: "gcc" },
  { pkg: "bc", provides: "bc" },
  { pkg: "flex", provides: "flex" },
  { pkg: "bison", provides: "bison" },
  { pkg: "libelf-dev", provides: "/usr/include/gelf.h" },
  { pkg: "libssl-dev", provides: "/usr/include/openssl/ssl.h" },
  { pkg: "xz-utils", provides: "xz" },
  { pkg: "dpkg-dev", provides: "dpkg-deb" },
];

/**
 * The cache root outside the checkout: `$XDG_CACHE_HOME/deno-vmm` or `~/.cache/deno-vmm`.
 *
 * @returns The dir (not created).
 * @throws {HarnessError} When neither `XDG_CACHE_HOME` nor `HOME` is set.
 */
export function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/deno-vmm`;
  const home = Deno.env.get("HOME");
  if (!home) {
    throw new HarnessError("Cannot place the kernel cache: neither XDG_CACHE_HOME nor HOME is set");
  }
  return `${home}/.cache/deno-vmm`;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `CONFIG_X=y` lines of a fragment. */
export function requiredOptions(fragment: string): string[] {
  return fragment.split("\n").map((l) => l.trim()).filter((l) => /^CONFIG_\w+=y$/.test(l));
}

/**
 * A version as a file-name part (`~` and the like become `_`).
 *
 * @param version A Debian version.
 * @returns The name part.
 */
export function safeName(version: string): string {
  return version.replace(/[^\w.+-]/g, "_");
}

/**
 * The `linux-source-6.12` tree of a source version, when a test-kernel build
 * has unpacked it in the cache (complete: its marker is written last).
 *
 * @param version The Debian source version, such as `6.12.95-1~bpo12+1`.
 * @returns The tree, or undefined.
 */
export function cachedSourceTree(version: string): string | undefined {
  const dir = `${cacheRoot()}/linux-6.12/src-${safeName(version)}`;
  return exists(`${dir}/${UNPACKED}`) ? dir : undefined;
}

/**
 * Installs the missing build tools, or says how to.
 *
 * @param apt The run's system apt state.
 * @param progress Phase printer.
 * @throws {HarnessError} When tools are missing and this is not root.
 */
export async function ensureBuildDeps(apt: Apt, progress: Progress): Promise<void> {
  const missing = BUILD_DEPS.filter((d) =>
    d.provides.startsWith("/") ? !exists(d.provides) : which(d.provides) === undefined
  ).map((d) => d.pkg);
  if (missing.length === 0) return;
  const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (!isRoot() || !which("apt-get")) {
    throw new HarnessError(
      `Cannot build the 6.12 test kernel: missing ${missing.join(", ")}; ` +
        `install them with: sudo apt-get update && sudo ${command}`,
    );
  }
  progress.step(`installing the kernel build tools: ${missing.join(" ")}`);
  await apt.update();
  const install = ["apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y"];
  await exec([...install, "--no-install-recommends", ...missing], {
    timeoutMs: 900_000,
    env: { DEBIAN_FRONTEND: "noninteractive" },
  });
}

function readReady(dir: string): { sourceVersion: string; release: string } | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/${READY}`));
  } catch {
    return undefined;
  }
}

function kernelFrom(root: string, name: string, builtInSeconds?: number): CustomKernel | undefined {
  const buildDir = `${root}/${name}`;
  const ready = readReady(buildDir);
  if (ready === undefined) return undefined;
  return {
    version: ready.release,
    vmlinuz: `${buildDir}/arch/x86/boot/bzImage`,
    sourceVersion: ready.sourceVersion,
    srcDir: `${root}/src-${safeName(ready.sourceVersion)}`,
    buildDir,
    builtInSeconds,
  };
}

async function unpack(deb: string, srcDir: string, progress: Progress): Promise<void> {
  if (exists(`${srcDir}/${UNPACKED}`)) return;
  progress.step(`unpacking ${deb.split("/").pop()}`);
  await Deno.remove(srcDir, { recursive: true }).catch(() => {});
  const tmp = `${srcDir}.deb-${Deno.pid}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await exec(["dpkg-deb", "-x", deb, tmp], { timeoutMs: 600_000 });
    const tarball = [...Deno.readDirSync(`${tmp}/usr/src`)].map((e) => e.name)
      .find((n) => /^linux-source-.*\.tar\.xz$/.test(n));
    if (tarball === undefined) throw new HarnessError(`Cannot find the source tarball in ${deb}`);
    await Deno.mkdir(srcDir, { recursive: true });
    await exec(["tar", "-xJf", `${tmp}/usr/src/${tarball}`, "-C", srcDir, "--strip-components=1"], {
      timeoutMs: 900_000,
    });
    if (!exists(`${srcDir}/Makefile`)) {
      throw new HarnessError(`Cannot find a kernel tree in ${deb}`);
    }
    await Deno.writeTextFile(`${srcDir}/${UNPACKED}`, `${deb}\n`);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

async function configure(srcDir: string, buildDir: string, fragment: string): Promise<void> {
  const frag = `${buildDir}/deno-vmm.config`;
  await Deno.writeTextFile(frag, fragment);
  await exec([
    "make",
    "-s",
    "-C",
    srcDir,
    `O=${buildDir}`,
    `KCONFIG_ALLCONFIG=${frag}`,
    "allnoconfig",
  ], {
    timeoutMs: 300_000,
  });
  const config = new Set((await Deno.readTextFile(`${buildDir}/.config`)).split("\n"));
  const lost = requiredOptions(fragment).filter((l) => !config.has(l));
  if (lost.length > 0) {
    throw new HarnessError(
      `Cannot configure the 6.12 test kernel: olddefconfig dropped ${lost.join(" ")} ` +
        `(a dependency is missing from ${CONFIG_FRAGMENT.pathname})`,
    );
  }
}

/**
 * Returns the 6.12 test kernel, building it when the cache has none for the
 * current fragment. Without a cached build, resolves `linux-source-6.12`'s
 * candidate through the private apt dir (one `apt-get update` of the
 * backports lists), downloads and unpacks it, configures, and builds
 * `bzImage` and `modules` (for `Module.symvers`) with `nice -n 19 make -jN`.
 *
 * @param options The system apt state (build tools) and the phase printer.
 * @returns The kernel.
 * @throws {HarnessError} When a tool is missing, apt or make fails.
 */
export async function ensureCustomKernel(
  options: { apt: Apt; progress: Progress },
): Promise<CustomKernel> {
  const { progress } = options;
  const root = `${cacheRoot()}/linux-6.12`;
  const fragment = await Deno.readTextFile(CONFIG_FRAGMENT);
  const key = (await sha256(JSON.stringify({ FORMAT, fragment }))).slice(0, 16);
  return await withDirLock(root, async () => {
    // Warm: any build of this fragment, newest source first (no network).
    const builds = [...Deno.readDirSync(root)]
      .filter((e) => e.isDirectory && e.name.startsWith("build-") && e.name.endsWith(`-${key}`))
      .map((e) => kernelFrom(root, e.name))
      .filter((k): k is CustomKernel =>
        k !== undefined && exists(k.vmlinuz) && exists(`${k.srcDir}/${UNPACKED}`)
      );
    builds.sort((a, b) => (a.sourceVersion < b.sourceVersion ? 1 : -1));
    if (builds.length > 0) return builds[0];

    await ensureBuildDeps(options.apt, progress);
    const apt = new PrivateApt(`${cacheRoot()}/apt`, {
      suite: "bookworm-backports",
      archive: systemArchive("bookworm"),
      progress,
    });
    await apt.update();
    const version = await apt.candidate(SOURCE_PACKAGE);
    if (version === undefined) {
      throw new HarnessError(
        `Cannot find ${SOURCE_PACKAGE} in bookworm-backports through the system's Debian mirror`,
      );
    }
    const srcDir = `${root}/src-${safeName(version)}`;
    if (!exists(`${srcDir}/${UNPACKED}`)) {
      const dl = `${root}/download-${Deno.pid}`;
      await Deno.mkdir(dl, { recursive: true });
      try {
        await unpack(await apt.download(SOURCE_PACKAGE, version, dl), srcDir, progress);
      } finally {
        await Deno.remove(dl, { recursive: true }).catch(() => {});
      }
    }
    const name = `build-${safeName(version)}-${key}`;
    const buildDir = `${root}/${name}`;
    await Deno.remove(buildDir, { recursive: true }).catch(() => {});
    await Deno.mkdir(buildDir, { recursive: true });
    progress.step(
      `configuring linux ${version} (allnoconfig + ${CONFIG_FRAGMENT.pathname.split("/").pop()})`,
    );
    await configure(srcDir, buildDir, fragment);
    const jobs = Math.max(1, navigator.hardwareConcurrency || 1);
    progress.step(`building linux ${version} with nice -n 19 make -j${jobs} (cold: minutes)`);
    const started = performance.now();
    await exec(
      [
        "nice",
        "-n",
        "19",
        "make",
        "-s",
        "-C",
        srcDir,
        `O=${buildDir}`,
        `-j${jobs}`,
        "bzImage",
        "modules",
      ],
      { timeoutMs: 5_400_000, inherit: true },
    );
    const seconds = (performance.now() - started) / 1000;
    const release = (await Deno.readTextFile(`${buildDir}/include/config/kernel.release`)).trim();
    progress.step(`built linux ${release} in ${seconds.toFixed(0)} s`);
    await Deno.writeTextFile(
      `${buildDir}/${READY}`,
      JSON.stringify({ sourceVersion: version, release, seconds: Math.round(seconds) }) + "\n",
    );
    return kernelFrom(root, name, seconds)!;
  });
}
