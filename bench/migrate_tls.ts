// What TLS costs a migration: 1 GiB of random RAM moved over loopback by
// deno-vmm (migrate -> receive) over tcp: and over tls: (mutual
// authentication, an authz list), by QEMU 7.2 plain and over TLS with the
// same credentials (tls-creds-x509, tls-authz), and by C pumps of the same
// bytes over TCP and over OpenSSL TLS 1.3 (the machine's ceilings), all in
// one run, alternating A B C ... then reversed. Each of ours also reports the
// CPU seconds each side spent (user and system), which says where the time
// goes. Writes bench/out/migrate_tls.json.
// Run with --help for the flags.
import { benchArgs } from "./_args.ts";
import { buildC } from "./_limits_common.ts";
import {
  collectStderr,
  ensureQemu,
  killAllChildren,
  qemuMigrate,
  spawnTracked,
  stopChild,
  writeImage,
} from "./_qemu.ts";
import { withTimeout } from "./_qmp.ts";
import { median } from "./_stats.ts";

const root = new URL("..", import.meta.url).pathname;
const out = `${root}bench/out`;
const HELP = `deno task bench:tls [flags]

What TLS costs a migration: random RAM moved over loopback by ours
(migrate -> receive) over tcp: and over tls: (mutual authentication, an authz
list), by QEMU 7.2 plain and over TLS with the same credentials, and by C
pumps of the same bytes over TCP and over OpenSSL TLS 1.3, alternating
A B C ... then reversed. Prints the medians and, for ours, the CPU seconds
each side spent.

  --ram NG      guest RAM, whole GiB (default 1G)
  --pairs N     runs of each, alternating (default 3)
  -h, --help    show this help

Needs QEMU (installs qemu-system-x86 with apt-get when missing), /usr/bin/time
and a C compiler with libssl; the credentials come from mod.ts tls-creds init.
Writes bench/out/migrate_tls.json.`;
const { values, fail, integer } = benchArgs("bench:tls", HELP, {
  ram: { type: "string", default: "1G" },
  pairs: { type: "string", default: "3" },
});
const gib = Number(/^(\d+)G$/i.exec(values.ram)?.[1] ?? NaN);
if (!(gib >= 1)) fail(`--ram takes NG (N >= 1), not "${values.ram}"`);
const pairs = integer("pairs", 1);
const ramBytes = gib * 2 ** 30;
const RUN_TIMEOUT = 180_000 * gib;
const PERMS = ["--allow-ffi", "--allow-read", "--allow-write", "--allow-net", "--allow-env"];
const scratch: string[] = [];

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[bench:tls] ${text}\n`));
}

function cleanup(): void {
  killAllChildren();
  for (const dir of scratch.splice(0)) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
  }
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  Deno.addSignalListener(sig, () => {
    cleanup();
    Deno.exit(130);
  });
}

interface Run {
  /** To the destination holding the whole image (ours: its answer to COMPLETE). */
  wallMs: number;
  /** CPU seconds, user and system, of the source and the destination (ours only). */
  cpu?: { srcUser: number; srcSys: number; dstUser: number; dstSys: number };
}

// `/usr/bin/time -f` around a child: its CPU seconds on the last stderr line.
const TIME_FORMAT = "cpu %U %S";
function cpuOf(stderr: string): [number, number] {
  const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(stderr.trim());
  return m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
}

async function ours(transport: "tcp" | "tls", creds: string, dir: string): Promise<Run> {
  const cli = (args: string[]) =>
    spawnTracked(
      "/usr/bin/time",
      ["-f", TIME_FORMAT, Deno.execPath(), "run", ...PERMS, `${root}mod.ts`, ...args],
      true,
    );
  const tlsDst = transport === "tls"
    ? ["--tls-creds", creds, "--tls-authz", `${creds}/authz.txt`]
    : [];
  const recv = cli([
    ...["receive", "--from", `${transport}:127.0.0.1:0`, "--ram", values.ram, ...tlsDst],
    ...["--report", `${dir}/dst.json`],
  ]);
  const recvErr = collectStderr(recv);
  let src: Deno.ChildProcess | undefined;
  try {
    let endpoint: string | undefined;
    let exited = false;
    recv.status.then(() => exited = true);
    const deadline = performance.now() + RUN_TIMEOUT;
    while (!(endpoint = /listening on (\S+)/.exec(recvErr())?.[1])) {
      if (exited) throw new Error(`receive exited early: ${recvErr().trim()}`);
      if (performance.now() > deadline) throw new Error("timed out waiting for receive");
      await new Promise((r) => setTimeout(r, 10));
    }
    src = cli([
      ...["migrate", "--to", endpoint, "--ram", values.ram, "--fill", "random", "--seed", "1"],
      ...(transport === "tls" ? ["--tls-creds", creds] : []),
      ...["--report", `${dir}/src.json`],
    ]);
    const srcErr = collectStderr(src);
    const [s, r] = await withTimeout(
      Promise.all([src.status, recv.status]),
      RUN_TIMEOUT,
      "migrate and receive to exit",
    );
    // Let the stderr readers see the time lines.
    await new Promise((r) => setTimeout(r, 50));
    if (!s.success) throw new Error(`migrate failed: ${srcErr().trim().split("\n").at(-2)}`);
    if (!r.success) throw new Error(`receive failed: ${recvErr().trim().split("\n").at(-2)}`);
    const rep = JSON.parse(await Deno.readTextFile(`${dir}/src.json`));
    const dst = JSON.parse(await Deno.readTextFile(`${dir}/dst.json`));
    if (rep.result !== "completed" || rep.sourceDigest !== dst.digest) {
      throw new Error(`the ${transport}: migration did not verify (${rep.result})`);
    }
    const [srcUser, srcSys] = cpuOf(srcErr());
    const [dstUser, dstSys] = cpuOf(recvErr());
    return { wallMs: rep.imageMs, cpu: { srcUser, srcSys, dstUser, dstSys } };
  } finally {
    await Promise.all([recv, src].map((c) => c && stopChild(c)));
    for (const f of ["src.json", "dst.json"]) await Deno.remove(`${dir}/${f}`).catch(() => {});
  }
}

async function pump(bin: string, args: string[]): Promise<Run> {
  const t = performance.now();
  const child = spawnTracked(bin, args, false);
  try {
    const s = await withTimeout(child.status, RUN_TIMEOUT, bin);
    if (!s.success) throw new Error(`${bin} failed`);
  } finally {
    await stopChild(child);
  }
  return { wallMs: performance.now() - t };
}

const ENGINES = ["oursTcp", "oursTls", "qemuTcp", "qemuTls", "cTcp", "cTls"] as const;
type Engine = typeof ENGINES[number];
const LABEL: Record<Engine, string> = {
  oursTcp: "ours over tcp:",
  oursTls: "ours over tls: (mTLS, authz)",
  qemuTcp: "QEMU 7.2 over tcp (prealloc)",
  qemuTls: "QEMU 7.2 over TLS (same creds, authz)",
  cTcp: "C loopback TCP pump",
  cTls: "C OpenSSL TLS 1.3 pump (mTLS)",
};
const GBps = (ms: number) => ramBytes / 1e9 / (ms / 1000);

async function main(): Promise<void> {
  Deno.mkdirSync(out, { recursive: true });
  await ensureQemu();
  const version = new TextDecoder().decode(
    (await new Deno.Command("qemu-system-x86_64", { args: ["--version"] }).output()).stdout,
  ).split("\n")[0];
  const cTcp = buildC("tcp_pump.c", "tcp_pump");
  const cTls = buildC("tls_pump.c", "tls_pump", [], ["-lssl", "-lcrypto"]);
  const tmp = await Deno.makeTempDir({ prefix: "deno-vmm-bench-tls-" });
  scratch.push(tmp);
  const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "deno-vmm-bench-tls-" });
  scratch.push(shm);
  const creds = `${tmp}/creds`;
  progress("writing credentials (mod.ts tls-creds init)");
  const init = await new Deno.Command(Deno.execPath(), {
    args: [
      ...["run", "-A", `${root}mod.ts`, "tls-creds", "init", creds],
      ...["--server-name", "localhost,127.0.0.1", "--client-cn", "client-1", "--org", "lab"],
    ],
    stderr: "piped",
  }).output();
  if (!init.success) {
    throw new Error(`tls-creds init failed: ${new TextDecoder().decode(init.stderr)}`);
  }
  progress(`writing the ${values.ram} random RAM image for QEMU in /dev/shm`);
  const image = `${shm}/random.img`;
  await writeImage(image, ramBytes, "random", 1);
  const runs: Record<Engine, Run[]> = Object.fromEntries(ENGINES.map((e) => [e, []])) as never;
  for (let p = 0; p < pairs; p++) {
    const order = [...ENGINES];
    if (p % 2 === 1) order.reverse();
    for (const e of order) {
      progress(`pair ${p + 1}/${pairs}: ${LABEL[e]}`);
      const qemu = (tls: boolean) =>
        qemuMigrate({
          image,
          ramBytes,
          config: {
            multifd: false,
            prealloc: true,
            // QEMU 7.2 (gnutls_x509_crt_get_dn) names a subject in certificate
            // order: the same client as our CN=client-1,O=lab.
            tls: tls ? { dir: creds, authz: "O=lab,CN=client-1" } : undefined,
          },
          dir: shm,
          timeoutMs: RUN_TIMEOUT,
        }).then((r) => ({ wallMs: r.wallMs }));
      const r = e === "oursTcp"
        ? await ours("tcp", creds, tmp)
        : e === "oursTls"
        ? await ours("tls", creds, tmp)
        : e === "qemuTcp"
        ? await qemu(false)
        : e === "qemuTls"
        ? await qemu(true)
        : e === "cTcp"
        ? await pump(cTcp, [String(ramBytes)])
        : await pump(cTls, [String(ramBytes), creds]);
      runs[e].push(r);
      progress(`  ${r.wallMs.toFixed(0)} ms, ${GBps(r.wallMs).toFixed(2)} GB/s`);
    }
  }
  const med = Object.fromEntries(
    ENGINES.map((e) => [e, median(runs[e].map((r) => r.wallMs))]),
  ) as Record<Engine, number>;
  const cpu = (e: "oursTcp" | "oursTls") => {
    const cs = runs[e].map((r) => r.cpu!);
    return {
      srcUser: median(cs.map((c) => c.srcUser)),
      srcSys: median(cs.map((c) => c.srcSys)),
      dstUser: median(cs.map((c) => c.dstUser)),
      dstSys: median(cs.map((c) => c.dstSys)),
    };
  };
  const ratios = {
    tlsOverTcpTime: med.oursTls / med.oursTcp,
    oursTlsVsQemuTls: med.qemuTls / med.oursTls,
    oursTcpVsQemuTcp: med.qemuTcp / med.oursTcp,
    oursTlsVsCTls: med.cTls / med.oursTls,
    qemuTlsOverTcpTime: med.qemuTls / med.qemuTcp,
  };
  console.log(`${version}; ${gib} GiB of random RAM over loopback; median of ${pairs} runs each`);
  console.log(`  ${"engine".padEnd(40)}${"ms".padStart(8)}${"GB/s".padStart(7)}`);
  for (const e of ENGINES) {
    console.log(
      `  ${LABEL[e].padEnd(40)}${med[e].toFixed(0).padStart(8)}${
        GBps(med[e]).toFixed(2).padStart(7)
      }`,
    );
  }
  for (const e of ["oursTcp", "oursTls"] as const) {
    const c = cpu(e);
    console.log(
      `  ${LABEL[e]} CPU s: source ${c.srcUser.toFixed(2)} user + ${c.srcSys.toFixed(2)} sys, ` +
        `destination ${c.dstUser.toFixed(2)} user + ${c.dstSys.toFixed(2)} sys`,
    );
  }
  console.log(
    `  tls:/tcp: time ${ratios.tlsOverTcpTime.toFixed(2)}x; ours tls: vs QEMU TLS ${
      ratios.oursTlsVsQemuTls.toFixed(2)
    }x faster; ours tcp: vs QEMU tcp ${ratios.oursTcpVsQemuTcp.toFixed(2)}x; ours tls: / C TLS ${
      ratios.oursTlsVsCTls.toFixed(2)
    }; QEMU TLS/tcp time ${ratios.qemuTlsOverTcpTime.toFixed(2)}x`,
  );
  Deno.writeTextFileSync(
    `${out}/migrate_tls.json`,
    JSON.stringify(
      {
        qemu: version,
        ramBytes,
        pairs,
        runs,
        medianMs: med,
        cpu: { oursTcp: cpu("oursTcp"), oursTls: cpu("oursTls") },
        ratios,
      },
      null,
      2,
    ) + "\n",
  );
  console.log("  JSON: bench/out/migrate_tls.json");
}

let code = 0;
try {
  await main();
} catch (e) {
  console.error(`bench:tls: ${(e as Error).message.split("\n")[0]}`);
  code = 1;
} finally {
  cleanup();
}
Deno.exit(code);
