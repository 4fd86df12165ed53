import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { guestAddress as g } from "../sys/address.ts";
import { diffPageDigests, digestMemory, pageCrcs } from "./digest.ts";
import { GuestMemory } from "./guest_memory.ts";
import { SoftwareDirtyLog } from "./software_dirty_log.ts";

function pair(): [GuestMemory, GuestMemory] {
  const spec = [{ gpa: g(0n), size: 1n << 20n }, {
    gpa: g(1n << 21n),
    size: 1n << 20n,
    backing: "memfd" as const,
  }];
  return [GuestMemory.create(spec), GuestMemory.create(spec)];
}

Deno.test("digestMemory() is equal for equal RAM and names the pages that differ", () => {
  const [a, b] = pair();
  using _a = a;
  using _b = b;
  for (const m of [a, b]) m.fill(g(0x3000n), { length: 10000, value: 9 });
  assert.equal(digestMemory(a).hex, digestMemory(b).hex);
  assert.equal(
    digestMemory(a, { algorithm: "sha256" }).hex,
    digestMemory(b, { algorithm: "sha256" }).hex,
  );
  b.writeU8(g((1n << 21n) + 0x5001n), 1);
  b.writeU8(g(0xfffffn), 1);
  assert.notEqual(digestMemory(a).hex, digestMemory(b).hex);
  assert.notEqual(
    digestMemory(a, { algorithm: "sha256" }).hex,
    digestMemory(b, { algorithm: "sha256" }).hex,
  );
  assert.deepEqual(diffPageDigests(digestMemory(a), digestMemory(b)), [[0, 255], [1, 5]]);
});

Deno.test("digestMemory() covers the layout, and does not count as a write", () => {
  using a = GuestMemory.create([{ gpa: g(0n), size: 1n << 20n }]);
  using b = GuestMemory.create([{ gpa: g(1n << 20n), size: 1n << 20n }]);
  assert.notEqual(digestMemory(a).hex, digestMemory(b).hex);
  using log = new SoftwareDirtyLog(a);
  log.start();
  digestMemory(a);
  assert.ok(log.harvest()[0].isEmpty());
});

Deno.test("pageCrcs() is the zlib CRC-32 of each page", () => {
  const bytes = new Uint8Array(8192).map((_, i) => i * 7);
  assert.deepEqual([...pageCrcs(bytes)], [
    crc32(bytes.subarray(0, 4096)),
    crc32(bytes.subarray(4096)),
  ]);
  assert.throws(() => pageCrcs(new Uint8Array(100)), RangeError);
});
