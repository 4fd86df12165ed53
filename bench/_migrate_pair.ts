// One live migration between two processes over loopback TCP, for the
// benches: `mod.ts receive` on an ephemeral port, `mod.ts migrate` to it,
// both reports read back and the digests compared.

const root = new URL("..", import.meta.url).pathname;
const PERMS = ["--allow-ffi", "--allow-read", "--allow-write", "--allow-net", "--allow-env"];

/** Both sides' `--report` JSON. */
export interface PairReports {
  // deno-lint-ignore no-explicit-any
  src: any;
  // deno-lint-ignore no-explicit-any
  dst: any;
}

/**
 * Runs `receive --from tcp:127.0.0.1:0 --ram RAM`, then `migrate --to` it
 * with `migrateArgs`, and returns both reports once the digests match.
 *
 * @param ram The `--ram` of both sides.
 * @param migrateArgs Further `migrate` flags (`--fill`, `--seed`, ...).
 * @param receiveArgs Further `receive` flags (`--channels`).
 * @returns The parsed reports.
 * @throws {Error} When receive exits early, migrate fails, or the digests differ.
 */
export async function migratePair(
  ram: string,
  migrateArgs: string[],
  receiveArgs: string[] = [],
): Promise<PairReports> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-bench-" });
  try {
    const recv = new Deno.Command(Deno.execPath(), {
      args: ["run", ...PERMS, `${root}mod.ts`, "receive", "--from", "tcp:127.0.0.1:0"]
        .concat(["--ram", ram, "--report", `${dir}/dst.json`], receiveArgs),
      stderr: "piped",
      stdout: "null",
    }).spawn();
    const reader = recv.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    let endpoint: string | undefined;
    while (endpoint === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`receive exited early: ${buffered}`);
      buffered += value;
      endpoint = /listening on (\S+)/.exec(buffered)?.[1];
    }
    const drain = (async () => {
      while (!(await reader.read()).done) { /* keep the pipe flowing */ }
    })();
    const src = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...PERMS, `${root}mod.ts`, "migrate", "--to", endpoint, "--ram", ram]
        .concat(migrateArgs, ["--report", `${dir}/src.json`]),
      stderr: "piped",
      stdout: "null",
    }).output();
    await recv.status;
    await drain;
    if (!src.success) throw new Error(`migrate failed: ${new TextDecoder().decode(src.stderr)}`);
    const s = JSON.parse(Deno.readTextFileSync(`${dir}/src.json`));
    const d = JSON.parse(Deno.readTextFileSync(`${dir}/dst.json`));
    if (s.sourceDigest !== d.digest) throw new Error("digest mismatch");
    return { src: s, dst: d };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
