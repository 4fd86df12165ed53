// The benches' command lines (bench/_args.ts): each script run with --help
// prints a usage naming every flag its benchArgs call declares, with its
// default, and exits 0; an unknown flag or a flag without its value gets one
// stderr line naming it and exit 2. The flags come from each script's source,
// so a flag added without its usage line fails here.
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;
const SCRIPTS = [
  "bench/kvm_downtime.ts",
  "bench/kvm_harvest.ts",
  "bench/limits.ts",
  "bench/memory_harvest.ts",
  "bench/migrate_channels.ts",
  "bench/migrate_compress.ts",
  "bench/migrate_tcp.ts",
  "bench/migrate_tls.ts",
];
const TIMEOUT_MS = 60_000;
const tasks = Object.entries(
  JSON.parse(Deno.readTextFileSync(`${root}deno.json`)).tasks as Record<string, string>,
);

interface Flag {
  name: string;
  default?: string;
}

/** The options object of the script's `benchArgs(name, usage, {...})` call. */
function declaredFlags(source: string, script: string): Flag[] {
  const call = source.indexOf("benchArgs(");
  assert.ok(call >= 0, `${script} does not call benchArgs()`);
  const open = source.indexOf("{", call);
  let depth = 0;
  let end = open;
  for (; end < source.length; end++) {
    if (source[end] === "{") depth++;
    if (source[end] === "}" && --depth === 0) break;
  }
  const body = source.slice(open + 1, end);
  const flags = [...body.matchAll(
    /"?([a-z][\w-]*)"?\s*:\s*\{\s*type:\s*"(?:string|boolean)"(?:\s*,\s*default:\s*"([^"]*)")?/g,
  )].map((m) => ({ name: m[1], default: m[2] }));
  assert.ok(flags.length > 0, `${script}: no flags found in its benchArgs() options`);
  return flags;
}

/** Runs the script with `args`, killed after TIMEOUT_MS. */
async function run(script: string, args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}${script}`, ...args],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, TIMEOUT_MS);
  try {
    const out = await child.output();
    assert.ok(!timedOut, `${script} ${args.join(" ")}: still running after ${TIMEOUT_MS} ms`);
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** `--name` as a whole word, not the start of a longer flag. */
const flagPattern = (name: string) => new RegExp(`(?<![\\w-])--${name}(?![\\w-])`);

function assertOneLineError(
  script: string,
  r: { code: number; stdout: string; stderr: string },
  flag: string,
) {
  assert.equal(r.code, 2, `${script}: exit ${r.code}, stderr ${r.stderr}`);
  assert.equal(r.stdout, "", `${script}: wrote to stdout`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${script}: more than one stderr line:\n${r.stderr}`);
  assert.ok(lines[0].includes(flag), `${script}: ${lines[0]} does not name ${flag}`);
  assert.match(lines[0], /\(see --help\)$/);
}

for (const script of SCRIPTS) {
  const source = Deno.readTextFileSync(`${root}${script}`);
  const flags = declaredFlags(source, script);

  Deno.test(`${script} --help names every flag and its default`, async () => {
    assert.doesNotMatch(source, /from "node:util"/, `${script} should parse through _args.ts`);
    const r = await run(script, ["--help"]);
    assert.equal(r.code, 0, `exit ${r.code}, stderr ${r.stderr}`);
    const task = tasks.find(([, command]) => command.includes(script))?.[0];
    if (task !== undefined) assert.ok(r.stdout.includes(task), `the usage does not name ${task}`);
    else assert.ok(r.stdout.includes("Usage"), "the usage does not say Usage");
    assert.match(r.stdout, /-h, --help/);
    const lines = r.stdout.split("\n");
    for (const flag of flags) {
      const at = lines.findIndex((l) => /^\s+--/.test(l) && flagPattern(flag.name).test(l));
      assert.ok(at >= 0, `the usage has no line for --${flag.name}:\n${r.stdout}`);
      if (flag.default === undefined) continue;
      // The flag's line and its continuation lines, up to the next flag.
      let next = at + 1;
      while (next < lines.length && /^\s{4,}[^\s-]/.test(lines[next])) next++;
      const entry = lines.slice(at, next).join(" ").replace(/\s+/g, " ");
      assert.ok(
        entry.includes(`default ${flag.default}`),
        `--${flag.name}: "default ${flag.default}" is not in "${entry}"`,
      );
    }
  });

  Deno.test(`${script} refuses an unknown flag and a missing value in one line`, async () => {
    assertOneLineError(script, await run(script, ["--no-such-flag"]), "--no-such-flag");
    const last = flags[flags.length - 1].name;
    assertOneLineError(script, await run(script, [`--${last}`]), `--${last}`);
  });
}
