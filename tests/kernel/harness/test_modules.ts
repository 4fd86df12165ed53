/**
 * Builds the test kernel modules kept under `tests/kernel/modules/` (their
 * Kbuild file, and their source unless it comes from a kernel source tree)
 * against a kernel's module build tree (`make -C <tree> M=<dir> modules`):
 * the 6.12 test kernel's build tree, or the stock 6.12 kernel's headers.
 * Cached under `${XDG_CACHE_HOME:-$HOME/.cache}/deno-vmm/modules/`, keyed by
 * a hash of the tree and every source, built under that dir's lock.
 *
 * @module
 */

import { cacheRoot } from "./custom_kernel.ts";
import { exec, exists, HarnessError, type Progress, withDirLock } from "./exec.ts";

const MODULES = new URL("../modules/", import.meta.url);

/** A tree external modules are built against. */
export interface ModuleTree {
  /** The kernel release the modules are for. */
  version: string;
  /** The dir `make -C` runs in (with `Module.symvers`). */
  buildDir: string;
  /** Extra `make` arguments. */
  makeArgs?: readonly string[];
}

async function sha256(parts: string[]): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\0")));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Returns the built `.ko` of a test module, building it when its sources or
 * the kernel changed.
 *
 * @param name The module's dir under `tests/kernel/modules/` (its `.ko` has the same name).
 * @param options The tree to build against, sources from elsewhere (copied
 *   in beside the module's own files), and the phase printer.
 * @returns The `.ko` path.
 * @throws {HarnessError} When the sources are missing or the build fails.
 */
export async function ensureTestModule(
  name: string,
  options: { kernel: ModuleTree; sources?: readonly string[]; progress: Progress },
): Promise<string> {
  const dir = decodeURIComponent(new URL(`${name}/`, MODULES).pathname).replace(/\/$/, "");
  let files: string[];
  try {
    files = [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => `${dir}/${e.name}`);
  } catch {
    throw new HarnessError(`Cannot build test module ${name}: no sources in ${dir}`);
  }
  files = [...files, ...(options.sources ?? [])].sort();
  const texts = files.map((f) => {
    try {
      return `${f.split("/").pop()}\n${Deno.readTextFileSync(f)}`;
    } catch {
      throw new HarnessError(`Cannot build test module ${name}: cannot read ${f}`);
    }
  });
  const { kernel } = options;
  const makeArgs = kernel.makeArgs ?? [];
  const key = (await sha256([kernel.buildDir, ...makeArgs, ...texts])).slice(0, 16);
  const out = `${cacheRoot()}/modules/${name}-${key}`;
  const ko = `${out}/${name}.ko`;
  if (exists(ko)) return ko;
  // Another run may be building the same module: wait for it, then look again.
  return await withDirLock(`${cacheRoot()}/modules`, async () => {
    if (exists(ko)) return ko;
    options.progress.step(`building test module ${name} against ${kernel.version}`);
    const tmp = `${out}.tmp-${Deno.pid}`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.mkdir(tmp, { recursive: true });
    try {
      for (const f of files) await Deno.copyFile(f, `${tmp}/${f.split("/").pop()}`);
      await exec(["make", "-s", "-C", kernel.buildDir, `M=${tmp}`, ...makeArgs, "modules"], {
        timeoutMs: 600_000,
      });
      if (!exists(`${tmp}/${name}.ko`)) {
        throw new HarnessError(`Cannot build test module ${name}: make left no ${name}.ko`);
      }
      await Deno.remove(out, { recursive: true }).catch(() => {});
      await Deno.rename(tmp, out);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
    return ko;
  });
}
