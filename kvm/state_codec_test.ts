import assert from "node:assert/strict";
import { KvmStateError } from "./errors.ts";
import { decodeVmState, encodeVmState, VM_STATE_MAGIC, type VmState } from "./state_codec.ts";

function sample(): VmState {
  const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i + seed) & 0xff);
  return {
    clock: { clock: 123456789n, flags: 2, realtime: 0n, hostTsc: 0n },
    vcpus: [1, 0].map((id) => ({
      id,
      regs: bytes(144, id),
      sregs: bytes(312, id + 1),
      xsave: bytes(4096, id + 2),
      xcrs: bytes(392, id + 3),
      debugregs: bytes(128, id + 4),
      lapic: bytes(1024, id + 5),
      events: bytes(64, id + 6),
      mpState: 3,
      msrs: [{ index: 0x10, data: 0xffff_ffff_ffff_fff0n }, { index: 0xc0000080, data: 0x500n }],
      cpuid: [{ function: 1, index: 0, flags: 0, eax: 1, ebx: 2, ecx: 3, edx: 4 }],
      tscKhz: 2_000_000,
    })),
  };
}

Deno.test("encodeVmState() and decodeVmState() round-trip, vCPUs in id order", () => {
  const state = sample();
  const bytes = encodeVmState(state);
  const v = new DataView(bytes.buffer);
  assert.equal(v.getUint32(0, true), VM_STATE_MAGIC);
  assert.equal(v.getUint16(4, true), 1);
  assert.equal(v.getUint32(8, true), bytes.byteLength);
  const back = decodeVmState(bytes);
  assert.deepEqual(back.clock, state.clock);
  assert.deepEqual(back.vcpus, [state.vcpus[1], state.vcpus[0]]);
});

Deno.test("decodeVmState() refuses a flipped byte (CRC-32), a wrong magic, version or length", () => {
  const bytes = encodeVmState(sample());
  const flipped = bytes.slice();
  flipped[200] ^= 1;
  assert.throws(() => decodeVmState(flipped), /CRC-32 0x[0-9a-f]+ does not match/);
  const magic = bytes.slice();
  magic[0] = 0;
  assert.throws(() => decodeVmState(magic), /bad magic/);
  const version = bytes.slice();
  version[4] = 2;
  assert.throws(() => decodeVmState(version), /version 2: this code reads version 1/);
  assert.throws(
    () => decodeVmState(bytes.subarray(0, bytes.length - 1)),
    /it says \d+ bytes but \d+ arrived/,
  );
  assert.throws(() => decodeVmState(new Uint8Array(3)), KvmStateError);
});

Deno.test("decodeVmState() refuses a section of the wrong size even with a good checksum", async () => {
  const { crc32 } = await import("node:zlib");
  const bytes = encodeVmState({ vcpus: [{ ...sample().vcpus[0], regs: new Uint8Array(140) }] });
  const v = new DataView(bytes.buffer);
  v.setUint32(bytes.length - 4, crc32(bytes.subarray(0, bytes.length - 4)), true);
  assert.throws(() => decodeVmState(bytes), /regs of vCPU 1 has 140 bytes, not 144/);
});

Deno.test("encodeVmState() refuses a vCPU id the encoding cannot hold", () => {
  assert.throws(() => encodeVmState({ vcpus: [{ ...sample().vcpus[0], id: 70000 }] }), RangeError);
});
