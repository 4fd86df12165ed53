/**
 * The fake kernel's fd table. Fake fds start at 1000 so they never look like
 * real ones; like the kernel, the lowest free number is handed out.
 *
 * @module
 */

import type { FakeContainer } from "./container.ts";
import type { FakeDevice } from "./device.ts";
import type { FakeGroup } from "./group.ts";
import type { UserArg } from "./user_memory.ts";

/** The first fake fd. */
export const FIRST_FAKE_FD = 1000;

/**
 * The file behind a migration `data_fd`: an anon-inode stream file that a
 * driver's `migration_set_state` returns (`O_RDONLY` for a saving session,
 * `O_WRONLY` for `RESUMING`), opened with `stream_open` (no `pread`/`pwrite`).
 */
export interface FakeDataFile {
  /** What the file was opened for: `"read"` (`O_RDONLY`) or `"write"` (`O_WRONLY`). */
  readonly mode: "read" | "write";
  /** Shown by `openFdDescriptions()`, such as `"0000:00:03.0 save"`. */
  readonly label: string;
  /**
   * The file's `read` op.
   *
   * @param buf Where the bytes go.
   * @returns Bytes read; 0 at end of stream.
   * @throws {KernelError} The errno.
   */
  read(buf: Uint8Array): number;
  /**
   * The file's `write` op.
   *
   * @param buf The bytes.
   * @returns Bytes consumed.
   * @throws {KernelError} The errno.
   */
  write(buf: Uint8Array): number;
  /**
   * The file's `unlocked_ioctl` (`ENOTTY` when it has none).
   *
   * @param code The request number.
   * @param arg The user argument.
   * @returns The return value.
   * @throws {KernelError} The errno.
   */
  ioctl(code: number, arg: UserArg): number;
  /** The file's `release`: the last close of the fd. */
  release(): void;
}

/** What an fd refers to. */
export type FdEntry =
  | { readonly kind: "container"; readonly container: FakeContainer }
  | { readonly kind: "group"; readonly group: FakeGroup }
  | { readonly kind: "device"; readonly device: FakeDevice }
  | { readonly kind: "data"; readonly file: FakeDataFile };

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
   * @returns Lines like `"container 1000"`, `"group 26"`, `"device 0000:00:03.0"`,
   *   `"data 0000:00:03.0 save"`.
   */
  describe(): string[] {
    return [...this.#entries].sort(([a], [b]) => a - b).map(([fd, e]) =>
      e.kind === "container"
        ? `container ${fd}`
        : e.kind === "group"
        ? `group ${e.group.id}`
        : e.kind === "device"
        ? `device ${e.device.name}`
        : `data ${e.file.label}`
    );
  }
}
