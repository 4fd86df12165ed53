/**
 * Fetches and caches a Debian 6.1 kernel and its modules without installing it:
 * `apt-get download`, `dpkg-deb -x`, `depmod -b`.
 *
 * @module
 */

import { exec, execText, exists, HarnessError, type Progress } from "./exec.ts";
import { type Apt, isRoot } from "./packages.ts";

/** An unpacked kernel in the cache. */
export interface Kernel {
  /** The release, such as `6.1.0-56-amd64`. */
  version: string;
  /** The bzImage. */
  vmlinuz: string;
  /** `lib/modules/<version>`, with `modules.dep`; absent for a kernel with everything built in. */
  modulesDir?: string;
}

const RELEASE = /^6\.1\.0-(\d+)-amd64$/;
const PACKAGE = /^linux-image-(6\.1\.0-\d+-amd64)$/;
const DEB = /^linux-image-(6\.1\.0-\d+-amd64)_[^_]+_amd64\.deb$/;
const APT_ARCHIVES = "/var/cache/apt/archives";
const READY = "ready";

function abi(release: string): number {
  return Number(RELEASE.exec(release)?.[1] ?? -1);
}

function newest(releases: Iterable<string>): string | undefined {
  return [...releases].filter((r) => RELEASE.test(r)).sort((a, b) => abi(b) - abi(a))[0];
}

function kernelAt(dir: string, version: string): Kernel {
  return {
    version,
    vmlinuz: `${dir}/vmlinuz`,
    modulesDir: `${dir}/lib/modules/${version}`,
  };
}

function listDir(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return [];
  }
}

function cachedReleases(cacheDir: string): string[] {
  return listDir(cacheDir)
    .filter((n) => n.startsWith("kernel-") && exists(`${cacheDir}/${n}/${READY}`))
    .map((n) => n.slice("kernel-".length));
}

function archivedDebs(): Map<string, string> {
  const debs = new Map<string, string>();
  for (const name of listDir(APT_ARCHIVES)) {
    const m = DEB.exec(name);
    if (m) debs.set(m[1], `${APT_ARCHIVES}/${name}`);
  }
  return debs;
}

async function searchReleases(): Promise<string[]> {
  const text = await execText(
    ["apt-cache", "search", "--names-only", "^linux-image-6\\.1\\.0-[0-9]+-amd64$"],
    { timeoutMs: 60_000 },
  );
  return text.split("\n").map((l) => PACKAGE.exec(l.split(" ")[0])?.[1]).filter((r) =>
    r !== undefined
  );
}

async function download(release: string, dir: string): Promise<string> {
  const sandbox = isRoot() ? ["-o", "APT::Sandbox::User=root"] : [];
  await exec(["apt-get", ...sandbox, "download", `linux-image-${release}`], {
    cwd: dir,
    timeoutMs: 600_000,
  });
  const deb = listDir(dir).find((n) => DEB.exec(n)?.[1] === release);
  if (!deb) throw new HarnessError(`Cannot find the downloaded linux-image-${release} package`);
  return `${dir}/${deb}`;
}

/** Removes half-built kernel dirs whose builder process is gone. */
function removeStale(cacheDir: string): void {
  for (const name of listDir(cacheDir)) {
    const m = /\.tmp-(\d+)(?:-|$)/.exec(name);
    if (m && !exists(`/proc/${m[1]}`)) {
      Deno.removeSync(`${cacheDir}/${name}`, { recursive: true });
    }
  }
}

async function unpack(deb: string, release: string, cacheDir: string): Promise<Kernel> {
  const final = `${cacheDir}/kernel-${release}`;
  const tmp = `${final}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  try {
    const root = `${tmp}/root`;
    await Deno.mkdir(root, { recursive: true });
    await exec(["dpkg-deb", "-x", deb, root], { timeoutMs: 300_000 });
    const vmlinuz = `${root}/boot/vmlinuz-${release}`;
    const modules = `${root}/lib/modules/${release}`;
    if (!exists(vmlinuz) || !exists(modules)) {
      throw new HarnessError(`Cannot find the kernel or its modules in ${deb}`);
    }
    await Deno.rename(vmlinuz, `${tmp}/vmlinuz`);
    await Deno.mkdir(`${tmp}/lib/modules`, { recursive: true });
    await Deno.rename(modules, `${tmp}/lib/modules/${release}`);
    await Deno.remove(root, { recursive: true });
    await exec(["depmod", "-b", tmp, release], { timeoutMs: 120_000 });
    await Deno.writeTextFile(`${tmp}/${READY}`, `${deb}\n`);
    await Deno.remove(final, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, final);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return kernelAt(final, release);
}

/**
 * Returns a cached kernel, fetching one when the cache has none. Prefers, in
 * order: the newest kernel already unpacked in `cacheDir`, the newest
 * `linux-image-6.1.0-NN-amd64` .deb in apt's archive cache, the newest that
 * `apt-cache search` lists.
 *
 * @param cacheDir The harness cache.
 * @param options The run's apt-get state and progress printer.
 * @returns The kernel.
 * @throws {HarnessError} When no kernel can be found or fetched.
 */
export async function ensureKernel(
  cacheDir: string,
  options: { apt: Apt; progress: Progress },
): Promise<Kernel> {
  const { apt, progress } = options;
  const cached = newest(cachedReleases(cacheDir));
  if (cached) return kernelAt(`${cacheDir}/kernel-${cached}`, cached);

  removeStale(cacheDir);
  const archived = archivedDebs();
  const local = newest(archived.keys());
  if (local) {
    progress.step(`unpacking linux-image-${local} from the apt cache`);
    return await unpack(archived.get(local)!, local, cacheDir);
  }

  let releases = await searchReleases();
  if (releases.length === 0 && isRoot()) {
    await apt.update();
    releases = await searchReleases();
  }
  let release = newest(releases);
  if (!release) {
    throw new HarnessError(
      "Cannot find a linux-image-6.1.0-NN-amd64 package with apt-cache search; run apt-get update",
    );
  }
  const dir = await Deno.makeTempDir({ dir: cacheDir, prefix: `download.tmp-${Deno.pid}-` });
  try {
    progress.step(`fetching linux-image-${release}`);
    let deb: string;
    try {
      deb = await download(release, dir);
    } catch (err) {
      // Stale package lists name a version the mirror no longer has.
      if (apt.updated || !isRoot()) throw err;
      await apt.update();
      release = newest(await searchReleases()) ?? release;
      progress.step(`fetching linux-image-${release}`);
      deb = await download(release, dir);
    }
    progress.step(`unpacking linux-image-${release}`);
    return await unpack(deb, release, cacheDir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
