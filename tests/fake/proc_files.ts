/**
 * The `/proc` files the fake kernel models rather than opens on the host:
 * `/proc/self/clear_refs` always; `/proc/sys/vm/nr_hugepages` and the
 * `HugePages_*` lines of `/proc/meminfo` with a modelled pool;
 * `/proc/sys/vm/unprivileged_userfaultfd` when that sysctl is modelled.
 *
 * @module
 */

import { EINVAL } from "../../sys/errno.ts";
import type { LibcSyscalls } from "../../sys/libc.ts";
import type { ModelFile } from "./fds.ts";
import { host, type HostState } from "./host_state.ts";
import { fail } from "./user_memory.ts";

const CLEAR_REFS = "/proc/self/clear_refs";
const NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages";
const MEMINFO = "/proc/meminfo";
const UNPRIVILEGED_USERFAULTFD = "/proc/sys/vm/unprivileged_userfaultfd";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The modelled file at `path`, opened now.
 *
 * @param path The path.
 * @param state The host side's state.
 * @returns The file, or undefined when the path is the host's.
 * @throws {KernelError} The host's errno (reading `/proc/meminfo`).
 */
export function modelFile(path: string, state: HostState): ModelFile | undefined {
  const file = (text: string, write?: (bytes: Uint8Array) => number): ModelFile => ({
    path,
    contents: encoder.encode(text),
    pos: 0,
    ...(write ? { write } : {}),
  });
  if (path === CLEAR_REFS) return file("", (bytes) => clearRefs(bytes, state));
  const pool = state.pool;
  if (pool !== undefined && path === NR_HUGEPAGES) {
    return file(`${pool.total}\n`, (bytes) => {
      pool.resize(parseCount(bytes));
      return bytes.byteLength;
    });
  }
  if (pool !== undefined && path === MEMINFO) {
    return file(pool.meminfo(decoder.decode(readHost(state.libc, MEMINFO))));
  }
  if (state.uffdSysctl !== undefined && path === UNPRIVILEGED_USERFAULTFD) {
    return file(`${state.uffdSysctl}\n`, (bytes) => {
      const v = parseCount(bytes);
      if (v !== 0 && v !== 1) fail(EINVAL);
      state.uffdSysctl = v;
      return bytes.byteLength;
    });
  }
  return undefined;
}

// clear_refs_write(): kstrtoint, CLEAR_REFS_ALL (1) to CLEAR_REFS_MM_HIWATER_RSS (5).
function clearRefs(bytes: Uint8Array, state: HostState): number {
  const v = parseCount(bytes);
  if (v < 1 || v > 5) fail(EINVAL);
  if (v === 4) state.softDirty.clear(state.mappings.values());
  return bytes.byteLength;
}

function parseCount(bytes: Uint8Array): number {
  const text = decoder.decode(bytes).trim();
  if (!/^\d+$/.test(text)) fail(EINVAL);
  return Number(text);
}

/**
 * Reads a model file at an offset.
 *
 * @param m The file.
 * @param buf Where the bytes go.
 * @param at The offset.
 * @returns Bytes read.
 */
export function modelRead(m: ModelFile, buf: Uint8Array, at: number): number {
  const part = m.contents.subarray(Math.min(at, m.contents.length), at + buf.byteLength);
  buf.set(part);
  return part.byteLength;
}

function readHost(sys: LibcSyscalls, path: string): Uint8Array {
  const fd = host(() => sys.open(path, 0));
  try {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const buf = new Uint8Array(16384);
      const n = host(() => sys.read(fd, buf));
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
    }
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } finally {
    sys.close(fd);
  }
}
