// The project's static checks, as `deno task check` and CI run them:
// formatting, lint, every entry point and README.md type-checked with their
// documentation's code, every JSDoc example run, the docs linted per entry
// point, and a publish dry run. All offline. Prints one line per check and
// exits non-zero if any failed.
//
//   deno run -A tests/check.ts

const root = new URL("..", import.meta.url).pathname;
const deno = Deno.execPath();

const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
const entries = Object.values(config.exports as Record<string, string>);

// The product's modules, for their JSDoc examples: everything tracked but
// tests, test helpers, benches and the kernel harness.
async function productModules(): Promise<string[]> {
  const out = await new Deno.Command("git", { args: ["ls-files", "*.ts"], cwd: root }).output();
  if (!out.success) throw new TypeError("Cannot list the project's files with git ls-files");
  const published = new Set([
    "tests/mod.ts",
    "tests/fake_kernel.ts",
    "tests/scenario.ts",
    "tests/cut_proxy.ts",
  ]);
  return new TextDecoder().decode(out.stdout).split("\n").filter((f) =>
    f.endsWith(".ts") && !f.endsWith("_test.ts") &&
    !f.startsWith("bench/") && !f.startsWith("tests/kernel/") && !f.startsWith(".ci/") &&
    (!f.startsWith("tests/") || published.has(f) || f.startsWith("tests/fake/"))
  );
}

const modules = await productModules();
const checks: [string, string[]][] = [
  ["fmt --check", ["fmt", "--check"]],
  ["lint", ["lint"]],
  ["check --doc (entry points, README.md)", ["check", "--doc", ...entries, "README.md"]],
  [`test --doc (${modules.length} modules)`, ["test", "--allow-all", "--doc", ...modules]],
  ...entries.map((e): [string, string[]] => [`doc --lint ${e}`, ["doc", "--lint", e]]),
  ["publish --dry-run", ["publish", "--dry-run", "--allow-dirty"]],
];

let failed = 0;
for (const [name, args] of checks) {
  const t0 = performance.now();
  const out = await new Deno.Command(deno, {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  if (out.success) {
    console.log(`check: ${name}: clean (${seconds} s)`);
    continue;
  }
  failed++;
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const lines = text.split("\n").filter((l) =>
    l.trim() !== "" && !/^\s+at |Stack backtrace|<unknown>/.test(l)
  );
  console.log(`check: ${name}: FAILED (exit ${out.code}, ${seconds} s)`);
  for (const l of lines.slice(-25)) console.log(`    ${l}`);
}
console.log(`check: ${checks.length - failed} clean, ${failed} failed`);
Deno.exit(failed > 0 ? 1 : 0);
