/**
 * KVM's dirty bitmap as a dirty source: `KVM_GET_DIRTY_LOG` per slot, and,
 * where the kernel has `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`, `KVM_CLEAR_DIRTY_LOG`
 * in chunks so that only the pages reported are write-protected again (and
 * chunks without a dirty page cost nothing).
 *
 * @module
 */

import { orBitsAt, popcount } from "../sys/bits.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import { hostView } from "../sys/host_memory.ts";
import { VM_INTERNALS, type VmInternals } from "./_vm_internals.ts";
import {
  checkBitmaps,
  coverAll,
  type KvmDirtySource,
  type KvmHarvest,
  type PageBitmap,
} from "./dirty_source.ts";
import {
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
} from "./uapi/constants.ts";
import { KVM_CLEAR_DIRTY_LOG, KVM_GET_DIRTY_LOG } from "./uapi/ioctls.ts";
import { encodeClearDirtyLog, encodeDirtyLog } from "./uapi/memory.ts";
import type { Vm } from "./vm.ts";

/** Options of {@linkcode KvmDirtyLog}. */
export interface KvmDirtyLogOptions {
  /**
   * Use `KVM_CLEAR_DIRTY_LOG` (default: where the kernel has
   * `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`). `false`: `KVM_GET_DIRTY_LOG`
   * clears and re-protects the whole slot itself.
   */
  manualProtect?: boolean;
  /** Pages per `KVM_CLEAR_DIRTY_LOG` call (a multiple of 64, default 32768 = 128 MiB). */
  clearChunkPages?: number;
}

interface SlotBuffer {
  slot: number;
  pages: number;
  addr: bigint;
  bytes: number;
  words: Uint32Array;
}

/**
 * The dirty bitmap of a VM's slots. Harvests are exact and safe while vCPUs
 * run: a page written after `KVM_GET_DIRTY_LOG` read its bit stays dirty for
 * the next harvest, since only the reported bits are cleared.
 *
 * @example Pages the guest wrote
 * ```ts ignore
 * using log = new KvmDirtyLog(vm);
 * log.start();
 * // ... the guest runs ...
 * const bitmaps = vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n)));
 * console.log(log.harvestInto(bitmaps).dirtyPages);
 * ```
 */
export class KvmDirtyLog implements KvmDirtySource, Disposable {
  /** `kvm-dirty-log`. */
  readonly name = "kvm-dirty-log";
  /** KVM reports the pages the guest wrote. */
  readonly scope = "precise" as const;
  /** Harvests are safe while vCPUs run. */
  readonly concurrentSafe = true as const;
  #vm: VmInternals;
  #vmObject: Vm;
  #wantManual: boolean | undefined;
  #manual = false;
  #chunk: number;
  #buffers = new Map<number, SlotBuffer>();
  #active = false;
  #calls = { get: 0, clear: 0 };

  /**
   * Creates the source for a VM (it does nothing until `start()`).
   *
   * @param vm The VM.
   * @param options Manual protection and the clear chunk.
   * @throws {RangeError} For a chunk that is not a positive multiple of 64.
   */
  constructor(vm: Vm, options: KvmDirtyLogOptions = {}) {
    const inner = VM_INTERNALS.get(vm);
    if (inner === undefined) throw new TypeError("Cannot log dirty pages: not a Vm");
    const chunk = options.clearChunkPages ?? 32768;
    if (!Number.isInteger(chunk) || chunk <= 0 || chunk % 64 !== 0) {
      throw new RangeError(`Cannot clear the dirty log in chunks of ${chunk} pages`);
    }
    this.#vm = inner;
    this.#vmObject = vm;
    this.#wantManual = options.manualProtect;
    this.#chunk = chunk;
  }

  /**
   * Whether harvests clear with `KVM_CLEAR_DIRTY_LOG` (known once started).
   *
   * @returns `true` with manual protection.
   */
  get manualProtect(): boolean {
    return this.#manual;
  }

  /**
   * Whether logging is on.
   *
   * @returns `true` between `start()` and `stop()`.
   */
  get active(): boolean {
    return this.#active;
  }

  /**
   * The ioctls harvests made so far.
   *
   * @returns `KVM_GET_DIRTY_LOG` and `KVM_CLEAR_DIRTY_LOG` counts.
   */
  get calls(): { readonly get: number; readonly clear: number } {
    return { ...this.#calls };
  }

  /**
   * Turns on logging for every slot. With manual protection the capability
   * is enabled first (`KVM_ENABLE_CAP`, without `KVM_DIRTY_LOG_INITIALLY_SET`,
   * so the log starts empty).
   *
   * @throws {IoctlError} When KVM refuses.
   * @throws {TypeError} When manual protection was asked and the kernel lacks it.
   */
  start(): void {
    if (this.#active) return;
    const vm = this.#vmObject;
    const offered = vm.checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    const manual = this.#wantManual ?? (offered & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0;
    if (manual && (offered & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) === 0) {
      throw new TypeError(
        "Cannot clear the dirty log manually: this kernel has no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2",
      );
    }
    if (manual) {
      vm.enableCap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, [
        BigInt(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE),
      ]);
    }
    this.#manual = manual;
    vm.setDirtyLogging(true);
    this.#active = true;
  }

  #buffer(slot: number, pages: number): SlotBuffer {
    let b = this.#buffers.get(slot);
    if (b !== undefined && b.pages === pages) return b;
    if (b !== undefined) this.#free(b);
    const bytes = Math.ceil(pages / 64) * 8;
    const mapped = Math.ceil(bytes / 4096) * 4096;
    const addr = this.#vm.sys.mmap(
      BigInt(mapped),
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0n,
    );
    // SAFETY: the view covers the buffer's mapping, unmapped only in #free().
    const view = hostView(addr, mapped);
    b = { slot, pages, addr, bytes: mapped, words: new Uint32Array(view.buffer, 0, bytes / 4) };
    this.#buffers.set(slot, b);
    return b;
  }

  #free(b: SlotBuffer): void {
    this.#buffers.delete(b.slot);
    this.#vm.sys.munmap(b.addr, BigInt(b.bytes));
  }

  /**
   * ORs the pages written since the last harvest into the bitmaps and
   * re-protects them.
   *
   * @param bitmaps One bitmap per slot, in `Vm.slots` order.
   * @returns What was found.
   * @throws {RangeError} When the bitmaps do not match the slots.
   * @throws {TypeError} When not started.
   * @throws {IoctlError} When KVM refuses.
   */
  harvestInto(bitmaps: PageBitmap[]): KvmHarvest {
    if (!this.#active) throw new TypeError("Cannot harvest the KVM dirty log before start()");
    const slots = this.#vm.slots();
    const pagesOf = slots.map((s) => Number(s.size / 4096n));
    checkBitmaps(bitmaps, pagesOf);
    const sys = this.#vm.sys;
    const fd = this.#vm.fd();
    let dirty = 0;
    let covered = 0;
    slots.forEach((s, i) => {
      const pages = pagesOf[i];
      covered += pages;
      const buf = this.#buffer(s.slot, pages);
      sys.ioctl(fd, KVM_GET_DIRTY_LOG, encodeDirtyLog(s.slot, buf.addr));
      this.#calls.get++;
      const n = popcount(buf.words);
      if (n === 0) return;
      dirty += n;
      orBitsAt(bitmaps[i].words, 0, buf.words, pages);
      if (this.#manual) this.#clear(s.slot, buf, pages);
    });
    return { source: this.name, dirtyPages: dirty, scope: "precise", coveredPages: covered };
  }

  #clear(slot: number, buf: SlotBuffer, pages: number): void {
    const sys = this.#vm.sys;
    const fd = this.#vm.fd();
    const w = buf.words;
    for (let first = 0; first < pages; first += this.#chunk) {
      const num = Math.min(this.#chunk, pages - first);
      let any = 0;
      for (let i = first >>> 5, end = Math.ceil((first + num) / 32); i < end && any === 0; i++) {
        any |= w[i];
      }
      if (any === 0) continue;
      sys.ioctl(
        fd,
        KVM_CLEAR_DIRTY_LOG,
        encodeClearDirtyLog({
          slot,
          firstPage: BigInt(first),
          numPages: num,
          bitmap: buf.addr + BigInt(first / 8),
        }),
      );
      this.#calls.clear++;
    }
  }

  /**
   * Marks every page of every slot.
   *
   * @param bitmaps One bitmap per slot.
   */
  coverInto(bitmaps: PageBitmap[]): void {
    coverAll(bitmaps);
  }

  /** Turns logging off and frees the bitmap buffers. Idempotent. */
  stop(): void {
    if (!this.#active) return;
    this.#active = false;
    try {
      if (this.#vmObject.unsafeFd >= 0) this.#vmObject.setDirtyLogging(false);
    } finally {
      for (const b of [...this.#buffers.values()]) this.#free(b);
    }
  }

  /** Stops through {@linkcode KvmDirtyLog.stop}. */
  [Symbol.dispose](): void {
    this.stop();
  }
}
