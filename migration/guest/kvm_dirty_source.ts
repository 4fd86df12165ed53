/**
 * KVM's dirty log or dirty ring as a pre-copy {@linkcode DirtySource}: the
 * pages the guest's vCPUs wrote, harvested from the VM's memory slots into
 * the engine's bitmaps of guest RAM regions.
 *
 * @module
 */

import { DirtyBitmap } from "../../memory/dirty_bitmap.ts";
import { orBitsAt } from "../../sys/bits.ts";
import { hex } from "../../sys/address.ts";
import type { KvmDirtySource } from "../../kvm/dirty_source.ts";
import type { DirtySource, SourceHarvest } from "../engine/dirty_source.ts";

/** Where one slot's pages go: a region and the page of it the slot starts at. */
interface Placement {
  region: number;
  firstPage: number;
  pages: number;
  /** The region's bitmap itself is the slot's, when the slot is the whole region. */
  whole: boolean;
}

/** What {@linkcode KvmGuestDirtySource} needs of a VM (a `Vm` of `./kvm`): its memory slots. */
export interface KvmSlots {
  /** The memory slots, in slot order (as `Vm.slots`). */
  readonly slots: readonly {
    /** The slot id. */
    readonly slot: number;
    /** First guest-physical address. */
    readonly gpa: bigint;
    /** Bytes. */
    readonly size: bigint;
    /** Whether the guest may only read it. */
    readonly readonly: boolean;
  }[];
}

/**
 * The guest's writes as KVM logs them ({@linkcode KvmDirtyLog} or
 * {@linkcode KvmDirtyRing}), for the migration engine. Each slot of the VM
 * must lie inside one guest RAM region (as `Vm.addMemory(memory)` makes
 * them: one slot per region); read-only slots are left out (the guest cannot
 * write them).
 *
 * KVM sees only the guest's writes: merge this source with one for the
 * VMM's own writes into guest RAM ({@linkcode VmmWriteSource}).
 *
 * @example Pre-copy driven by KVM's dirty log
 * ```ts ignore
 * using log = new KvmDirtyLog(vm);
 * const sources = [new KvmGuestDirtySource(log, vm, memory.regions), new VmmWriteSource(memory)];
 * await migrateGuest({ memory, to, guestSources: sources, workload: new KvmWorkload(vm) });
 * ```
 */
export class KvmGuestDirtySource implements DirtySource {
  /** `kvm-dirty-log` or `kvm-dirty-ring`. */
  readonly name: string;
  /** KVM reports the pages the guest wrote. */
  readonly scope = "precise" as const;
  /** Harvests are safe while vCPUs run. */
  readonly concurrentSafe = true as const;
  #source: KvmDirtySource;
  #vm: KvmSlots;
  #regions: readonly { readonly gpa: bigint; readonly size: bigint }[];
  #scratch = new Map<number, DirtyBitmap>();

  /**
   * Wraps a KVM dirty source (this source starts and stops it).
   *
   * @param source The VM's `KvmDirtyLog` or `KvmDirtyRing`.
   * @param vm The VM (its slots).
   * @param regions The guest RAM regions the engine's bitmaps stand for, in order.
   * @throws {RangeError} When a writable slot lies outside every region.
   */
  constructor(
    source: KvmDirtySource,
    vm: KvmSlots,
    regions: readonly { readonly gpa: bigint; readonly size: bigint }[],
  ) {
    this.#source = source;
    this.#vm = vm;
    this.#regions = regions;
    this.name = source.name;
    this.#placements();
  }

  #placements(): (Placement | undefined)[] {
    return this.#vm.slots.map((s) => {
      if (s.readonly) return undefined;
      const region = this.#regions.findIndex((r) =>
        s.gpa >= r.gpa && s.gpa + s.size <= r.gpa + r.size
      );
      if (region < 0) {
        throw new RangeError(
          `Cannot harvest KVM slot ${s.slot} ([${hex(s.gpa)}, ${
            hex(s.gpa + s.size)
          })) into the migration: it lies in no guest RAM region`,
        );
      }
      const r = this.#regions[region];
      return {
        region,
        firstPage: Number((s.gpa - r.gpa) / 4096n),
        pages: Number(s.size / 4096n),
        whole: s.gpa === r.gpa && s.size === r.size,
      };
    });
  }

  #scratchFor(slot: number, pages: number): DirtyBitmap {
    let b = this.#scratch.get(slot);
    if (b === undefined || b.pages !== pages) this.#scratch.set(slot, b = new DirtyBitmap(pages));
    else b.clearAll();
    return b;
  }

  /** Starts KVM's logging. */
  start(): void {
    this.#source.start();
  }

  /**
   * ORs the pages the guest wrote since the last harvest into the region
   * bitmaps and re-protects them.
   *
   * @param bitmaps One bitmap per guest RAM region, in region order.
   * @returns What KVM reported.
   * @throws {RangeError} When a slot lies outside every region.
   * @throws {IoctlError} When KVM refuses.
   */
  harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
    const placements = this.#placements();
    const slots = this.#vm.slots;
    const targets = placements.map((p, i) =>
      p !== undefined && p.whole
        ? bitmaps[p.region]
        : this.#scratchFor(slots[i].slot, Number(slots[i].size / 4096n))
    );
    const h = this.#source.harvestInto(targets);
    let covered = 0;
    placements.forEach((p, i) => {
      if (p === undefined) return;
      covered += p.pages;
      if (!p.whole) orBitsAt(bitmaps[p.region].words, p.firstPage, targets[i].words, p.pages);
    });
    return { source: this.name, dirtyPages: h.dirtyPages, scope: "precise", coveredPages: covered };
  }

  /**
   * Marks every page the guest can write: every writable slot.
   *
   * @param bitmaps One bitmap per region.
   */
  coverInto(bitmaps: DirtyBitmap[]): void {
    for (const p of this.#placements()) {
      if (p !== undefined) bitmaps[p.region].setRange(p.firstPage, p.pages);
    }
  }

  /** Stops KVM's logging. Idempotent. */
  stop(): void {
    this.#source.stop();
  }
}
