/**
 * Runs the real-kernel tests (`tests/kernel/*_test.ts`) against the real Linux
 * VFIO stack.
 *
 * By default it boots QEMU guests (TCG), mounts this host's root in each, and
 * runs this host's `deno test` there on the test files, with
 * `DENO_VMM_VFIO_GROUP` set to the edu device's IOMMU group. Each file names
 * its boot profiles on a `// kernel-profiles:` line (see
 * `harness/profiles.ts`; default `stock-6.1`: Debian's 6.1, emulated VT-d,
 * edu on vfio-pci); one guest boots per profile that has files. The
 * custom-6.12 profiles boot a test kernel built from Debian's
 * `linux-source-6.12`, `stock-6.12` Debian's stock 6.12 kernel with the mtty
 * sample built against its headers, all cached in
 * `${XDG_CACHE_HOME:-~/.cache}/deno-vmm/`. It installs the Debian packages
 * it needs and caches the stock kernel and initramfs there too (`stock-kernel/`).
 *
 * With `--host --group N` (or `DENO_VMM_VFIO_GROUP=N` and `/dev/vfio/N`
 * present) it runs the same files directly on this host instead.
 *
 * ```sh
 * deno run -A tests/kernel/run.ts [--timeout SECONDS] [--file-timeout SECONDS] [--host --group N]
 *   [--keep-log FILE] [test files or dirs...] [-- deno test flags...]
 * ```
 *
 * stdout gets each guest's serial console (with `deno test`'s own output), a
 * `kernel[<profile>]: N passed, M failed` line per boot and, last, the sum:
 * `kernel: N passed, M failed`. In a guest each file runs in its own
 * `deno test`, bounded by `--file-timeout`: a file that does not finish counts
 * the tests it had not passed as failed and the next file runs. A guest
 * that stops answering inside a file (no end a minute past that bound: its
 * kernel locked up) is killed, that file counts as above, and the guest boots
 * again for the files it never began (at most twice). A boot that cannot run
 * counts each test its files declare as failed. The exit code is 0
 * only when every boot passed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { exec, exists, HarnessError, Progress } from "./harness/exec.ts";
import { runOnHost } from "./harness/host.ts";
import { ensureInitramfs, GUEST_MODULES, GUEST_MODULES_6_12 } from "./harness/initramfs.ts";
import { denoDir, jobScript, makeJobDir } from "./harness/job.ts";
import { cacheRoot, type CustomKernel, ensureCustomKernel } from "./harness/custom_kernel.ts";
import { ensureKernel, type Kernel } from "./harness/kernel.ts";
import { FileTally } from "./harness/file_tally.ts";
import { type TestSummary, writeStdout } from "./harness/output.ts";
import { Apt, ensurePackages } from "./harness/packages.ts";
import { type BootProfile, declaredTests, PROFILES, profilesOf } from "./harness/profiles.ts";
import { buildGuestImage } from "../../kvm/guest/build.ts";
import { runGuest } from "./harness/qemu.ts";
import { ensureStock612, type Stock612Kernel } from "./harness/stock_612.ts";
import { ensureTestModule } from "./harness/test_modules.ts";

const KERNEL_TESTS = decodeURIComponent(new URL(".", import.meta.url).pathname).replace(/\/$/, "");
const PROJECT = KERNEL_TESTS.replace(/\/tests\/kernel$/, "");
// The stock kernel and the initramfs images live outside the checkout, beside
// the 6.12 build, so a fresh clone reuses what this machine fetched before.
const CACHE = `${cacheRoot()}/stock-kernel`;
const SKIP_DIRS = new Set([".cache", "harness", "modules", "node_modules"]);

const USAGE =
  `Usage: deno run -A tests/kernel/run.ts [options] [test files or dirs...] [-- deno test flags...]

Runs the real-kernel tests in QEMU guests (default: every *_test.ts under
tests/kernel/, each in the boot profiles its '// kernel-profiles:' line names),
or directly on this host with --host.

Options:
  --timeout SECONDS  bound on each guest's (or the host's) test run, default 900
  --file-timeout SECONDS
                     bound on each test file's run in a guest, default 240
  --profile NAME     boot only this profile (repeatable)
  --host             run on this host, with a real VFIO group
  --group N          the IOMMU group for --host (default: $DENO_VMM_VFIO_GROUP)
  --keep-log FILE    also write the raw console log to FILE
  -h, --help         show this help`;

interface Options {
  timeoutMs: number;
  fileTimeoutSeconds: number;
  host: boolean;
  group: string | undefined;
  keepLog: string | undefined;
  profiles: string[] | undefined;
  files: string[];
  denoFlags: string[];
}

/** Everything to undo on exit, including on Ctrl-C. */
const cleanups: (() => void)[] = [];

function cleanup(): void {
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
}

function parse(argv: string[]): Options | undefined {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const denoFlags = dash < 0 ? [] : argv.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      allowPositionals: true,
      options: {
        timeout: { type: "string" },
        "file-timeout": { type: "string" },
        host: { type: "boolean" },
        group: { type: "string" },
        "keep-log": { type: "string" },
        profile: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new HarnessError(`${(err as Error).message.split(". ")[0]} (see --help)`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  const timeout = Number(values.timeout ?? "900");
  if (!(timeout > 0)) throw new HarnessError(`--timeout wants seconds > 0, not ${values.timeout}`);
  const fileTimeout = Number(values["file-timeout"] ?? "240");
  if (!(fileTimeout > 0)) {
    throw new HarnessError(`--file-timeout wants seconds > 0, not ${values["file-timeout"]}`);
  }
  if (values.group !== undefined && !values.host) {
    throw new HarnessError("--group goes with --host");
  }
  return {
    timeoutMs: timeout * 1000,
    fileTimeoutSeconds: fileTimeout,
    host: values.host ?? false,
    group: values.group,
    keepLog: values["keep-log"],
    profiles: values.profile,
    files: positionals,
    denoFlags,
  };
}

function findTests(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory && !SKIP_DIRS.has(entry.name) && !entry.name.startsWith(".")) {
      found.push(...findTests(path));
    } else if (entry.isFile && entry.name.endsWith("_test.ts")) {
      found.push(path);
    }
  }
  return found.sort();
}

function testFiles(args: string[]): string[] {
  if (args.length === 0) {
    const found = findTests(KERNEL_TESTS);
    if (found.length === 0) throw new HarnessError(`No *_test.ts files in ${KERNEL_TESTS}`);
    return found;
  }
  return args.map((arg) => {
    const path = arg.startsWith("/") ? arg : `${Deno.cwd()}/${arg}`;
    if (!exists(path)) throw new HarnessError(`No such test file or dir: ${arg}`);
    return path;
  });
}

/** Which group to use on this host, or undefined for the QEMU guest. */
function hostGroup(options: Options): string | undefined {
  const envGroup = Deno.env.get("DENO_VMM_VFIO_GROUP");
  const group = options.group ?? envGroup;
  if (options.host) {
    if (group === undefined) {
      throw new HarnessError("--host needs --group N or DENO_VMM_VFIO_GROUP");
    }
    if (!/^\d+$/.test(group)) throw new HarnessError(`Not an IOMMU group number: ${group}`);
    if (!exists(`/dev/vfio/${group}`)) throw new HarnessError(`No /dev/vfio/${group} on this host`);
    return group;
  }
  if (envGroup !== undefined) {
    if (/^\d+$/.test(envGroup) && exists(`/dev/vfio/${envGroup}`)) return envGroup;
    console.error(
      `note: DENO_VMM_VFIO_GROUP=${envGroup} but /dev/vfio/${envGroup} is absent: using the QEMU guest`,
    );
  }
  return undefined;
}

function openLog(path: string | undefined): Deno.FsFile | undefined {
  if (path === undefined) return undefined;
  const file = Deno.openSync(path, { write: true, create: true, truncate: true });
  cleanups.push(() => file.close());
  return file;
}

/** What the guest's `/init` exits with when it cannot get to the tests. */
const GUEST_STATUS: Record<number, string> = {
  124: "the guest's own watchdog stopped it",
  125: "the guest could not set up (see the 'deno-vmm guest: error' line above)",
};

function finish(status: number, summary: TestSummary | undefined): number {
  if (summary) writeStdout(`kernel: ${summary.passed} passed, ${summary.failed} failed\n`);
  if (status !== 0 && (summary === undefined || summary.failed === 0)) {
    console.error(`kernel tests: FAILED: ${GUEST_STATUS[status] ?? `deno test exited ${status}`}`);
  }
  return status;
}

function fail(reason: string): number {
  console.error(`kernel tests: FAILED: ${reason}`);
  return 1;
}

/** One boot's outcome, added into the final line. */
interface BootOutcome {
  profile: string;
  passed: number;
  failed: number;
  ok: boolean;
}

/** The kernels this run has fetched or built, by kind. */
class Kernels {
  #stock: Promise<Kernel> | undefined;
  #custom: Promise<CustomKernel> | undefined;
  #stock612: Promise<Stock612Kernel> | undefined;
  #apt: Apt;
  #progress: Progress;

  constructor(apt: Apt, progress: Progress) {
    this.#apt = apt;
    this.#progress = progress;
  }

  stock(): Promise<Kernel> {
    this.#stock ??= ensureKernel(CACHE, { apt: this.#apt, progress: this.#progress });
    return this.#stock;
  }

  custom(): Promise<CustomKernel> {
    this.#custom ??= ensureCustomKernel({ apt: this.#apt, progress: this.#progress });
    return this.#custom;
  }

  stock612(): Promise<Stock612Kernel> {
    this.#stock612 ??= ensureStock612({ progress: this.#progress });
    return this.#stock612;
  }
}

/** Groups the test files by the profiles they name, in the order of {@linkcode PROFILES}. */
function plan(files: string[], only: string[] | undefined): Map<BootProfile, string[]> {
  for (const name of only ?? []) {
    if (!PROFILES.some((p) => p.name === name)) {
      throw new HarnessError(
        `Unknown --profile ${name} (known: ${PROFILES.map((p) => p.name).join(", ")})`,
      );
    }
  }
  const byName = new Map<string, string[]>();
  for (const file of files.flatMap((f) => Deno.statSync(f).isDirectory ? findTests(f) : [f])) {
    for (const name of profilesOf(Deno.readTextFileSync(file), file)) {
      if (only !== undefined && !only.includes(name)) continue;
      byName.set(name, [...(byName.get(name) ?? []), file]);
    }
  }
  const out = new Map<BootProfile, string[]>();
  for (const p of PROFILES) if (byName.has(p.name)) out.set(p, byName.get(p.name)!);
  return out;
}

type BootContext = { options: Options; progress: Progress; kernels: Kernels; denoDir: string };

// Boots after a guest that locked up inside a file, for the files it never began.
const MAX_REBOOTS = 2;

async function bootProfile(
  profile: BootProfile,
  files: string[],
  context: BootContext,
): Promise<{ status: number; summary?: TestSummary }> {
  let pending = files;
  let status = 0;
  const sum: TestSummary = { passed: 0, failed: 0 };
  let counted = false;
  for (let boot = 0;; boot++) {
    const r = await bootOnce(profile, pending, context);
    if (r.status !== 0) status = r.status;
    if (r.summary !== undefined) {
      sum.passed += r.summary.passed;
      sum.failed += r.summary.failed;
      counted = true;
    }
    if (r.rest === undefined || r.rest.length === 0) break;
    if (boot >= MAX_REBOOTS) {
      // Out of boots: what never ran fails, as the files declare.
      for (const f of r.rest) sum.failed += declaredTests(Deno.readTextFileSync(f));
      console.error(
        `kernel tests [${profile.name}]: ${r.rest.length} files never ran (the guest locked up ` +
          `${boot + 1} times), counted as failed`,
      );
      break;
    }
    context.progress.step(
      `[${profile.name}] booting again for the ${r.rest.length} files the locked-up guest ` +
        "never began",
    );
    pending = r.rest;
  }
  return { status, summary: counted ? sum : undefined };
}

async function bootOnce(
  profile: BootProfile,
  files: string[],
  context: BootContext,
): Promise<{ status: number; summary?: TestSummary; rest?: string[] }> {
  const { options, progress, kernels } = context;
  const extraEnv: Record<string, string> = { DENO_VMM_KERNEL_PROFILE: profile.name };
  let kernel: Kernel;
  const modules: string[] = [];
  if (profile.kernel === "custom-6.12") {
    const custom = await kernels.custom();
    kernel = custom;
    extraEnv.DENO_VMM_LINUX_SRC = custom.srcDir;
    for (const name of profile.modules) {
      modules.push(await ensureTestModule(name, { kernel: custom, progress }));
    }
  } else if (profile.kernel === "stock-6.12") {
    const stock = await kernels.stock612();
    kernel = stock;
    for (const name of profile.modules) {
      // mtty.c comes from the source package of the same version.
      const sources = name === "mtty" ? [stock.mttySource] : [];
      modules.push(await ensureTestModule(name, { kernel: stock, sources, progress }));
    }
  } else {
    kernel = await kernels.stock();
  }
  progress.step(`[${profile.name}] kernel ${kernel.version}: ${profile.description}`);
  const initramfs = await ensureInitramfs(CACHE, {
    kernel,
    modules: profile.kernel === "stock-6.12" ? GUEST_MODULES_6_12 : GUEST_MODULES,
    progress,
  });
  if (files.some((f) => /\/kvm_[^/]*_test\.ts$/.test(f))) {
    // The guest finds the KVM test guest in the same cache (its root is ours).
    progress.step(`[${profile.name}] building the KVM test guest on the host`);
    await buildGuestImage();
  }
  const fileNonce = crypto.randomUUID().replaceAll("-", "");
  const tally = new FileTally({
    nonce: fileNonce,
    files: files.map((f) => f.slice(PROJECT.length + 1)),
    declared: files.map((f) => declaredTests(Deno.readTextFileSync(f))),
  });
  const jobDir = await makeJobDir(
    jobScript({
      project: PROJECT,
      files,
      denoFlags: options.denoFlags,
      denoDir: context.denoDir,
      fileTimeoutSeconds: options.fileTimeoutSeconds,
      fileNonce,
      env: extraEnv,
    }),
    modules,
  );
  cleanups.push(() => Deno.removeSync(jobDir, { recursive: true }));

  progress.step(`[${profile.name}] booting the guest (timeout ${options.timeoutMs / 1000} s)`);
  const result = await runGuest({
    kernel,
    initramfs,
    jobDir,
    timeoutMs: options.timeoutMs,
    log: openLog(options.keepLog === undefined ? undefined : `${options.keepLog}.${profile.name}`),
    progress,
    onKill: (kill) => cleanups.push(kill),
    machine: profile.machine,
    tally,
    // The guest's own bound on each file, a minute of slack, then it is taken as locked up.
    stallMs: (options.fileTimeoutSeconds + 60) * 1000,
  });
  if (result.stalled !== undefined) tally.endRunning();
  for (const u of tally.unfinished) {
    console.error(
      `kernel tests [${profile.name}]: ${u.file} ${
        u.code === 124 || u.code === 137
          ? `did not finish within ${options.fileTimeoutSeconds} s`
          : `exited ${u.code} without a summary`
      }: ${u.passed} passed, ${u.failed} counted as failed`,
    );
  }
  if (result.status === undefined) {
    const tail = result.output.tail();
    console.error(`--- last ${tail.length} lines of the guest console ---`);
    for (const line of tail) console.error(line);
    if (result.qemuStderr.length > 0) {
      console.error("--- QEMU stderr ---");
      for (const line of result.qemuStderr) console.error(line);
    }
    console.error("---");
    const status = fail(result.reason ?? "the guest never reported");
    if (!tally.started) return { status };
    if (result.stalled !== undefined) {
      // The stuck file counts as failed above; the files not begun get a new boot.
      return { status, summary: { ...tally.totals }, rest: tally.notBegun().map((i) => files[i]) };
    }
    // What ended is counted; the rest of what the files declare failed.
    const rest = tally.notEnded();
    return {
      status,
      summary: {
        passed: tally.totals.passed + rest.passed,
        failed: tally.totals.failed + rest.failed,
      },
    };
  }
  progress.step(`[${profile.name}] guest reported exit status ${result.status}`);
  if (!tally.started) return { status: result.status, summary: result.output.summary };
  const rest = tally.notEnded();
  return {
    status: result.status,
    summary: {
      passed: tally.totals.passed + rest.passed,
      failed: tally.totals.failed + rest.failed,
    },
  };
}

async function runInGuest(options: Options, files: string[], progress: Progress) {
  const apt = new Apt(progress);
  progress.step("checking packages");
  await ensurePackages(apt, progress);
  await Deno.mkdir(CACHE, { recursive: true });
  const boots = plan(files, options.profiles);
  if (boots.size === 0) throw new HarnessError("No test files for the chosen profiles");

  progress.step("caching and type-checking the test files on the host");
  const denoDirPath = await denoDir(PROJECT);
  const all = [...new Set([...boots.values()].flat())];
  await exec([Deno.execPath(), "test", "--no-run", ...options.denoFlags, ...all], {
    cwd: PROJECT,
    timeoutMs: 600_000,
    inherit: true,
  }).catch((err) => {
    throw new HarnessError(`Cannot prepare the test files on the host: ${err.message}`, {
      cause: err,
    });
  });

  const kernels = new Kernels(apt, progress);
  const outcomes: BootOutcome[] = [];
  for (const [profile, profileFiles] of boots) {
    const declared = profileFiles.reduce((n, f) => n + declaredTests(Deno.readTextFileSync(f)), 0);
    let status: number;
    let summary: TestSummary | undefined;
    try {
      ({ status, summary } = await bootProfile(profile, profileFiles, {
        options,
        progress,
        kernels,
        denoDir: denoDirPath,
      }));
    } catch (err) {
      const message = err instanceof HarnessError ? err.message : String(err);
      console.error(`kernel tests [${profile.name}]: cannot boot: ${message}`);
      status = 1;
    }
    let outcome: BootOutcome;
    if (summary === undefined) {
      // The boot could not run its tests: every test it would have run failed.
      outcome = { profile: profile.name, passed: 0, failed: declared, ok: false };
      console.error(
        `kernel tests [${profile.name}]: FAILED: no test summary; ${declared} tests counted as failed`,
      );
    } else {
      const failed = status !== 0 && summary.failed === 0 ? 1 : summary.failed;
      outcome = { profile: profile.name, passed: summary.passed, failed, ok: status === 0 };
      if (status !== 0 && summary.failed === 0) {
        console.error(
          `kernel tests [${profile.name}]: FAILED: ${
            GUEST_STATUS[status] ?? `deno test exited ${status}`
          }`,
        );
      }
    }
    writeStdout(`kernel[${profile.name}]: ${outcome.passed} passed, ${outcome.failed} failed\n`);
    outcomes.push(outcome);
  }
  const passed = outcomes.reduce((n, o) => n + o.passed, 0);
  const failed = outcomes.reduce((n, o) => n + o.failed, 0);
  writeStdout(`kernel: ${passed} passed, ${failed} failed\n`);
  return outcomes.every((o) => o.ok) && failed === 0 ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  const options = parse(argv);
  if (!options) return 0;
  const progress = new Progress();
  const files = testFiles(options.files);
  const group = hostGroup(options);
  if (group === undefined) return await runInGuest(options, files, progress);
  const result = await runOnHost({
    project: PROJECT,
    group,
    files,
    denoFlags: options.denoFlags,
    timeoutMs: options.timeoutMs,
    log: openLog(options.keepLog),
    progress,
    onKill: (kill) => cleanups.push(kill),
  });
  if (result.status === undefined) {
    return fail(`deno test did not finish within ${options.timeoutMs / 1000} s`);
  }
  return finish(result.status, result.output.summary);
}

if (import.meta.main) {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      console.error(`kernel tests: interrupted by ${signal}`);
      cleanup();
      Deno.exit(code);
    });
  }
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    if (err instanceof HarnessError) {
      console.error(`kernel tests: ${err.message}`);
    } else {
      console.error(`kernel tests: unexpected error:`, err);
    }
    code = 1;
  }
  cleanup();
  Deno.exit(code);
}
