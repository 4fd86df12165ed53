/**
 * The byte encoding of a VM's CPU state, to travel as device state (for
 * example in a migration stream): versioned, sectioned, CRC-32 checked.
 *
 * ```
 * "KVMS" | u16 version | u16 flags | u32 total bytes | u32 sections
 * sections: u16 tag | u16 vcpu (0xffff for the VM) | u32 bytes | bytes
 * u32 CRC-32 of everything before it
 * ```
 * All little-endian. Struct sections hold the kernel's bytes.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import { KvmStateError } from "./errors.ts";
import { type CpuidEntry, decodeCpuid2, encodeCpuid2, type MsrEntry } from "./uapi/cpu.ts";
import { KVM_REGS_SIZE, KVM_SREGS_SIZE } from "./uapi/regs.ts";
import {
  type ClockData,
  decodeClockData,
  encodeClockData,
  KVM_CLOCK_DATA_SIZE,
  KVM_DEBUGREGS_SIZE,
  KVM_FPU_SIZE,
  KVM_LAPIC_STATE_SIZE,
  KVM_VCPU_EVENTS_SIZE,
  KVM_XCRS_SIZE,
  KVM_XSAVE_SIZE,
} from "./uapi/state.ts";
import type { VcpuState } from "./vcpu_state.ts";

/** A VM's CPU state: the guest clock and every vCPU. */
export interface VmState {
  /** `KVM_GET_CLOCK`. */
  clock?: ClockData;
  /** The vCPUs. */
  vcpus: VcpuState[];
}

/** The encoding's magic, "KVMS". */
export const VM_STATE_MAGIC = 0x534d564b;
/** The version this code writes and reads. */
export const VM_STATE_VERSION = 1;

const HEADER = 16;
const SECTION_HEADER = 8;
const VM_WIDE = 0xffff;

const TAG = {
  clock: 1,
  regs: 16,
  sregs: 17,
  xsave: 18,
  fpu: 19,
  xcrs: 20,
  debugregs: 21,
  lapic: 22,
  events: 23,
  mpState: 24,
  msrs: 25,
  cpuid: 26,
  tscKhz: 27,
} as const;

const FIXED: Record<number, [string, number]> = {
  [TAG.clock]: ["clock", KVM_CLOCK_DATA_SIZE],
  [TAG.regs]: ["regs", KVM_REGS_SIZE],
  [TAG.sregs]: ["sregs", KVM_SREGS_SIZE],
  [TAG.fpu]: ["fpu", KVM_FPU_SIZE],
  [TAG.xcrs]: ["xcrs", KVM_XCRS_SIZE],
  [TAG.debugregs]: ["debugregs", KVM_DEBUGREGS_SIZE],
  [TAG.lapic]: ["lapic", KVM_LAPIC_STATE_SIZE],
  [TAG.events]: ["events", KVM_VCPU_EVENTS_SIZE],
  [TAG.mpState]: ["mpState", 4],
  [TAG.tscKhz]: ["tscKhz", 4],
};

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function msrBytes(msrs: readonly MsrEntry[]): Uint8Array {
  const b = new Uint8Array(msrs.length * 16);
  const v = new DataView(b.buffer);
  msrs.forEach((m, i) => {
    v.setUint32(i * 16, m.index >>> 0, true);
    v.setBigUint64(i * 16 + 8, m.data, true);
  });
  return b;
}

/**
 * Encodes a VM's CPU state.
 *
 * @param state From `Vm.saveState()`.
 * @returns The bytes.
 * @throws {RangeError} For more than 65534 vCPUs or a section over 4 GiB.
 *
 * @example Round trip
 * ```ts
 * import { decodeVmState, encodeVmState } from "./state_codec.ts";
 * const bytes = encodeVmState({ vcpus: [] });
 * console.log(decodeVmState(bytes).vcpus.length); // 0
 * ```
 */
export function encodeVmState(state: VmState): Uint8Array {
  const sections: { tag: number; vcpu: number; bytes: Uint8Array }[] = [];
  if (state.clock !== undefined) {
    sections.push({ tag: TAG.clock, vcpu: VM_WIDE, bytes: encodeClockData(state.clock) });
  }
  for (const s of state.vcpus) {
    if (!Number.isInteger(s.id) || s.id < 0 || s.id >= VM_WIDE) {
      throw new RangeError(`Cannot encode vCPU id ${s.id}`);
    }
    const add = (tag: number, bytes: Uint8Array | undefined) => {
      if (bytes !== undefined) sections.push({ tag, vcpu: s.id, bytes });
    };
    add(TAG.regs, s.regs);
    add(TAG.sregs, s.sregs);
    add(TAG.xsave, s.xsave);
    add(TAG.fpu, s.fpu);
    add(TAG.xcrs, s.xcrs);
    add(TAG.debugregs, s.debugregs);
    add(TAG.lapic, s.lapic);
    add(TAG.events, s.events);
    add(TAG.mpState, u32(s.mpState));
    add(TAG.msrs, msrBytes(s.msrs));
    add(TAG.cpuid, encodeCpuid2(s.cpuid));
    add(TAG.tscKhz, u32(s.tscKhz));
  }
  const total = HEADER + sections.reduce((n, s) => n + SECTION_HEADER + s.bytes.byteLength, 0) +
    4;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, VM_STATE_MAGIC, true);
  v.setUint16(4, VM_STATE_VERSION, true);
  v.setUint16(6, 0, true);
  v.setUint32(8, total, true);
  v.setUint32(12, sections.length, true);
  let at = HEADER;
  for (const s of sections) {
    v.setUint16(at, s.tag, true);
    v.setUint16(at + 2, s.vcpu, true);
    v.setUint32(at + 4, s.bytes.byteLength, true);
    out.set(s.bytes, at + SECTION_HEADER);
    at += SECTION_HEADER + s.bytes.byteLength;
  }
  v.setUint32(at, crc32(out.subarray(0, at)), true);
  return out;
}

function blank(id: number): VcpuState {
  return {
    id,
    regs: new Uint8Array(0),
    sregs: new Uint8Array(0),
    debugregs: new Uint8Array(0),
    events: new Uint8Array(0),
    mpState: 0,
    msrs: [],
    cpuid: [],
    tscKhz: 0,
  };
}

/**
 * Decodes and checks a VM's CPU state.
 *
 * @param bytes From {@linkcode encodeVmState}.
 * @returns The state.
 * @throws {KvmStateError} For a wrong magic, version, length or checksum, a
 *   section of the wrong size, an unknown section, or a vCPU missing its
 *   registers.
 */
export function decodeVmState(bytes: Uint8Array): VmState {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < HEADER + 4) {
    throw new KvmStateError(`Cannot decode VM state from ${bytes.byteLength} bytes: too short`);
  }
  if (v.getUint32(0, true) !== VM_STATE_MAGIC) {
    throw new KvmStateError("Cannot decode VM state: not a KVMS encoding (bad magic)");
  }
  const version = v.getUint16(4, true);
  if (version !== VM_STATE_VERSION) {
    throw new KvmStateError(
      `Cannot decode VM state version ${version}: this code reads version ${VM_STATE_VERSION}`,
    );
  }
  const total = v.getUint32(8, true);
  if (total !== bytes.byteLength) {
    throw new KvmStateError(
      `Cannot decode VM state: it says ${total} bytes but ${bytes.byteLength} arrived`,
    );
  }
  const want = v.getUint32(total - 4, true);
  const got = crc32(bytes.subarray(0, total - 4));
  if (want !== got) {
    throw new KvmStateError(
      `Cannot decode VM state: CRC-32 0x${got.toString(16)} does not match 0x${want.toString(16)}`,
    );
  }
  const state: VmState = { vcpus: [] };
  const vcpus = new Map<number, VcpuState>();
  const count = v.getUint32(12, true);
  let at = HEADER;
  for (let i = 0; i < count; i++) {
    if (at + SECTION_HEADER > total - 4) {
      throw new KvmStateError(`Cannot decode VM state: section ${i} runs past the end`);
    }
    const tag = v.getUint16(at, true);
    const id = v.getUint16(at + 2, true);
    const len = v.getUint32(at + 4, true);
    const body = bytes.slice(at + SECTION_HEADER, at + SECTION_HEADER + len);
    if (body.byteLength !== len || at + SECTION_HEADER + len > total - 4) {
      throw new KvmStateError(`Cannot decode VM state: section ${i} runs past the end`);
    }
    at += SECTION_HEADER + len;
    const fixed = FIXED[tag];
    if (fixed !== undefined && len !== fixed[1]) {
      throw new KvmStateError(
        `Cannot decode VM state: ${fixed[0]} of vCPU ${id} has ${len} bytes, not ${fixed[1]}`,
      );
    }
    if (tag === TAG.clock) {
      state.clock = decodeClockData(body);
      continue;
    }
    if (id === VM_WIDE) throw new KvmStateError(`Cannot decode VM state: section tag ${tag}`);
    let s = vcpus.get(id);
    if (s === undefined) vcpus.set(id, s = blank(id));
    const bv = new DataView(body.buffer);
    switch (tag) {
      case TAG.regs:
        s.regs = body;
        break;
      case TAG.sregs:
        s.sregs = body;
        break;
      case TAG.xsave:
        if (len < KVM_XSAVE_SIZE) {
          throw new KvmStateError(`Cannot decode VM state: xsave of vCPU ${id} has ${len} bytes`);
        }
        s.xsave = body;
        break;
      case TAG.fpu:
        s.fpu = body;
        break;
      case TAG.xcrs:
        s.xcrs = body;
        break;
      case TAG.debugregs:
        s.debugregs = body;
        break;
      case TAG.lapic:
        s.lapic = body;
        break;
      case TAG.events:
        s.events = body;
        break;
      case TAG.mpState:
        s.mpState = bv.getUint32(0, true);
        break;
      case TAG.tscKhz:
        s.tscKhz = bv.getUint32(0, true);
        break;
      case TAG.msrs: {
        if (len % 16 !== 0) {
          throw new KvmStateError(`Cannot decode VM state: MSRs of vCPU ${id} have ${len} bytes`);
        }
        s.msrs = [];
        for (let j = 0; j < len; j += 16) {
          s.msrs.push({ index: bv.getUint32(j, true), data: bv.getBigUint64(j + 8, true) });
        }
        break;
      }
      case TAG.cpuid: {
        let entries: CpuidEntry[];
        try {
          entries = decodeCpuid2(body);
        } catch (e) {
          throw new KvmStateError(`Cannot decode VM state: CPUID of vCPU ${id}`, { cause: e });
        }
        s.cpuid = entries;
        break;
      }
      default:
        throw new KvmStateError(`Cannot decode VM state: unknown section tag ${tag}`);
    }
  }
  if (at !== total - 4) {
    throw new KvmStateError(`Cannot decode VM state: ${total - 4 - at} bytes after the sections`);
  }
  for (const s of vcpus.values()) {
    if (s.regs.byteLength === 0 || s.sregs.byteLength === 0 || s.events.byteLength === 0) {
      throw new KvmStateError(`Cannot decode VM state: vCPU ${s.id} lacks registers or events`);
    }
    state.vcpus.push(s);
  }
  state.vcpus.sort((a, b) => a.id - b.id);
  return state;
}
