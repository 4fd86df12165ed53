import assert from "node:assert/strict";
import { GuestMemory } from "../memory/guest_memory.ts";
import { guestAddress } from "../sys/address.ts";
import { fillRam, wordView } from "./fill.ts";

Deno.test("wordView() covers views of 4 GiB and more (no 32-bit wrap)", () => {
  // Mapped, never touched: NORESERVE anonymous memory costs nothing until written.
  const size = 2 ** 32 + 4096;
  using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(size) }]);
  const view = mem.view(guestAddress(0n), size);
  assert.equal(wordView(view).length, size / 4);
  assert.equal(wordView(view.subarray(0, 2 ** 32)).length, 2 ** 30);
});

Deno.test("fillRam() fills every page of each pattern, deterministically for a seed", () => {
  const a = new Uint8Array(16 * 4096);
  const b = new Uint8Array(16 * 4096);
  fillRam(a, { pattern: "half", seed: 3 });
  fillRam(b, { pattern: "half", seed: 3 });
  assert.deepEqual(a, b);
  for (let p = 0; p < 16; p++) {
    const page = a.subarray(p * 4096, (p + 1) * 4096);
    assert.equal(page.some((x) => x !== 0), p % 2 === 0, `page ${p}`);
  }
  fillRam(a, { pattern: "random", seed: 4 });
  assert.ok(a.subarray(a.length - 4096).some((x) => x !== 0), "the last page is filled");
});

Deno.test("fillRam() text fills every other page with words, deterministically for a seed", () => {
  const a = new Uint8Array(16 * 4096);
  const b = new Uint8Array(16 * 4096);
  fillRam(a, { pattern: "text", seed: 5 });
  fillRam(b, { pattern: "text", seed: 5 });
  assert.deepEqual(a, b);
  for (let p = 0; p < 16; p++) {
    const page = a.subarray(p * 4096, (p + 1) * 4096);
    if (p % 2 === 1) assert.ok(page.every((x) => x === 0), `page ${p} is zero`);
    else assert.ok(page.every((x) => x === 10 || (x >= 32 && x < 127)), `page ${p} is text`);
  }
  fillRam(b, { pattern: "text", seed: 6 });
  assert.notDeepEqual(a, b);
});
