import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  CHANNEL_HELLO_BYTES,
  CHANNEL_NONCE_ANSWER_BYTES,
  checkChannelCount,
  decodeChannelHello,
  decodeChannelNonce,
  encodeChannelHello,
  encodeChannelNonce,
} from "./channel_hello.ts";

const nonce = Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 1);

Deno.test("encodeChannelHello() pins the 48-byte layout", () => {
  const b = encodeChannelHello({ index: 3, count: 4, pageSize: 4096, nonce });
  assert.equal(b.length, CHANNEL_HELLO_BYTES);
  assert.equal(new TextDecoder().decode(b.subarray(0, 8)), "DVMM-CHN");
  const v = new DataView(b.buffer);
  assert.equal(v.getUint32(8, true), 1);
  assert.equal(v.getUint32(12, true), 3);
  assert.equal(v.getUint32(16, true), 4);
  assert.equal(v.getUint32(20, true), 4096);
  assert.deepEqual(b.subarray(24, 40), nonce);
  assert.equal(v.getUint32(40, true), 0);
  assert.equal(v.getUint32(44, true), crc32(b.subarray(0, 44)));
  assert.deepEqual(decodeChannelHello(b), { index: 3, count: 4, pageSize: 4096, nonce });
});

// Rewrites field `at` and, unless told not to, the CRC, so the field's own check is what fails.
function altered(at: number, value: number, fixCrc = true): Uint8Array {
  const b = encodeChannelHello({ index: 1, count: 2, pageSize: 4096, nonce });
  const v = new DataView(b.buffer);
  v.setUint32(at, value, true);
  if (fixCrc) v.setUint32(44, crc32(b.subarray(0, 44)), true);
  return b;
}

Deno.test("decodeChannelHello() refuses each malformed field by name", () => {
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(47), /has 47 bytes/],
    [altered(0, 0x41414141), /bad magic/],
    [altered(8, 2), /unsupported version 2/],
    [altered(40, 1), /non-zero reserved field/],
    [altered(12, 5, false), /checksum mismatch/],
    [altered(16, 1), /count 1 is not in 2 to 64/],
    [altered(16, 65), /count 65 is not in 2 to 64/],
    [altered(12, 2), /index 2 is not below 2/],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(() => decodeChannelHello(bytes), message);
  }
});

Deno.test("encodeChannelNonce() round-trips and decodeChannelNonce() refuses a bad answer", () => {
  const b = encodeChannelNonce(nonce);
  assert.equal(b.length, CHANNEL_NONCE_ANSWER_BYTES);
  assert.equal(new TextDecoder().decode(b.subarray(0, 4)), "DVMC");
  assert.deepEqual(decodeChannelNonce(b), nonce);
  const bad = b.slice();
  bad[10] ^= 1;
  assert.throws(() => decodeChannelNonce(bad), /checksum mismatch/);
  assert.throws(() => decodeChannelNonce(b.subarray(0, 27)), /has 27 bytes/);
  assert.throws(() => encodeChannelNonce(new Uint8Array(8)), RangeError);
});

Deno.test("checkChannelCount() takes 1 to 64", () => {
  assert.equal(checkChannelCount(1, "migrate"), 1);
  assert.equal(checkChannelCount(64, "migrate"), 64);
  for (const n of [0, 65, 1.5, NaN]) {
    assert.throws(() => checkChannelCount(n, "migrate"), RangeError);
  }
});
