/**
 * The fake kernel's fd table. Fake fds start at 1000 so they never look like
 * real ones; like the kernel, the lowest free number is handed out.
 *
 * @module
 */

import type { FakeContainer } from "./container.ts";
import type { FakeDevice } from "./device.ts";
import type { FakeGroup } from "./group.ts";

/** The first fake fd. */
export const FIRST_FAKE_FD = 1000;

/** What an fd refers to. */
export type FdEntry =
  | { readonly kind: "container"; readonly container: FakeContainer }
  | { readonly kind: "group"; readonly group: FakeGroup }
  | { readonly kind: "device"; readonly device: FakeDevice };

/** The fd table. */
export class FdTable {
  #entries: Map<number, FdEntry> = new Map();

  /**
   * Installs an entry at the lowest free fd.
   *
   * @param entry The entry.
   * @returns The fd.
   */
  install(entry: FdEntry): number {
    let fd = FIRST_FAKE_FD;
    while (this.#entries.has(fd)) fd++;
    this.#entries.set(fd, entry);
    return fd;
  }

  /**
   * Looks an fd up.
   *
   * @param fd The fd.
   * @returns The entry, if open.
   */
  get(fd: number): FdEntry | undefined {
    return this.#entries.get(fd);
  }

  /**
   * Removes an fd.
   *
   * @param fd The fd.
   */
  delete(fd: number): void {
    this.#entries.delete(fd);
  }

  /** Open fds. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Describes every open fd, in fd order.
   *
   * @returns Lines like `"container 1000"`, `"group 26"`, `"device 0000:00:03.0"`.
   */
  describe(): string[] {
    return [...this.#entries].sort(([a], [b]) => a - b).map(([fd, e]) =>
      e.kind === "container"
        ? `container ${fd}`
        : e.kind === "group"
        ? `group ${e.group.id}`
        : `device ${e.device.name}`
    );
  }
}
