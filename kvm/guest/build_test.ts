import assert from "node:assert/strict";
import { buildGuestImage } from "./build.ts";
import { GUEST_LAYOUT } from "./layout.ts";

Deno.test("buildGuestImage() builds the same bytes twice and reuses its cache", async () => {
  const a = await Deno.makeTempDir({ prefix: "deno-vmm-guest-a-" });
  const b = await Deno.makeTempDir({ prefix: "deno-vmm-guest-b-" });
  try {
    const first = await buildGuestImage({ cacheDir: a });
    const second = await buildGuestImage({ cacheDir: b });
    assert.equal(first.sha256, second.sha256, "reproducible");
    assert.deepEqual(first.bytes, second.bytes);
    assert.ok(first.bytes.byteLength > 0 && first.bytes.byteLength <= GUEST_LAYOUT.codeMax);
    assert.equal(first.bytes[0], 0xe8, "the image starts with the entry's call guest_main");
    const mtime = (await Deno.stat(first.path)).mtime;
    const again = await buildGuestImage({ cacheDir: a });
    assert.equal(again.path, first.path);
    assert.deepEqual((await Deno.stat(again.path)).mtime, mtime, "served from the cache");
    assert.deepEqual([...Deno.readDirSync(a)].map((e) => e.name), [first.path.split("/").pop()]);
  } finally {
    await Deno.remove(a, { recursive: true });
    await Deno.remove(b, { recursive: true });
  }
});
