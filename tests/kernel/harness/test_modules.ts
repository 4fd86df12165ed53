/**
 * Builds the test kernel modules kept as source under `tests/kernel/modules/`
 * against the 6.12 test kernel's trees (`make -C <build> M=<dir> modules`),
 * cached next to the kernel under a hash of the module's sources.
 *
 * @module
 */

import type { CustomKernel } from "./custom_kernel.ts";
import { cacheRoot } from "./custom_kernel.ts";
import { exec, exists, HarnessError, type Progress } from "./exec.ts";

const MODULES = new URL("../modules/", import.meta.url);

async function sha256(parts: string[]): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\0")));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Returns the built `.ko` of a test module, building it when its sources or
 * the kernel changed.
 *
 * @param name The module's dir under `tests/kernel/modules/` (its `.ko` has the same name).
 * @param options The kernel and the phase printer.
 * @returns The `.ko` path.
 * @throws {HarnessError} When the sources are missing or the build fails.
 */
export async function ensureTestModule(
  name: string,
  options: { kernel: CustomKernel; progress: Progress },
): Promise<string> {
  const dir = decodeURIComponent(new URL(`${name}/`, MODULES).pathname).replace(/\/$/, "");
  let files: string[];
  try {
    files = [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => e.name).sort();
  } catch {
    throw new HarnessError(`Cannot build test module ${name}: no sources in ${dir}`);
  }
  const texts = files.map((f) => `${f}\n${Deno.readTextFileSync(`${dir}/${f}`)}`);
  const key = (await sha256([options.kernel.buildDir, ...texts])).slice(0, 16);
  const out = `${cacheRoot()}/modules/${name}-${key}`;
  const ko = `${out}/${name}.ko`;
  if (exists(ko)) return ko;
  options.progress.step(`building test module ${name} against ${options.kernel.version}`);
  const tmp = `${out}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  try {
    for (const f of files) await Deno.copyFile(`${dir}/${f}`, `${tmp}/${f}`);
    await exec(["make", "-s", "-C", options.kernel.buildDir, `M=${tmp}`, "modules"], {
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
}
