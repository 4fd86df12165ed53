// The realistic RAM image of bench/_realistic_image.ts: exact proportions,
// runs, determinism for a seed, and page-cache-like file pages.
import assert from "node:assert/strict";
import {
  classify,
  DEFAULT_MIX,
  FilePages,
  KIND,
  pageCounts,
  planPages,
  writeRealisticImage,
} from "../bench/_realistic_image.ts";

Deno.test("pageCounts() gives each kind its share, the remainder to zero pages", () => {
  assert.deepEqual(pageCounts(1000, DEFAULT_MIX), {
    zero: 400,
    text: 250,
    binary: 250,
    random: 100,
  });
  const c = pageCounts(1001, { zero: 0.1, text: 0.3, binary: 0.3, random: 0.3 });
  assert.equal(c.zero + c.text + c.binary + c.random, 1001);
  assert.deepEqual([c.text, c.binary, c.random], [300, 300, 300]);
  assert.throws(() => pageCounts(10, { zero: 0.5, text: 0.5, binary: 0.5, random: 0 }), /sum/);
});

Deno.test("planPages() lays out the counts in runs of at most 64, the same for a seed", () => {
  const pages = 20_000;
  const a = planPages(pages, DEFAULT_MIX, 7);
  assert.deepEqual(a, planPages(pages, DEFAULT_MIX, 7));
  assert.notDeepEqual(a, planPages(pages, DEFAULT_MIX, 8));
  const counts = [0, 0, 0, 0];
  for (const k of a) counts[k]++;
  const want = pageCounts(pages, DEFAULT_MIX);
  assert.deepEqual(counts, [want.zero, want.text, want.binary, want.random]);
  // Runs of one kind: many of them, and no run of the plan's own making past 64
  // (two neighbours of one kind can join, so check the number of changes instead).
  let changes = 0;
  for (let i = 1; i < pages; i++) if (a[i] !== a[i - 1]) changes++;
  assert.ok(changes > pages / 64 && changes < pages / 4, `${changes} kind changes`);
});

Deno.test("classify() tells ELF files, text and anything else apart", () => {
  const enc = new TextEncoder();
  assert.equal(classify(new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1])), "binary");
  assert.equal(classify(enc.encode("#!/bin/sh\necho hi\n\tdone\n")), "text");
  assert.equal(classify(new Uint8Array([0x1f, 0x8b, 8, 0])), "other");
  assert.equal(classify(new Uint8Array()), "other");
});

Deno.test("FilePages pads each file's last page, skips zero pages and starts over", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-image-" });
  try {
    await Deno.writeFile(`${dir}/a`, new Uint8Array(5000).fill(1));
    await Deno.writeFile(`${dir}/b`, new Uint8Array(4096)); // all zero: skipped
    await Deno.writeFile(`${dir}/c`, new Uint8Array(10).fill(3));
    const src = new FilePages([`${dir}/a`, `${dir}/b`, `${dir}/c`]);
    const page = new Uint8Array(4096);
    const seen: number[][] = [];
    for (let i = 0; i < 4; i++) {
      src.read(page);
      seen.push([page[0], page[903], page[904], page[4095]]);
    }
    src.close();
    assert.deepEqual(seen, [[1, 1, 1, 1], [1, 1, 0, 0], [3, 0, 0, 0], [1, 1, 1, 1]]);
    assert.equal(src.wraps, 1);
    assert.equal(src.pages, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeRealisticImage() writes the same bytes for a seed, with the zero share at least", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-image-" });
  try {
    await Deno.mkdir(`${dir}/text`);
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(`${dir}/text/doc.txt`, "page cache words\n".repeat(3000));
    const elf = new Uint8Array(20_000).map((_, i) => (i * 7) & 0xff);
    elf.set([0x7f, 0x45, 0x4c, 0x46]);
    await Deno.writeFile(`${dir}/bin/tool`, elf);
    const roots = { text: [`${dir}/text`], binary: [`${dir}/bin`] };
    const bytes = 256 * 4096;
    const s = await writeRealisticImage(`${dir}/a.img`, bytes, 5, DEFAULT_MIX, roots);
    await writeRealisticImage(`${dir}/b.img`, bytes, 5, DEFAULT_MIX, roots);
    await writeRealisticImage(`${dir}/c.img`, bytes, 6, DEFAULT_MIX, roots);
    const [a, b, c] = await Promise.all(
      ["a", "b", "c"].map((n) => Deno.readFile(`${dir}/${n}.img`)),
    );
    assert.equal(a.length, bytes);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.deepEqual(s.pages, pageCounts(256, DEFAULT_MIX));
    let zero = 0;
    for (let p = 0; p < 256; p++) {
      if (a.subarray(p * 4096, (p + 1) * 4096).every((x) => x === 0)) zero++;
    }
    assert.equal(zero, s.pages.zero);
    assert.ok(s.textWraps > 0 && s.binaryWraps > 0, "the small corpus was reread");
    assert.equal(KIND.zero, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
