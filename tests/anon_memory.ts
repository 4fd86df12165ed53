/**
 * Anonymous host memory for tests that need DMA targets and bitmaps at fixed
 * addresses.
 *
 * @module
 */

import { type HostAddress, hostAddress } from "../sys/address.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import { hostView } from "../sys/host_memory.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { Syscalls } from "../sys/syscalls.ts";

/** An anonymous mapping; dispose to unmap. */
export interface AnonMemory extends Disposable {
  /** The host address. */
  readonly vaddr: HostAddress;
  /** Bytes. */
  readonly size: bigint;
  /** A view of the memory. */
  readonly bytes: Uint8Array;
}

/**
 * Maps anonymous read-write memory.
 *
 * @param size Bytes (a multiple of 4096).
 * @param options The syscall boundary (a fake kernel counts the mapping).
 * @returns The mapping.
 *
 * @example
 * ```ts ignore
 * using mem = anonMemory(0x10000n);
 * mem.bytes[0] = 1;
 * ```
 */
export function anonMemory(size: bigint, options: { syscalls?: Syscalls } = {}): AnonMemory {
  const sys = options.syscalls ?? defaultSyscalls();
  const addr = sys.mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  let mapped = true;
  return {
    vaddr: hostAddress(addr),
    size,
    bytes: hostView(addr, Number(size)),
    [Symbol.dispose]() {
      if (!mapped) return;
      mapped = false;
      sys.munmap(addr, size);
    },
  };
}
