import assert from "node:assert/strict";
import { arrayRam } from "./ram.ts";
import { guestAddress as g } from "../../sys/address.ts";

Deno.test("arrayRam() hands out zero-copy views inside the layout", () => {
  const ram = arrayRam([{ gpa: g(0x1000n), size: 0x2000n }, { gpa: g(0x10000n), size: 0x1000n }]);
  ram.view(g(0x1800n), 2).set([5, 6]);
  assert.deepEqual([...ram.view(g(0x1000n), 0x2000)].slice(0x800, 0x802), [5, 6]);
  assert.equal(ram.view(g(0x10000n), 0x1000).length, 0x1000);
  assert.equal(ram.layout.length, 2);
});

Deno.test("arrayRam() view() throws RangeError outside the layout", () => {
  const ram = arrayRam([{ gpa: g(0x1000n), size: 0x2000n }, { gpa: g(0x10000n), size: 0x1000n }]);
  assert.throws(() => ram.view(g(0x0n), 1), RangeError);
  assert.throws(() => ram.view(g(0x2fffn), 2), RangeError);
  assert.throws(() => ram.view(g(0x3000n), 0x1000), RangeError);
  assert.throws(() => ram.view(g(0x1000n), -1), RangeError);
});

Deno.test("arrayRam() rejects overlapping or empty regions", () => {
  assert.throws(() => arrayRam([{ gpa: g(0n), size: 0n }]), RangeError);
  assert.throws(
    () => arrayRam([{ gpa: g(0n), size: 0x2000n }, { gpa: g(0x1000n), size: 0x1000n }]),
    RangeError,
  );
});
