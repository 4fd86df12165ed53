// QEMU 10 from bookworm-backports for bench:qemu, beside the system's QEMU:
// its packages are fetched through the private apt dir the test kernel uses
// (the mirror the machine's own apt sources name) and unpacked, not
// installed, into the cache outside the checkout.
import { PrivateApt, systemArchive } from "../tests/kernel/harness/apt_mirror.ts";
import { cacheRoot } from "../tests/kernel/harness/custom_kernel.ts";
import { exec, exists, type Progress } from "../tests/kernel/harness/exec.ts";

/** An unpacked QEMU. */
export interface QemuBinary {
  /** qemu-system-x86_64. */
  path: string;
  /** Its firmware dir, for `-L`. */
  dataDir: string;
  /** The first line of `--version`. */
  version: string;
}

const PACKAGES = ["qemu-system-x86", "qemu-system-data"];

async function versionOf(path: string): Promise<string> {
  const out = await new Deno.Command(path, { args: ["--version"], stdout: "piped" }).output();
  if (!out.success) throw new Error(`${path} --version failed`);
  return new TextDecoder().decode(out.stdout).split("\n")[0];
}

/**
 * The newest qemu-system-x86 of bookworm-backports, unpacked into
 * `${XDG_CACHE_HOME:-~/.cache}/deno-vmm/qemu-backports/<version>/` (once per
 * machine; later runs reuse it without the network).
 *
 * @param progress Phase printer.
 * @returns The binary, its firmware dir and version.
 * @throws {Error} When backports cannot be reached or the binary does not run.
 */
export async function ensureBackportsQemu(progress: Progress): Promise<QemuBinary> {
  const root = `${cacheRoot()}/qemu-backports`;
  await Deno.mkdir(root, { recursive: true });
  const unpacked = [...Deno.readDirSync(root)]
    .filter((e) => e.isDirectory && exists(`${root}/${e.name}/.unpacked`))
    .map((e) => e.name).sort().reverse();
  let dir = unpacked[0] === undefined ? undefined : `${root}/${unpacked[0]}`;
  if (dir === undefined) {
    const apt = new PrivateApt(`${cacheRoot()}/apt`, {
      suite: "bookworm-backports",
      archive: systemArchive("bookworm"),
      progress,
    });
    await apt.update();
    const version = await apt.candidate(PACKAGES[0]);
    if (version === undefined) {
      throw new Error("Cannot find qemu-system-x86 in bookworm-backports through the apt mirror");
    }
    dir = `${root}/${version.replace(/[^A-Za-z0-9.+~-]/g, "_")}`;
    const dl = `${root}/download-${Deno.pid}`;
    await Deno.mkdir(dl, { recursive: true });
    try {
      for (const pkg of PACKAGES) {
        const deb = await apt.download(pkg, version, dl);
        await exec(["dpkg-deb", "-x", deb, dir], { timeoutMs: 300_000 });
      }
      await Deno.writeTextFile(`${dir}/.unpacked`, `${version}\n`);
    } finally {
      await Deno.remove(dl, { recursive: true }).catch(() => {});
    }
  }
  const path = `${dir}/usr/bin/qemu-system-x86_64`;
  return { path, dataDir: `${dir}/usr/share/qemu`, version: await versionOf(path) };
}
