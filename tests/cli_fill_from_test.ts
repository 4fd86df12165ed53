// `migrate --fill-from FILE`: the RAM starts as the file's bytes (the same
// digest as the built-in fill that wrote them), and bad files fail in one line.
import assert from "node:assert/strict";
import { startCli } from "./_support.ts";
import { fillRam } from "../cli/fill.ts";

async function sourceDigest(dir: string, name: string, extra: string[]): Promise<string> {
  await using src = startCli([
    ...["migrate", "--to", `file:${dir}/${name}.mig`, "--ram", "4M"],
    ...["--report", `${dir}/${name}.json`, ...extra],
  ]);
  assert.equal((await src.exit()).code, 0, src.stderr.join("\n"));
  await using dst = startCli(["receive", "--from", `file:${dir}/${name}.mig`, "--ram", "4M"]);
  assert.equal((await dst.exit()).code, 0, dst.stderr.join("\n"));
  return JSON.parse(await Deno.readTextFile(`${dir}/${name}.json`)).sourceDigest;
}

Deno.test("migrate --fill-from starts from the file's bytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-fill-from-" });
  try {
    const image = new Uint8Array(4 << 20);
    fillRam(image, { pattern: "text", seed: 9 });
    await Deno.writeFile(`${dir}/ram.img`, image);
    const fromFile = await sourceDigest(dir, "file", ["--fill-from", `${dir}/ram.img`]);
    const builtIn = await sourceDigest(dir, "text", ["--fill", "text", "--seed", "9"]);
    const other = await sourceDigest(dir, "other", ["--fill", "text", "--seed", "10"]);
    assert.equal(fromFile, builtIn);
    assert.notEqual(fromFile, other);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate --fill-from refuses a file of another size, a missing one, and --fill", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-fill-from-" });
  try {
    await Deno.writeFile(`${dir}/small.img`, new Uint8Array(4096));
    const cases: [string[], RegExp][] = [
      [["--fill-from", `${dir}/small.img`], /small\.img holds 4096 bytes; the RAM is 4194304$/],
      [["--fill-from", `${dir}/none.img`], /--fill-from .*none\.img: /],
      [["--fill-from", `${dir}/small.img`, "--fill", "zero"], /exclude each other/],
    ];
    for (const [extra, want] of cases) {
      await using src = startCli(["migrate", "--to", `file:${dir}/x.mig`, "--ram", "4M", ...extra]);
      assert.equal((await src.exit()).code, 2, src.stderr.join("\n"));
      const lines = src.stderr.filter((l) => l.trim() !== "");
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(lines[0], want);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
