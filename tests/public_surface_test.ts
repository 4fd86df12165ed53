// The exported names of every entry point, pinned: a change to the public
// surface must be deliberate. After one, regenerate the snapshot with
//   DENO_VMM_UPDATE_SURFACE=1 deno test -A tests/public_surface_test.ts
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;
const SNAPSHOT = `${root}tests/public_surface.json`;
const TYPE_KINDS = new Set(["interface", "typeAlias"]);

async function surface(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", entry],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `deno doc ${entry}: ${new TextDecoder().decode(out.stderr)}`);
  const doc = JSON.parse(new TextDecoder().decode(out.stdout));
  const names = new Set<string>();
  for (const node of Object.values(doc.nodes) as { symbols?: unknown[] }[]) {
    for (const s of (node.symbols ?? []) as { name: string; declarations: { kind: string }[] }[]) {
      const typeOnly = s.declarations.every((d) => TYPE_KINDS.has(d.kind));
      names.add(typeOnly ? `type ${s.name}` : s.name);
    }
  }
  return [...names].sort((a, b) => a.replace(/^type /, "").localeCompare(b.replace(/^type /, "")));
}

Deno.test("every entry point exports exactly the names in tests/public_surface.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  const now: Record<string, string[]> = {};
  for (const [key, path] of Object.entries(config.exports as Record<string, string>)) {
    now[key] = await surface(path);
  }
  if (Deno.env.get("DENO_VMM_UPDATE_SURFACE") === "1") {
    await Deno.writeTextFile(SNAPSHOT, JSON.stringify(now, null, 2) + "\n");
  }
  const pinned = JSON.parse(await Deno.readTextFile(SNAPSHOT));
  assert.deepEqual(Object.keys(now), Object.keys(pinned), "the entry points");
  for (const key of Object.keys(now)) {
    const added = now[key].filter((n) => !pinned[key].includes(n));
    const removed = pinned[key].filter((n: string) => !now[key].includes(n));
    assert.deepEqual(
      { added, removed },
      { added: [], removed: [] },
      `${key}: the surface changed; if on purpose, regenerate tests/public_surface.json`,
    );
  }
  // The root stays a curated handful: the values and the types most programs need.
  const rootValues = now["."].filter((n) => !n.startsWith("type "));
  assert.ok(rootValues.length <= 40, `the root exports ${rootValues.length} values`);
});
