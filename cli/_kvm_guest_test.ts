import assert from "node:assert/strict";
import { parseHeartbeat, TEST_GUEST_DEVICE_ID, TestGuestDevice } from "./_kvm_guest.ts";

const encode = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const VIEW = {
  seed: 7,
  dataPages: 1792,
  heartbeatMs: 100,
  counter: "136",
  checksum: "18446744073709551615",
  pageSum: "5",
  heartbeats: "5",
  boots: "1",
  checksumOk: true,
};

Deno.test("TestGuestDevice.loadState() takes the source's view and escapes its heartbeat line", async () => {
  const d = new TestGuestDevice();
  assert.equal(d.id, TEST_GUEST_DEVICE_ID);
  await d.loadState(encode({ ...VIEW, lastHeartbeat: "heartbeat 5 counter=130\x1b[2J" }));
  assert.equal(d.view?.counter, "136");
  assert.equal(d.view?.lastHeartbeat?.includes("\x1b"), false);
});

Deno.test("TestGuestDevice.loadState() refuses a view with fields missing or mistyped", async () => {
  for (
    const bad of [
      new Uint8Array([0xff, 0x00]),
      encode(null),
      encode({ ...VIEW, counter: 136 }),
      encode({ ...VIEW, counter: "1".repeat(21) }),
      encode({ ...VIEW, seed: "7" }),
    ]
  ) {
    await assert.rejects(
      new TestGuestDevice().loadState(bad),
      /Cannot read the test guest's state from the source/,
    );
  }
});

Deno.test("parseHeartbeat() reads a heartbeat line and nothing else", () => {
  assert.deepEqual(parseHeartbeat("heartbeat 12 counter=3456"), { n: 12n, counter: 3456n });
  assert.equal(parseHeartbeat("nter=3456"), undefined);
  assert.equal(parseHeartbeat("heartbeat 12 counter=3456 extra"), undefined);
});
