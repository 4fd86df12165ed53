// The whole test suite: the static checks (each counts as a test), the fast
// suite on this host (against the fake kernel, and the host-conformance group
// against this host's own kernel), the real-kernel KVM tests on this host when
// it has a usable /dev/kvm, then the real-kernel suites inside the QEMU guests
// (which always have /dev/kvm, through nested virtualization). Streams them,
// then prints the reason of every skipped host-conformance test and, last,
// one plain line: "N passed, N failed", with ", N skipped" when any were.
// Exits non-zero if anything failed or could not run; a test ignored without
// a printed reason counts as failed.
//
//   deno run -A tests/all.ts [--host-only | --kernel-only] [--no-checks]

import {
  checkTotal,
  closingLines,
  denoSummary,
  kernelTotal,
  skipReason,
  type Tally,
} from "./_summary.ts";

const root = new URL("..", import.meta.url).pathname;
const args = new Set(Deno.args);

interface Outcome extends Tally {
  code: number;
}

const reasons: string[] = [];

async function run(label: string, cmd: string[]): Promise<Outcome> {
  console.error(`\n== ${label}: ${cmd.join(" ")}`);
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  let last: Tally | undefined;
  let total: Tally | undefined;
  let tail = "";
  const decoder = new TextDecoder();
  const read = (line: string) => {
    last = denoSummary(line) ?? checkTotal(line) ?? last;
    total = kernelTotal(line) ?? total;
    const reason = skipReason(line);
    if (reason !== undefined) reasons.push(reason);
  };
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    tail += decoder.decode(chunk, { stream: true });
    const lines = tail.split("\n");
    tail = lines.pop() ?? "";
    lines.forEach(read);
  }
  read(tail);
  if (total !== undefined) last = total; // several guests: their sum, not the last one's line
  const { code } = await child.status;
  if (last === undefined) {
    console.error(`== ${label}: no test summary (exit ${code}); counted as one failure`);
    return { passed: 0, failed: 1, ignored: 0, code: code || 1 };
  }
  const outcome: Outcome = { ...(last as Tally), code };
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
const { lines, failed } = closingLines(outcomes, reasons);
for (const line of lines) console.log(line);
Deno.exit(failed > 0 || outcomes.some((o) => o.code !== 0) ? 1 : 0);
