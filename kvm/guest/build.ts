/**
 * Builds the test guest from its committed source with the machine's
 * toolchain (gcc, ld, objcopy) into a flat image, cached outside the checkout
 * under a hash of the sources, the flags and the tool versions. The same
 * sources and tools give the same bytes.
 *
 * Requires `--allow-read`, `--allow-write` (the cache), `--allow-run` (gcc,
 * ld, objcopy) and `--allow-env` (`HOME`, `XDG_CACHE_HOME`, `DENO_VMM_CACHE`).
 *
 * @module
 */

import { GUEST_LAYOUT } from "./layout.ts";

/** A built guest image. */
export interface GuestImage {
  /** The flat image, loaded at `GUEST_LAYOUT.code`. */
  readonly bytes: Uint8Array;
  /** SHA-256 of the image, hex. */
  readonly sha256: string;
  /** Where it is cached. */
  readonly path: string;
}

/** The build failed or a tool is missing. */
export class GuestBuildError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param options The lower `cause`.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "GuestBuildError";
  }
}

const SOURCES = ["guest.h", "guest.c", "entry.S", "guest.ld"] as const;

/** The compiler flags: freestanding, no SSE, no red zone, no stack protector, no unwind tables. */
export const GUEST_CFLAGS: readonly string[] = Object.freeze([
  "-std=gnu11",
  "-O2",
  "-ffreestanding",
  "-fno-pic",
  "-fno-pie",
  "-fno-stack-protector",
  "-fno-asynchronous-unwind-tables",
  "-fno-unwind-tables",
  "-fcf-protection=none",
  "-mno-red-zone",
  "-mgeneral-regs-only",
  "-mcmodel=small",
  "-nostdlib",
  "-Wall",
  "-Wextra",
  "-Werror",
]);

const LDFLAGS = ["-nostdlib", "-static", "--no-dynamic-linker", "--build-id=none"];

async function hex(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new GuestBuildError(
      `Cannot build the test guest: ${cmd} is missing (apt-get install gcc binutils)`,
      { cause: e },
    );
  }
  const text = new TextDecoder();
  if (!out.success) {
    throw new GuestBuildError(
      `Cannot build the test guest: ${cmd} ${args.join(" ")} failed: ${text.decode(out.stderr)}`,
    );
  }
  return text.decode(out.stdout);
}

/**
 * The default cache dir: `$DENO_VMM_CACHE/kvm-guest`, else
 * `$XDG_CACHE_HOME/deno-vmm/kvm-guest`, else `~/.cache/deno-vmm/kvm-guest`.
 *
 * @returns The path (may not exist yet).
 */
export function defaultGuestCacheDir(): string {
  const own = Deno.env.get("DENO_VMM_CACHE");
  if (own) return `${own}/kvm-guest`;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/deno-vmm/kvm-guest`;
  return `${Deno.env.get("HOME") ?? "/tmp"}/.cache/deno-vmm/kvm-guest`;
}

/**
 * Builds (or finds in the cache) the test guest image.
 *
 * @param options `cacheDir`: where images are kept (default
 *   {@linkcode defaultGuestCacheDir}).
 * @returns The image.
 * @throws {GuestBuildError} When a tool is missing or fails, or the image is too large.
 *
 * @example
 * ```ts ignore
 * import { buildGuestImage } from "./build.ts";
 * const image = await buildGuestImage();
 * console.log(image.bytes.length, image.sha256);
 * ```
 */
export async function buildGuestImage(options: { cacheDir?: string } = {}): Promise<GuestImage> {
  const dir = options.cacheDir ?? defaultGuestCacheDir();
  const sources = await Promise.all(
    SOURCES.map(async (name) => [name, await Deno.readFile(new URL(`./${name}`, import.meta.url))]),
  ) as [string, Uint8Array][];
  const tools = (await Promise.all([
    run("gcc", ["--version"], "/"),
    run("ld", ["--version"], "/"),
    run("objcopy", ["--version"], "/"),
  ])).map((v) => v.split("\n")[0]);
  const key = await hex(new TextEncoder().encode(JSON.stringify({
    sources: await Promise.all(sources.map(async ([n, b]) => [n, await hex(b)])),
    cflags: GUEST_CFLAGS,
    ldflags: LDFLAGS,
    tools,
  })));
  const path = `${dir}/guest-${key.slice(0, 16)}.bin`;
  try {
    const bytes = await Deno.readFile(path);
    return { bytes, sha256: await hex(bytes), path };
  } catch {
    // build it
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir, prefix: `build.tmp-${Deno.pid}-` });
  try {
    for (const [name, bytes] of sources) await Deno.writeFile(`${tmp}/${name}`, bytes);
    await run("gcc", [...GUEST_CFLAGS, "-c", "guest.c", "-o", "guest.o"], tmp);
    await run("gcc", [...GUEST_CFLAGS, "-c", "entry.S", "-o", "entry.o"], tmp);
    await run("ld", [...LDFLAGS, "-T", "guest.ld", "-o", "guest.elf", "entry.o", "guest.o"], tmp);
    await run("objcopy", ["-O", "binary", "guest.elf", "guest.bin"], tmp);
    const bytes = await Deno.readFile(`${tmp}/guest.bin`);
    if (bytes.byteLength === 0 || bytes.byteLength > GUEST_LAYOUT.codeMax) {
      throw new GuestBuildError(
        `Cannot use a test guest image of ${bytes.byteLength} bytes (at most ${GUEST_LAYOUT.codeMax})`,
      );
    }
    await Deno.rename(`${tmp}/guest.bin`, path);
    return { bytes, sha256: await hex(bytes), path };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
