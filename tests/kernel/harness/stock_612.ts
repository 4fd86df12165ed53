/**
 * Debian's stock 6.12 kernel from bookworm-backports
 * (`linux-image-6.12.N+deb12-amd64`, built without `CONFIG_IOMMUFD_DRIVER`),
 * its headers and kbuild (`linux-headers-…-amd64`, `linux-headers-…-common`,
 * `linux-kbuild-…`, to build test modules against), and
 * `samples/vfio-mdev/mtty.c` of the same source version: fetched through the
 * private apt dir and unpacked, not installed, into
 * `${XDG_CACHE_HOME:-$HOME/.cache}/deno-vmm/stock-6.12/`, keyed by the
 * release and the package version. A warm run reads the cache only.
 *
 * @module
 */

import { PrivateApt, systemArchive } from "./apt_mirror.ts";
import { cachedSourceTree, cacheRoot, safeName, SOURCE_PACKAGE } from "./custom_kernel.ts";
import { exec, exists, HarnessError, type Progress, withDirLock } from "./exec.ts";
import type { Kernel } from "./kernel.ts";
import type { ModuleTree } from "./test_modules.ts";

/** Bump when the way the cache dir is laid out changes. */
const FORMAT = 1;
const READY = "deno-vmm-ready.json";
const RELEASE = /^linux-image-(6\.12\.(\d+)\+deb12-amd64)$/;
/** The mdev sample, in the source tree. */
export const MTTY_SOURCE = "samples/vfio-mdev/mtty.c";

/** The stock 6.12 kernel, unpacked, with the tree its modules are built against. */
export interface Stock612Kernel extends Kernel, ModuleTree {
  /** The Debian package version, such as `6.12.95-1~bpo12+1` (the source's too). */
  packageVersion: string;
  /** `samples/vfio-mdev/mtty.c` of that source version. */
  mttySource: string;
  /** Seconds the fetch took, when this run fetched it. */
  fetchedInSeconds?: number;
}

interface Ready {
  format: number;
  release: string;
  packageVersion: string;
}

function kernelAt(dir: string, ready: Ready, fetchedInSeconds?: number): Stock612Kernel {
  return {
    version: ready.release,
    vmlinuz: `${dir}/vmlinuz`,
    modulesDir: `${dir}/lib/modules/${ready.release}`,
    buildDir: `${dir}/headers/usr/src/linux-headers-${ready.release}`,
    // The headers ship a BTF-only vmlinux; module BTF would need pahole and is not needed.
    makeArgs: ["CONFIG_DEBUG_INFO_BTF_MODULES="],
    packageVersion: ready.packageVersion,
    mttySource: `${dir}/src/mtty.c`,
    fetchedInSeconds,
  };
}

function readReady(dir: string): Ready | undefined {
  try {
    const r = JSON.parse(Deno.readTextFileSync(`${dir}/${READY}`));
    return r.format === FORMAT ? r : undefined;
  } catch {
    return undefined;
  }
}

function minor(release: string): number {
  return Number(/^6\.12\.(\d+)\+/.exec(release)?.[1] ?? -1);
}

/** The newest complete kernel in the cache. */
function cached(root: string): Stock612Kernel | undefined {
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return undefined;
  }
  // A dir being unpacked is `kernel-….tmp-<pid>` until its last rename.
  const found = entries
    .filter((e) => e.isDirectory && e.name.startsWith("kernel-") && !e.name.includes(".tmp-"))
    .map((e) => ({ dir: `${root}/${e.name}`, ready: readReady(`${root}/${e.name}`) }))
    .filter((k): k is { dir: string; ready: Ready } => k.ready !== undefined)
    .sort((a, b) => minor(b.ready.release) - minor(a.ready.release));
  return found.length === 0 ? undefined : kernelAt(found[0].dir, found[0].ready);
}

/** Removes half-unpacked dirs whose process is gone. */
function removeStale(root: string): void {
  for (const e of Deno.readDirSync(root)) {
    const m = /(?:\.tmp|^download)-(\d+)$/.exec(e.name);
    if (m && !exists(`/proc/${m[1]}`)) Deno.removeSync(`${root}/${e.name}`, { recursive: true });
  }
}

/** The packages of one release: the image, its headers, the common headers, kbuild. */
export function packagesOf(release: string): {
  image: string;
  headers: string;
  common: string;
  kbuild: string;
} {
  const base = release.replace(/-amd64$/, "");
  return {
    image: `linux-image-${release}`,
    headers: `linux-headers-${release}`,
    common: `linux-headers-${base}-common`,
    kbuild: `linux-kbuild-${base}`,
  };
}

/**
 * Points the arch headers' Makefile, which includes the common headers by
 * their installed path (`include /usr/src/linux-headers-…-common/Makefile`),
 * at the common headers in the cache.
 *
 * @param makefile The text of `linux-headers-<release>/Makefile`.
 * @param headersRoot Where the header packages were unpacked.
 * @returns The new text.
 * @throws {HarnessError} When the Makefile has no such include.
 */
export function relocateHeadersMakefile(makefile: string, headersRoot: string): string {
  const include = /^include \/usr\/src\/(linux-headers-[^/\s]+-common)\/Makefile$/m;
  if (!include.test(makefile)) {
    throw new HarnessError(
      "Cannot use the 6.12 headers: their Makefile does not include the common headers",
    );
  }
  return makefile.replace(include, `include ${headersRoot}/usr/src/$1/Makefile`);
}

/** Picks the newest release the lists have an image and headers for. */
async function newestRelease(apt: PrivateApt): Promise<{ release: string; version: string }> {
  const releases = (await apt.search("^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64$"))
    .map((n) => RELEASE.exec(n)?.[1]).filter((r): r is string => r !== undefined)
    .sort((a, b) => minor(b) - minor(a));
  for (const release of releases) {
    const p = packagesOf(release);
    const version = await apt.candidate(p.image);
    if (version === undefined) continue;
    const others = await Promise.all([p.headers, p.common, p.kbuild].map((n) => apt.candidate(n)));
    if (others.every((v) => v === version)) return { release, version };
  }
  throw new HarnessError(
    "Cannot find a linux-image-6.12.N+deb12-amd64 with its headers and kbuild at one version " +
      "in bookworm-backports through the system's Debian mirror",
  );
}

/** Puts `mtty.c` of the source version in `dest`, from the cached tree or the source package. */
async function fetchMtty(
  apt: PrivateApt,
  version: string,
  dest: string,
  dl: string,
  progress: Progress,
): Promise<void> {
  const tree = cachedSourceTree(version);
  if (tree !== undefined) {
    await Deno.copyFile(`${tree}/${MTTY_SOURCE}`, dest);
    return;
  }
  const deb = await apt.download(SOURCE_PACKAGE, version, dl);
  progress.step(`extracting ${MTTY_SOURCE} from ${deb.split("/").pop()}`);
  const unpacked = `${dl}/source`;
  await exec(["dpkg-deb", "-x", deb, unpacked], { timeoutMs: 600_000 });
  const tarball = [...Deno.readDirSync(`${unpacked}/usr/src`)].map((e) => e.name)
    .find((n) => /^linux-source-.*\.tar\.xz$/.test(n));
  if (tarball === undefined) throw new HarnessError(`Cannot find the source tarball in ${deb}`);
  const { stdout } = await exec([
    "tar",
    "-xJOf",
    `${unpacked}/usr/src/${tarball}`,
    "--wildcards",
    `*/${MTTY_SOURCE}`,
  ], { timeoutMs: 600_000 });
  if (stdout.byteLength === 0) throw new HarnessError(`Cannot find ${MTTY_SOURCE} in ${tarball}`);
  await Deno.writeFile(dest, stdout);
  await Deno.remove(deb);
}

/** Unpacks the image's bzImage and modules into `dir`, and runs depmod. */
async function fetchImage(
  apt: PrivateApt,
  pick: { release: string; version: string },
  dir: string,
  dl: string,
  progress: Progress,
): Promise<void> {
  const { release, version } = pick;
  const pkg = packagesOf(release).image;
  const deb = await apt.download(pkg, version, dl);
  progress.step(`unpacking ${pkg}`);
  const image = `${dir}/image`;
  await exec(["dpkg-deb", "-x", deb, image], { timeoutMs: 300_000 });
  await Deno.remove(deb);
  const vmlinuz = `${image}/boot/vmlinuz-${release}`;
  const modules = `${image}/lib/modules/${release}`;
  if (!exists(vmlinuz) || !exists(modules)) {
    throw new HarnessError(`Cannot find the kernel or its modules in ${pkg}`);
  }
  await Deno.rename(vmlinuz, `${dir}/vmlinuz`);
  await Deno.mkdir(`${dir}/lib/modules`, { recursive: true });
  await Deno.rename(modules, `${dir}/lib/modules/${release}`);
  await Deno.remove(image, { recursive: true });
  await exec(["depmod", "-b", dir, release], { timeoutMs: 120_000 });
}

/**
 * Returns the stock 6.12 kernel, fetching it when the cache has none: one
 * `apt-get update` of the private backports lists, the newest
 * `linux-image-6.12.N+deb12-amd64` whose headers and kbuild have the same
 * version, `dpkg-deb -x` of the four packages, `depmod -b`, and `mtty.c` of
 * the same source version (from the test kernel's unpacked tree when the
 * cache has it, else from `linux-source-6.12`). Under the cache dir's lock.
 *
 * @param options The phase printer.
 * @returns The kernel.
 * @throws {HarnessError} When apt, dpkg-deb or depmod fails.
 */
export async function ensureStock612(options: { progress: Progress }): Promise<Stock612Kernel> {
  const { progress } = options;
  const root = `${cacheRoot()}/stock-6.12`;
  const warm = cached(root);
  if (warm !== undefined) return warm;
  return await withDirLock(root, async () => {
    const other = cached(root);
    if (other !== undefined) return other;
    removeStale(root);
    const started = performance.now();
    const apt = new PrivateApt(`${cacheRoot()}/apt`, {
      suite: "bookworm-backports",
      archive: systemArchive("bookworm"),
      progress,
    });
    await apt.update();
    const pick = await newestRelease(apt);
    const final = `${root}/kernel-${safeName(pick.release)}-${safeName(pick.version)}`;
    const tmp = `${final}.tmp-${Deno.pid}`;
    const dl = `${root}/download-${Deno.pid}`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.mkdir(dl, { recursive: true });
    await Deno.mkdir(`${tmp}/src`, { recursive: true });
    try {
      await fetchImage(apt, pick, tmp, dl, progress);
      await headers(apt, pick, tmp, final, dl);
      await fetchMtty(apt, pick.version, `${tmp}/src/mtty.c`, dl, progress);
      const ready: Ready = { format: FORMAT, release: pick.release, packageVersion: pick.version };
      await Deno.writeTextFile(`${tmp}/${READY}`, JSON.stringify(ready) + "\n");
      await Deno.remove(final, { recursive: true }).catch(() => {});
      await Deno.rename(tmp, final);
      const seconds = (performance.now() - started) / 1000;
      progress.step(`fetched linux ${pick.release} (${pick.version}) in ${seconds.toFixed(0)} s`);
      return kernelAt(final, ready, seconds);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      await Deno.remove(dl, { recursive: true }).catch(() => {});
    }
  });
}

/** Unpacks the header packages into `<dir>/headers`, the Makefile pointed at `<final>/headers`. */
async function headers(
  apt: PrivateApt,
  pick: { release: string; version: string },
  dir: string,
  final: string,
  dl: string,
): Promise<void> {
  const p = packagesOf(pick.release);
  for (const pkg of [p.headers, p.common, p.kbuild]) {
    const deb = await apt.download(pkg, pick.version, dl);
    await exec(["dpkg-deb", "-x", deb, `${dir}/headers`], { timeoutMs: 300_000 });
    await Deno.remove(deb);
  }
  const makefile = `${dir}/headers/usr/src/linux-headers-${pick.release}/Makefile`;
  const text = await Deno.readTextFile(makefile).catch(() => {
    throw new HarnessError(`Cannot find the Makefile of ${p.headers}`);
  });
  await Deno.writeTextFile(makefile, relocateHeadersMakefile(text, `${final}/headers`));
}
