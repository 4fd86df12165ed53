// Child-process bookkeeping and the QEMU 7.2 migration baseline for
// bench/migrate_vs_qemu.ts: a paused (-S) q35 TCG source whose RAM is a
// memory-backend-file (share=on) over a prefilled image in tmpfs, a destination
// started with -incoming defer, both driven over QMP. Every wait is bounded.
import { QmpClient, withTimeout } from "./_qmp.ts";

const QEMU = "qemu-system-x86_64";
const live = new Set<Deno.ChildProcess>();

/**
 * Spawns a process and records it, so {@link killAllChildren} can end it on
 * any exit path.
 *
 * @param cmd The program.
 * @param args Its arguments.
 * @param stderr Whether to pipe stderr (else discard it).
 * @returns The child.
 *
 * @example
 * ```ts ignore
 * const child = spawnTracked("sleep", ["1"], false);
 * ```
 */
export function spawnTracked(cmd: string, args: string[], stderr: boolean): Deno.ChildProcess {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: stderr ? "piped" : "null",
  }).spawn();
  live.add(child);
  child.status.finally(() => live.delete(child));
  return child;
}

/**
 * SIGKILLs every tracked child that is still running (synchronous, so it is
 * safe in signal and unload handlers).
 *
 * @example
 * ```ts ignore
 * globalThis.addEventListener("unload", killAllChildren);
 * ```
 */
export function killAllChildren(): void {
  for (const c of live) {
    try {
      c.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

/**
 * Ends one child: SIGTERM, then SIGKILL if it has not exited within `graceMs`.
 *
 * @param child The child.
 * @param graceMs How long SIGTERM gets.
 *
 * @example
 * ```ts ignore
 * await stopChild(child, 2000);
 * ```
 */
export async function stopChild(child: Deno.ChildProcess, graceMs = 2000): Promise<void> {
  if (!live.has(child)) return;
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  try {
    await withTimeout(child.status, graceMs, "a child to exit on SIGTERM");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await withTimeout(child.status, 5000, "a child to exit on SIGKILL").catch(() => {});
  }
}

/**
 * Keeps the tail of a child's stderr (for error messages) and the pipe drained.
 *
 * @param child A child spawned with stderr piped.
 * @returns A getter for the text read so far (last 4 KiB).
 *
 * @example
 * ```ts ignore
 * const err = collectStderr(child); await child.status; console.log(err());
 * ```
 */
export function collectStderr(child: Deno.ChildProcess): () => string {
  let text = "";
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      text = (text + chunk).slice(-4096);
    }
  })().catch(() => {});
  return () => text;
}

/**
 * Makes sure qemu-system-x86_64 is installed, installing Debian's
 * qemu-system-x86 with apt-get when it is missing.
 *
 * @throws {Error} With a one-line message naming the package if it cannot.
 *
 * @example
 * ```ts ignore
 * await ensureQemu();
 * ```
 */
export async function ensureQemu(): Promise<void> {
  // Spawning a missing program throws synchronously: keep it inside the promise.
  const run = (cmd: string, args: string[]) =>
    Promise.resolve().then(() =>
      new Deno.Command(cmd, {
        args,
        env: { DEBIAN_FRONTEND: "noninteractive" },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output()
    ).then((r) => r.success, () => false);
  const have = () => run(QEMU, ["--version"]);
  const apt = (args: string[]) => run("apt-get", args);
  if (await have()) return;
  if (!(await apt(["install", "-y", "qemu-system-x86"]))) {
    await apt(["update"]);
    await apt(["install", "-y", "qemu-system-x86"]);
  }
  if (!(await have())) {
    const root = Deno.uid() === 0;
    throw new Error(
      `${QEMU} is missing and "apt-get install -y qemu-system-x86" failed${
        root ? "" : " (apt-get needs root: run `sudo apt-get install -y qemu-system-x86`)"
      }: install the Debian package qemu-system-x86`,
    );
  }
}

/**
 * Writes the RAM image: the same xorshift32 words `mod.ts migrate --fill`
 * writes for the same seed (random), or the same with every odd 4 KiB page
 * zero (half), so both engines move identical bytes.
 *
 * @param path The image path (put it in tmpfs).
 * @param bytes Its size (a multiple of 8 KiB).
 * @param pattern "random" or "half".
 * @param seed The xorshift seed (as `--seed`).
 *
 * @example
 * ```ts ignore
 * await writeImage("/dev/shm/ram.img", 2 ** 30, "half", 1);
 * ```
 */
export async function writeImage(
  path: string,
  bytes: number,
  pattern: "random" | "half" | "zero" | "untouched",
  seed: number,
): Promise<void> {
  if (pattern === "untouched") {
    // A sparse file: every page a hole, as a fresh guest's RAM.
    using f = await Deno.open(path, { write: true, create: true, truncate: true });
    await f.truncate(bytes);
    return;
  }
  const chunk = 64 * 2 ** 20;
  const buf = new Uint8Array(chunk);
  const words = new Uint32Array(buf.buffer);
  let x = seed >>> 0 || 0x9e3779b9;
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let done = 0; done < bytes; done += chunk) {
    const n = Math.min(chunk, bytes - done);
    buf.fill(0);
    for (let page = 0; page * 1024 < n / 4; page++) {
      if (pattern === "zero" || (pattern === "half" && page % 2 === 1)) continue;
      for (let i = page * 1024, end = i + 1024; i < end; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x;
      }
    }
    for (let off = 0; off < n;) off += await f.write(buf.subarray(off, n));
  }
}

/** One QEMU configuration. */
export interface QemuConfig {
  /** Multifd on both sides. */
  multifd: boolean;
  /** Multifd channels (default 2). */
  channels?: number;
  /** `zero-page-detection` (QEMU 9.0 and later; `multifd`: on the channels' threads). */
  zeroPageDetection?: "multifd" | "legacy";
  /** `multifd-compression`. */
  compression?: "zstd";
  /** The destination's RAM backend gets prealloc=on. */
  prealloc: boolean;
  /**
   * Migrate over TLS: `tls-creds-x509` objects over this credentials
   * directory (QEMU's layout) on both sides, the source checking the name
   * `localhost`, and the destination letting in only `authz` (an x509 DN
   * such as `CN=client-1,O=lab`) when given.
   */
  tls?: { dir: string; authz?: string };
}

/** What one QEMU migration measured. */
export interface QemuResult {
  /** From sending `migrate` to the destination's MIGRATION completed event. */
  wallMs: number;
  /** The source's query-migrate total-time. */
  totalTimeMs: number;
  /** The source's query-migrate downtime. */
  downtimeMs: number;
  /** ram.transferred (bytes on the wire for RAM). */
  transferredBytes: number;
  /** ram.multifd-bytes. */
  multifdBytes: number;
  /** ram.mbps. */
  mbps: number;
  /** ram.duplicate (zero pages sent as a header only). */
  zeroPages: number;
  /** ram.precopy-bytes: sent while the source was still "running". */
  precopyBytes: number;
  /** ram.downtime-bytes: sent in stop-and-copy. */
  downtimeBytes: number;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Runs one QEMU-to-QEMU migration of the image over loopback TCP and tears
 * both QEMUs down (on every path).
 *
 * @param o The image, RAM size, configuration, a scratch directory and the bound.
 * @returns The measurements.
 *
 * @example
 * ```ts ignore
 * const r = await qemuMigrate({ image, ramBytes: 2 ** 30, config: { multifd: true, prealloc: true }, dir, timeoutMs: 120_000 });
 * ```
 */
export async function qemuMigrate(o: {
  /** The QEMU to run (default: the system's qemu-system-x86_64). */
  qemu?: { path: string; dataDir?: string };
  /** `max-bandwidth` in bytes/s (default 100e9: loopback is the cap). */
  maxBandwidth?: number;
  /** `downtime-limit` in ms (default 300, the engine's own default). */
  downtimeLimitMs?: number;
  /**
   * Run the source and destination in these network namespaces, the
   * destination listening on `dstAddr` (default: both here, over loopback).
   */
  netns?: { src: string; dst: string; dstAddr: string };
  image: string;
  ramBytes: number;
  config: QemuConfig;
  dir: string;
  timeoutMs: number;
}): Promise<QemuResult> {
  const mib = `${o.ramBytes / 2 ** 20}M`;
  const qemu = o.qemu?.path ?? QEMU;
  const common = [
    ...(o.qemu?.dataDir ? ["-L", o.qemu.dataDir] : []),
    ...["-machine", "q35,memory-backend=mem", "-accel", "tcg", "-m", mib],
    ...["-nodefaults", "-display", "none", "-serial", "none", "-monitor", "none", "-S"],
  ];
  const port = freePort();
  const uri = `tcp:${o.netns?.dstAddr ?? "127.0.0.1"}:${port}`;
  // `ip netns exec` execs QEMU, so the child is QEMU itself.
  const spawnIn = (ns: string | undefined, args: string[]) =>
    ns === undefined
      ? spawnTracked(qemu, args, true)
      : spawnTracked("ip", ["netns", "exec", ns, qemu, ...args], true);
  const srcSock = `${o.dir}/src.qmp`, dstSock = `${o.dir}/dst.qmp`;
  const tls = o.config.tls;
  // QEMU's option syntax doubles a comma inside a value.
  const q = (v: string) => v.replaceAll(",", ",,");
  const tlsObjects = (endpoint: "server" | "client") =>
    tls === undefined ? [] : [
      ...[
        "-object",
        `tls-creds-x509,id=tls0,dir=${q(tls.dir)},endpoint=${endpoint},verify-peer=on`,
      ],
      ...(endpoint === "server" && tls.authz
        ? ["-object", `authz-simple,id=authz0,identity=${q(tls.authz)}`]
        : []),
    ];
  const dst = spawnIn(o.netns?.dst, [
    ...common,
    "-object",
    `memory-backend-ram,id=mem,size=${mib}${o.config.prealloc ? ",prealloc=on" : ""}`,
    ...tlsObjects("server"),
    ...["-incoming", "defer", "-qmp", `unix:${dstSock},server=on,wait=off`],
  ]);
  const src = spawnIn(o.netns?.src, [
    ...common,
    "-object",
    `memory-backend-file,id=mem,size=${mib},mem-path=${o.image},share=on`,
    ...tlsObjects("client"),
    ...["-qmp", `unix:${srcSock},server=on,wait=off`],
  ]);
  const dstErr = collectStderr(dst), srcErr = collectStderr(src);
  const qmps: QmpClient[] = [];
  // Fails the run as soon as either QEMU exits early.
  let finished = false;
  const died = Promise.race([
    dst.status.then((s) => ["destination", s.code, dstErr] as const),
    src.status.then((s) => ["source", s.code, srcErr] as const),
  ]).then(([who, code, err]) => {
    if (!finished) {
      throw new Error(`QEMU ${who} exited (code ${code}): ${err().trim().split("\n").pop()}`);
    }
  });
  died.catch(() => {});
  const guard = <T>(p: Promise<T>) => Promise.race([p, died as Promise<never>]);
  const deadline = performance.now() + o.timeoutMs;
  const left = () => Math.max(1, deadline - performance.now());
  try {
    const [d, s] = await guard(Promise.all([
      QmpClient.connect(dstSock, left()),
      QmpClient.connect(srcSock, left()),
    ]));
    qmps.push(d, s);
    const caps = [
      { capability: "events", state: true },
      { capability: "multifd", state: o.config.multifd },
    ];
    for (const q of [d, s]) {
      await guard(q.execute("migrate-set-capabilities", { capabilities: caps }, left()));
      if (o.config.multifd) {
        await guard(q.execute("migrate-set-parameters", {
          "multifd-channels": o.config.channels ?? 2,
          ...(o.config.compression ? { "multifd-compression": o.config.compression } : {}),
          ...(o.config.zeroPageDetection
            ? { "zero-page-detection": o.config.zeroPageDetection }
            : {}),
        }, left()));
      }
    }
    await guard(s.execute("migrate-set-parameters", {
      "max-bandwidth": o.maxBandwidth ?? 100e9,
      "downtime-limit": o.downtimeLimitMs ?? 300,
    }, left()));
    if (tls !== undefined) {
      await guard(s.execute(
        "migrate-set-parameters",
        { "tls-creds": "tls0", "tls-hostname": "localhost" },
        left(),
      ));
      await guard(d.execute(
        "migrate-set-parameters",
        { "tls-creds": "tls0", ...(tls.authz ? { "tls-authz": "authz0" } : {}) },
        left(),
      ));
    }
    await guard(d.execute("migrate-incoming", { uri }, left()));
    const t0 = performance.now();
    await guard(s.execute("migrate", { uri }, left()));
    // A source that fails (a refused TLS handshake) says why; the destination may not.
    const sourceFailed = s.waitEvent(
      (e) => e.event === "MIGRATION" && e.data?.status === "failed",
      left(),
      "the source's MIGRATION failed event",
    ).then(async () => {
      const info = await s.execute("query-migrate", undefined, 2000) as Record<string, unknown>;
      throw new Error(`QEMU source: ${info["error-desc"] ?? "migration failed"}`);
    });
    sourceFailed.catch(() => {});
    const ev = await guard(Promise.race([
      d.waitEvent(
        (e) => e.event === "MIGRATION" && ["completed", "failed"].includes(String(e.data?.status)),
        left(),
        "the destination's MIGRATION completed event",
      ),
      sourceFailed as Promise<never>,
    ]));
    if (ev.data?.status !== "completed") throw new Error("QEMU destination: migration failed");
    const wallMs = ev.receivedAt - t0;
    let info: Record<string, unknown>;
    for (;;) {
      info = await guard(s.execute("query-migrate", undefined, left())) as Record<string, unknown>;
      if (info.status === "completed") break;
      if (info.status === "failed") throw new Error(`QEMU source: ${info["error-desc"]}`);
      if (performance.now() > deadline) throw new Error("timed out polling query-migrate");
      await new Promise((r) => setTimeout(r, 10));
    }
    const ram = info.ram as Record<string, number>;
    return {
      wallMs,
      totalTimeMs: info["total-time"] as number,
      downtimeMs: info.downtime as number,
      transferredBytes: ram.transferred,
      multifdBytes: ram["multifd-bytes"] ?? 0,
      mbps: ram.mbps,
      zeroPages: ram.duplicate,
      precopyBytes: ram["precopy-bytes"] ?? 0,
      downtimeBytes: ram["downtime-bytes"] ?? 0,
    };
  } finally {
    finished = true;
    for (const q of qmps) {
      await q.execute("quit", undefined, 1000).catch(() => {});
      q.close();
    }
    await Promise.all([stopChild(dst, 2000), stopChild(src, 2000)]);
    for (const f of [srcSock, dstSock]) await Deno.remove(f).catch(() => {});
  }
}
