// The whole test suite: the static checks (each one counts as a test), the
// fast suite on this host (against the fake kernel and this host's own
// kernel), the real-kernel KVM tests on this host when it has a usable
// /dev/kvm, then the real-kernel suite inside the QEMU guests (which always
// have /dev/kvm, through nested virtualization). Streams them, then prints
// one plain line, "N passed, N failed", and exits non-zero if anything
// failed or could not run.
//
//   deno run -A tests/all.ts [--host-only | --kernel-only] [--no-checks]

const root = new URL("..", import.meta.url).pathname;
const args = new Set(Deno.args);

interface Outcome {
  passed: number;
  failed: number;
  code: number;
}

// deno test's closing line: "ok | 12 passed (3 steps) | 0 failed (1s)".
const SUMMARY = /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/;
// The kernel harness's total over every guest it booted: "kernel: 30 passed, 0 failed".
const KERNEL_TOTAL = /^kernel: (\d+) passed, (\d+) failed$/;
// tests/check.ts's closing line: "check: 11 clean, 0 failed".
const CHECK_TOTAL = /^check: (\d+) clean, (\d+) failed$/;

async function run(label: string, cmd: string[]): Promise<Outcome> {
  console.error(`\n== ${label}: ${cmd.join(" ")}`);
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  let last: RegExpExecArray | null = null;
  let total: RegExpExecArray | null = null;
  let tail = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    tail += decoder.decode(chunk, { stream: true });
    const lines = tail.split("\n");
    tail = lines.pop() ?? "";
    for (const line of lines) {
      last = SUMMARY.exec(line) ?? CHECK_TOTAL.exec(line) ?? last;
      total = KERNEL_TOTAL.exec(line) ?? total;
    }
  }
  last = SUMMARY.exec(tail) ?? CHECK_TOTAL.exec(tail) ?? last;
  total = KERNEL_TOTAL.exec(tail) ?? total;
  if (total !== null) last = total; // several guests: their sum, not the last one's line
  const { code } = await child.status;
  if (last === null) {
    console.error(`== ${label}: no test summary (exit ${code}); counted as one failure`);
    return { passed: 0, failed: 1, code: code || 1 };
  }
  const outcome = { passed: Number(last[1]), failed: Number(last[2]), code };
  if (code !== 0 && outcome.failed === 0) outcome.failed = 1;
  return outcome;
}

const deno = Deno.execPath();
const outcomes: Outcome[] = [];
if (!args.has("--kernel-only") && !args.has("--no-checks")) {
  outcomes.push(await run("static checks", [deno, "run", "-A", "tests/check.ts"]));
}
if (!args.has("--kernel-only")) {
  outcomes.push(
    await run("host tests", [deno, "test", "--allow-all", "--ignore=tests/kernel/,bench/"]),
  );
}
if (!args.has("--kernel-only")) {
  const kvmTests = [...Deno.readDirSync(`${root}tests/kernel`)]
    .map((e) => e.name).filter((n) => /^kvm_.*_test\.ts$/.test(n)).sort()
    .map((n) => `tests/kernel/${n}`);
  let kvm: string;
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    kvm = "usable";
  } catch (e) {
    kvm = (e as Error).name;
  }
  if (kvm === "usable") {
    outcomes.push(
      await run("real-kernel KVM tests (this host's /dev/kvm)", [
        deno,
        "test",
        "--allow-all",
        ...kvmTests,
      ]),
    );
  } else {
    console.error(
      `\n== real-kernel KVM tests: not on this host (/dev/kvm: ${kvm}); in the QEMU guest only`,
    );
  }
}
if (!args.has("--host-only")) {
  outcomes.push(
    await run("real-kernel tests (QEMU guest)", [deno, "run", "-A", "tests/kernel/run.ts"]),
  );
}
const passed = outcomes.reduce((n, o) => n + o.passed, 0);
const failed = outcomes.reduce((n, o) => n + o.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed > 0 || outcomes.some((o) => o.code !== 0) ? 1 : 0);
