import assert from "node:assert/strict";
import { MmioBus, PioBus } from "./io_bus.ts";

Deno.test("PioBus.register() finds handlers by port range and refuses overlaps", () => {
  const bus = new PioBus();
  const a = { read: () => 1 };
  const b = { read: () => 2 };
  const lease = bus.register({ base: 0x3f8, length: 8 }, a);
  bus.register({ base: 0x400, length: 1 }, b);
  assert.equal(bus.find(0x3f8), a);
  assert.equal(bus.find(0x3ff), a);
  assert.equal(bus.find(0x400), b);
  assert.equal(bus.find(0x401), undefined);
  assert.throws(
    () => bus.register({ base: 0x3fc, length: 8 }, b),
    /ports \[0x3fc, 0x404\): it overlaps \[0x3f8, 0x400\)/,
  );
  assert.throws(() => bus.register({ base: 0x10, length: 0 }, b), /empty/);
  lease[Symbol.dispose]();
  lease[Symbol.dispose]();
  assert.equal(bus.find(0x3f8), undefined);
  assert.deepEqual([...bus.counts], [[0x401, 1], [0x3f8, 1]]);
});

Deno.test("MmioBus.register() finds handlers by guest-physical range", () => {
  const bus = new MmioBus();
  const dev = { read: () => 7n };
  using _lease = bus.register({ base: 0xfee0_0000n, length: 0x1000n }, dev);
  assert.equal(bus.find(0xfee0_0fffn), dev);
  assert.equal(bus.find(0xfee0_1000n), undefined);
  assert.throws(() => bus.register({ base: 0xfee0_0800n, length: 0x100n }, dev), /overlaps/);
});
