/**
 * Builds the guest initramfs: static busybox and its links, `/init`, and the
 * kernel modules the guest loads, in dependency order. The image is cached
 * under a hash of everything that goes into it.
 *
 * @module
 */

import { exec, execText, HarnessError, type Progress } from "./exec.ts";
import type { Kernel } from "./kernel.ts";

/** The modules `/init` loads, in this order; their dependencies come first. */
export const GUEST_MODULES: readonly string[] = [
  "virtio_pci_legacy_dev",
  "virtio_pci_modern_dev",
  "virtio_ring",
  "virtio",
  "virtio_pci",
  "9pnet",
  "9pnet_virtio",
  "netfs",
  "fscache",
  "9p",
  "overlay",
  "vfio",
  "vfio_iommu_type1",
  "vfio_virqfd",
  "irqbypass",
  "vfio-pci-core",
  "vfio-pci",
];

/**
 * The same for Debian's stock 6.12, where the virtio core is built in,
 * fscache is part of netfs and vfio_virqfd of vfio; with mdev, which the
 * test mdev modules need.
 */
export const GUEST_MODULES_6_12: readonly string[] = [
  "9pnet",
  "9pnet_virtio",
  "netfs",
  "9p",
  "overlay",
  "vfio",
  "vfio_iommu_type1",
  "irqbypass",
  "vfio-pci-core",
  "vfio-pci",
  "mdev",
];

/**
 * The KVM vendor modules; `/init` loads the one the CPU has virtualization for
 * (`svm`: kvm_amd, `vmx`: kvm_intel), from `/etc/modules.<name>`, which lists
 * it after its dependencies that {@linkcode GUEST_MODULES} does not load.
 */
export const GUEST_KVM_MODULES: readonly string[] = ["kvm_amd", "kvm_intel"];

/** The static busybox that busybox-static installs. */
export const BUSYBOX = "/bin/busybox";

const INIT_SCRIPT = new URL("./init.sh", import.meta.url);
const FORMAT = 1;
const COMPRESSED = /\.(xz|zst|gz)$/;

function moduleName(path: string): string {
  return path.split("/").pop()!.replace(COMPRESSED, "").replace(/\.ko$/, "").replaceAll("-", "_");
}

/**
 * Orders modules so each one's dependencies load before it, from the text of
 * `modules.dep`.
 *
 * @param modulesDep The text of `modules.dep`.
 * @param wanted Module names (`-` and `_` are the same).
 * @returns Paths relative to the modules dir, in load order, without repeats.
 * @throws {HarnessError} When a module is not in `modules.dep`.
 */
export function resolveModules(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of modulesDep.split("\n")) {
    const [path, rest] = line.split(":");
    if (!rest && !line.includes(":")) continue;
    deps.set(moduleName(path), { path, deps: rest.trim().split(/\s+/).filter(Boolean) });
  }
  const order: string[] = [];
  const seen = new Set<string>();
  function visit(name: string, chain: string[]): void {
    const entry = deps.get(name);
    if (!entry) throw new HarnessError(`Cannot find module ${name} in modules.dep`);
    if (seen.has(name)) return;
    if (chain.includes(name)) {
      throw new HarnessError(`Module dependency cycle: ${chain.join(" > ")}`);
    }
    for (const dep of entry.deps) visit(moduleName(dep), [...chain, name]);
    seen.add(name);
    order.push(entry.path);
  }
  for (const name of wanted) visit(name.replaceAll("-", "_"), []);
  return order;
}

async function sha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Throws unless the ELF file has no program interpreter (is static). */
function assertStatic(path: string, elf: Uint8Array): void {
  const v = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  if (elf.byteLength < 64 || v.getUint32(0) !== 0x7f454c46) {
    throw new HarnessError(`${path} is not an ELF program; install busybox-static`);
  }
  const phoff = Number(v.getBigUint64(0x20, true));
  const phentsize = v.getUint16(0x36, true);
  const phnum = v.getUint16(0x38, true);
  for (let i = 0; i < phnum; i++) {
    if (v.getUint32(phoff + i * phentsize, true) === 3 /* PT_INTERP */) {
      throw new HarnessError(`${path} is dynamically linked; install busybox-static`);
    }
  }
}

async function decompressModule(path: string): Promise<Uint8Array> {
  if (path.endsWith(".xz")) return (await exec(["xz", "-dc", path], { timeoutMs: 60_000 })).stdout;
  if (path.endsWith(".zst")) {
    return (await exec(["zstd", "-dc", path], { timeoutMs: 60_000 })).stdout;
  }
  if (path.endsWith(".gz")) {
    const stream = (await Deno.open(path)).readable.pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).bytes();
  }
  return await Deno.readFile(path);
}

async function listTree(root: string, rel = "."): Promise<string[]> {
  const out = [rel];
  const entries = [];
  for await (const e of Deno.readDir(`${root}/${rel}`)) entries.push(e);
  entries.sort((a, b) => a.name < b.name ? -1 : 1);
  for (const e of entries) {
    const path = `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...await listTree(root, path));
    else out.push(path);
  }
  return out;
}

async function build(
  root: string,
  kernel: Kernel,
  modules: string[],
  init: string,
  kvmModules: Map<string, string[]>,
) {
  for (const dir of ["bin", "dev", "proc", "sys", "lib/modules", "etc", "lower", "rw", "newroot"]) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  await Deno.copyFile(BUSYBOX, `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  const applets = (await execText([BUSYBOX, "--list"], { timeoutMs: 10_000 })).split("\n");
  for (const applet of applets.map((a) => a.trim())) {
    if (/^[\w.[-]+$/.test(applet) && applet !== "busybox") {
      await Deno.symlink("busybox", `${root}/bin/${applet}`);
    }
  }
  await Deno.writeTextFile(`${root}/init`, init, { mode: 0o755 });
  await Deno.chmod(`${root}/init`, 0o755);
  const install = async (rels: string[]) => {
    const names: string[] = [];
    for (const rel of rels) {
      const name = rel.split("/").pop()!.replace(COMPRESSED, "");
      await Deno.writeFile(
        `${root}/lib/modules/${name}`,
        await decompressModule(`${kernel.modulesDir}/${rel}`),
      );
      names.push(name);
    }
    return names.join("\n") + "\n";
  };
  await Deno.writeTextFile(`${root}/etc/modules`, await install(modules));
  for (const [vendor, rels] of kvmModules) {
    await Deno.writeTextFile(`${root}/etc/modules.${vendor}`, await install(rels));
  }
}

/** Each KVM vendor module with the dependencies `modules` does not already load. */
function kvmModuleLists(modulesDep: string, modules: readonly string[]): Map<string, string[]> {
  const lists = new Map<string, string[]>();
  for (const vendor of GUEST_KVM_MODULES) {
    lists.set(vendor, resolveModules(modulesDep, [vendor]).filter((m) => !modules.includes(m)));
  }
  return lists;
}

/**
 * Returns the cached initramfs for this kernel, building it when the init
 * script, the module list, busybox or the kernel changed.
 *
 * @param cacheDir The harness cache.
 * @param options The kernel, the modules `/init` loads (default
 *   {@linkcode GUEST_MODULES}) and the progress printer.
 * @returns The path of the gzip'd newc cpio image.
 * @throws {HarnessError} When busybox is not static or a tool fails.
 */
export async function ensureInitramfs(
  cacheDir: string,
  options: { kernel: Kernel; modules?: readonly string[]; progress: Progress },
): Promise<string> {
  const { kernel, progress } = options;
  const init = await Deno.readTextFile(INIT_SCRIPT);
  const busybox = await Deno.readFile(BUSYBOX);
  assertStatic(BUSYBOX, busybox);
  // A kernel with everything built in (the 6.12 test kernel) has no modules dir.
  const modulesDep = kernel.modulesDir === undefined
    ? ""
    : await Deno.readTextFile(`${kernel.modulesDir}/modules.dep`);
  const modules = kernel.modulesDir === undefined
    ? []
    : resolveModules(modulesDep, options.modules ?? GUEST_MODULES);
  const kvmModules = kernel.modulesDir === undefined
    ? new Map<string, string[]>()
    : kvmModuleLists(modulesDep, modules);
  const key = await sha256(JSON.stringify({
    format: FORMAT,
    kernel: kernel.version,
    init,
    modules,
    kvmModules: [...kvmModules],
    busybox: await sha256(busybox),
  }));
  const prefix = `initramfs-${kernel.version}-`;
  const path = `${cacheDir}/${prefix}${key.slice(0, 16)}.cpio.gz`;
  await Deno.mkdir(cacheDir, { recursive: true });
  try {
    await Deno.stat(path);
    return path;
  } catch {
    // build it below
  }
  progress.step(`building initramfs (${modules.length} modules)`);
  const tmp = await Deno.makeTempDir({ dir: cacheDir, prefix: `initramfs.tmp-${Deno.pid}-` });
  try {
    const root = `${tmp}/root`;
    await build(root, kernel, modules, init, kvmModules);
    const list = (await listTree(root)).join("\n") + "\n";
    const { stdout } = await exec(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], {
      cwd: root,
      stdin: new TextEncoder().encode(list),
      timeoutMs: 60_000,
    });
    const gz = new Blob([stdout as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new CompressionStream("gzip"));
    await Deno.writeFile(`${tmp}/image`, gz);
    await Deno.rename(`${tmp}/image`, path);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  for (const entry of Deno.readDirSync(cacheDir)) {
    const old = `${cacheDir}/${entry.name}`;
    if (entry.name.startsWith(prefix) && old !== path) await Deno.remove(old);
  }
  return path;
}
