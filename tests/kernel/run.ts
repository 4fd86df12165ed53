/**
 * Runs the real-kernel tests (`tests/kernel/*_test.ts`) against the real Linux
 * VFIO stack.
 *
 * By default it boots a QEMU guest (TCG, emulated VT-d, QEMU's edu device
 * bound to vfio-pci), mounts this host's root in it, and runs this host's
 * `deno test` there on the test files, with `DENO_VMM_VFIO_GROUP` set to the
 * edu device's IOMMU group. It installs the Debian packages it needs and
 * caches the kernel and initramfs in `tests/kernel/.cache/`.
 *
 * With `--host --group N` (or `DENO_VMM_VFIO_GROUP=N` and `/dev/vfio/N`
 * present) it runs the same files directly on this host instead.
 *
 * ```sh
 * deno run -A tests/kernel/run.ts [--timeout SECONDS] [--host --group N]
 *   [--keep-log FILE] [test files or dirs...] [-- deno test flags...]
 * ```
 *
 * stdout gets the guest's serial console (with `deno test`'s own output) and,
 * last, `kernel: N passed, M failed`. The exit code is `deno test`'s, or 1
 * when the guest never reported.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { exec, HarnessError, Progress } from "./harness/exec.ts";
import { runOnHost } from "./harness/host.ts";
import { ensureInitramfs } from "./harness/initramfs.ts";
import { denoDir, jobScript, makeJobDir } from "./harness/job.ts";
import { ensureKernel } from "./harness/kernel.ts";
import { type TestSummary, writeStdout } from "./harness/output.ts";
import { Apt, ensurePackages } from "./harness/packages.ts";
import { buildGuestImage } from "../../kvm/guest/build.ts";
import { runGuest } from "./harness/qemu.ts";

const KERNEL_TESTS = decodeURIComponent(new URL(".", import.meta.url).pathname).replace(/\/$/, "");
const PROJECT = KERNEL_TESTS.replace(/\/tests\/kernel$/, "");
const CACHE = `${KERNEL_TESTS}/.cache`;
const SKIP_DIRS = new Set([".cache", "harness", "node_modules"]);

const USAGE =
  `Usage: deno run -A tests/kernel/run.ts [options] [test files or dirs...] [-- deno test flags...]

Runs the real-kernel tests in a QEMU guest with a vfio-pci device (default:
every *_test.ts under tests/kernel/), or directly on this host with --host.

Options:
  --timeout SECONDS  bound on the guest (or host) test run, default 300
  --host             run on this host, with a real VFIO group
  --group N          the IOMMU group for --host (default: $DENO_VMM_VFIO_GROUP)
  --keep-log FILE    also write the raw console log to FILE
  -h, --help         show this help`;

interface Options {
  timeoutMs: number;
  host: boolean;
  group: string | undefined;
  keepLog: string | undefined;
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

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
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
        host: { type: "boolean" },
        group: { type: "string" },
        "keep-log": { type: "string" },
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
  const timeout = Number(values.timeout ?? "300");
  if (!(timeout > 0)) throw new HarnessError(`--timeout wants seconds > 0, not ${values.timeout}`);
  if (values.group !== undefined && !values.host) {
    throw new HarnessError("--group goes with --host");
  }
  return {
    timeoutMs: timeout * 1000,
    host: values.host ?? false,
    group: values.group,
    keepLog: values["keep-log"],
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

async function runInGuest(options: Options, files: string[], progress: Progress) {
  const apt = new Apt(progress);
  progress.step("checking packages");
  await ensurePackages(apt, progress);
  await Deno.mkdir(CACHE, { recursive: true });
  const kernel = await ensureKernel(CACHE, { apt, progress });
  progress.step(`kernel ${kernel.version}`);
  const initramfs = await ensureInitramfs(CACHE, { kernel, progress });

  progress.step("caching and type-checking the test files on the host");
  const dir = await denoDir(PROJECT);
  await exec([Deno.execPath(), "test", "--no-run", ...options.denoFlags, ...files], {
    cwd: PROJECT,
    timeoutMs: 600_000,
    inherit: true,
  }).catch((err) => {
    throw new HarnessError(`Cannot prepare the test files on the host: ${err.message}`, {
      cause: err,
    });
  });

  if (files.some((f) => /\/kvm_[^/]*_test\.ts$/.test(f))) {
    // The guest finds the KVM test guest in the same cache (its root is ours).
    progress.step("building the KVM test guest on the host");
    await buildGuestImage();
  }

  const jobDir = await makeJobDir(
    jobScript({ project: PROJECT, files, denoFlags: options.denoFlags, denoDir: dir }),
  );
  cleanups.push(() => Deno.removeSync(jobDir, { recursive: true }));

  progress.step(`booting the guest (timeout ${options.timeoutMs / 1000} s)`);
  const result = await runGuest({
    kernel,
    initramfs,
    jobDir,
    timeoutMs: options.timeoutMs,
    log: openLog(options.keepLog),
    progress,
    onKill: (kill) => cleanups.push(kill),
  });
  if (result.status === undefined) {
    const tail = result.output.tail();
    console.error(`--- last ${tail.length} lines of the guest console ---`);
    for (const line of tail) console.error(line);
    if (result.qemuStderr.length > 0) {
      console.error("--- QEMU stderr ---");
      for (const line of result.qemuStderr) console.error(line);
    }
    console.error("---");
    return fail(result.reason ?? "the guest never reported");
  }
  progress.step(`guest reported exit status ${result.status}`);
  return finish(result.status, result.output.summary);
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
