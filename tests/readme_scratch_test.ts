// The README's scratch project, run as the README shows it: a project
// outside the checkout that reaches deno-vmm by path (Deno's `links`) and
// runs a scripted migration test against FakeKernel with the public API alone.
import assert from "node:assert/strict";
import { within } from "./_support.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The fenced block that follows `<!-- scratch-project: NAME -->` in the README. */
function block(readme: string, name: string): string {
  const marker = `<!-- scratch-project: ${name} -->`;
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README.md has no ${marker}`);
  const m = /```[a-z]*(?: ignore)?\n([\s\S]*?)```/.exec(readme.slice(at + marker.length));
  assert.ok(m !== null, `README.md has no code block after ${marker}`);
  return m[1];
}

Deno.test("README.md's scratch project imports deno-vmm/testing by path and its test passes", async () => {
  const readme = await Deno.readTextFile(`${root}/README.md`);
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-scratch-" });
  try {
    await Deno.symlink(root, `${dir}/deno-vmm`);
    await Deno.mkdir(`${dir}/scratch`);
    await Deno.writeTextFile(`${dir}/scratch/deno.json`, block(readme, "deno.json"));
    await Deno.writeTextFile(`${dir}/scratch/vm_test.ts`, block(readme, "vm_test.ts"));
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", "vm_test.ts"],
      cwd: `${dir}/scratch`,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const out = await within(child.output(), 120_000);
    if (out === "timeout") {
      child.kill("SIGKILL");
      await child.status;
      return assert.fail("the scratch project's test did not finish within 120 s");
    }
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /ok \| 1 passed \| 0 failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
