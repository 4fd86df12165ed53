/**
 * The VMM's own writes into guest RAM as a pre-copy {@linkcode DirtySource}:
 * what device models write through the `GuestMemory` API (a mailbox, a
 * descriptor ring, an emulated DMA). KVM's dirty log sees only what the
 * guest's vCPUs write, so a migration driven by it merges this source too,
 * as QEMU and Cloud Hypervisor OR their own dirty bitmap into KVM's.
 *
 * @module
 */

import type { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import type { GuestMemory } from "../../memory/guest_memory.ts";
import { SoftwareDirtyLog } from "../../memory/software_dirty_log.ts";
import type { DirtySource, SourceHarvest } from "../engine/dirty_source.ts";

/**
 * Writes made through one `GuestMemory` (its `write`, `fill`, `writeU*`, and
 * `view()` counted as a write of its range when handed out), logged by a
 * {@linkcode SoftwareDirtyLog}. Exact for those writes; writes through a
 * view kept past a harvest, or by the guest, are not seen here.
 *
 * @example Merge the VMM's writes with KVM's log
 * ```ts
 * import { GuestMemory, guestAddress } from "../../memory/mod.ts";
 * import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
 * import { VmmWriteSource } from "./vmm_write_source.ts";
 * using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: 1n << 20n }]);
 * const vmm = new VmmWriteSource(memory);
 * vmm.start();
 * memory.writeU32(guestAddress(0x5000n), 1); // a device model's write
 * const bitmaps = [new DirtyBitmap(256)];
 * console.log(vmm.harvestInto(bitmaps).dirtyPages, bitmaps[0].pageIndexes()); // 1 [ 5 ]
 * vmm.stop();
 * ```
 */
export class VmmWriteSource implements DirtySource {
  /** `vmm-writes`. */
  readonly name = "vmm-writes";
  /** The writes made through the API, exactly. */
  readonly scope = "precise" as const;
  /** Marking and harvesting are atomic word by word. */
  readonly concurrentSafe = true as const;
  #log: SoftwareDirtyLog;

  /**
   * Makes the source (it logs nothing until `start()`).
   *
   * @param memory The guest RAM the VMM writes through.
   */
  constructor(memory: GuestMemory) {
    this.#log = new SoftwareDirtyLog(memory);
  }

  /**
   * Starts logging.
   *
   * @throws {TypeError} When the memory is closed.
   */
  start(): void {
    this.#log.start();
  }

  /**
   * ORs the pages written through the API since the last harvest into the bitmaps.
   *
   * @param bitmaps One bitmap per region, in region order.
   * @returns What was found: the pages newly marked.
   * @throws {RangeError} When the bitmaps do not match the regions.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    const before = bitmaps.reduce((n, b) => n + b.count(), 0);
    this.#log.harvest({ into: bitmaps });
    const after = bitmaps.reduce((n, b) => n + b.count(), 0);
    return {
      source: this.name,
      dirtyPages: after - before,
      scope: "precise",
      coveredPages: bitmaps.reduce((n, b) => n + b.pages, 0),
    };
  }

  /**
   * Covers every page (the VMM can write anywhere).
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    for (const b of bitmaps) b.fillAll();
  }

  /** Stops logging. Idempotent. */
  stop(): void {
    this.#log.stop();
  }
}
