// A migration sink that keeps what the engine sent, phase by phase: the
// pages of each pre-copy iteration and of stop-and-copy (as GPA page
// numbers), copied into a destination RAM, and the device states. For
// engine-level tests that compare the pages sent with the pages written.

import type { MigrationSink } from "../migration/engine/types.ts";
import { arrayRam, type RamAccess, type RamRegionLayout } from "../migration/stream/ram.ts";
import type { WritePagesResult } from "../migration/stream/writer.ts";
import type { GuestAddress } from "../sys/address.ts";

/** What one phase sent. */
export interface SentPhase {
  /** `iteration N`, or `stop-and-copy`. */
  readonly name: string;
  /** GPA page numbers (GPA / 4096), sorted. */
  readonly pages: number[];
}

/** A {@linkcode MigrationSink} that records instead of streaming. */
export class RecordingSink implements MigrationSink {
  /** The phases so far; the last one is still open until `writeComplete()`. */
  readonly phases: SentPhase[] = [];
  /** Device states by id. */
  readonly deviceStates = new Map<string, Uint8Array>();
  /** The copy of the RAM the pages built (set by `writeHeader`). */
  destination?: RamAccess;
  /** Runs at each iteration marker, before the engine's harvest (awaited). */
  onIteration?: (n: number) => Promise<void> | void;
  /** Whether `writeComplete()` and `writeEnd()` came. */
  completed = false;
  ended = false;
  #bytes = 0;
  #open = new Set<number>();

  get bytesWritten(): number {
    return this.#bytes;
  }

  writeHeader(layout: readonly RamRegionLayout[], _pageSize: number): Promise<void> {
    this.destination = arrayRam(layout);
    this.#bytes += 64;
    return Promise.resolve();
  }

  writePages(ram: RamAccess, gpa: GuestAddress, pages: number): Promise<WritePagesResult> {
    const bytes = ram.view(gpa, pages * 4096);
    this.destination!.view(gpa, bytes.length).set(bytes);
    const first = Number(gpa / 4096n);
    let zero = 0;
    for (let p = 0; p < pages; p++) {
      this.#open.add(first + p);
      if (bytes.subarray(p * 4096, (p + 1) * 4096).every((b) => b === 0)) zero++;
    }
    this.#bytes += (pages - zero) * 4096 + 16;
    return Promise.resolve({ pages: pages - zero, zeroPages: zero, skippedPages: 0 });
  }

  writeDeviceState(id: string, bytes: Uint8Array): Promise<void> {
    this.deviceStates.set(id, bytes.slice());
    this.#bytes += bytes.byteLength;
    return Promise.resolve();
  }

  async writeIteration(n: number): Promise<void> {
    this.#close(`iteration ${n}`);
    await this.onIteration?.(n);
  }

  writeComplete(): Promise<void> {
    this.#close("stop-and-copy");
    this.completed = true;
    return Promise.resolve();
  }

  writeEnd(_digest: Uint8Array): Promise<void> {
    this.ended = true;
    return Promise.resolve();
  }

  #close(name: string): void {
    this.phases.push({ name, pages: [...this.#open].sort((a, b) => a - b) });
    this.#open.clear();
  }

  /** The pages a phase sent. */
  sent(name: string): number[] {
    const p = this.phases.find((x) => x.name === name);
    if (p === undefined) {
      throw new RangeError(`No phase ${name}: ${this.phases.map((x) => x.name)}`);
    }
    return p.pages;
  }
}
