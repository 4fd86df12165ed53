/**
 * The fake kernel's fd table. Fake fds start at 1000 so they never look like
 * real ones; like the kernel, the lowest free number is handed out. Files the
 * fake opens on the host kernel for the caller (memfds, userfaultfds,
 * `/proc/self/pagemap`, other `/proc` and `/sys` files) keep their real
 * numbers, so `/proc/self/fd/N` and `mmap` work on them, and are counted
 * like the rest.
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

/** What a host fd is, for the fake's special cases and `openFdDescriptions()`. */
export type HostFileKind = "memfd" | "pagemap" | "userfaultfd" | "/dev/userfaultfd" | "file";

/** A file the fake opened on the host kernel; the fd number is the real one. */
export interface HostFile {
  /** What it is. */
  readonly what: HostFileKind;
  /** The path it was opened at, or the memfd's name. */
  readonly label: string;
  /** A memfd standing in for a hugetlbfs file of the fake's huge-page pool. */
  readonly hugetlb?: boolean;
}

/**
 * A file whose contents the fake models (a `/proc` file standing for a
 * kernel feature the options describe).
 */
export interface ModelFile {
  /** The path. */
  readonly path: string;
  /** The contents at open, as `seq_file` snapshots them. */
  readonly contents: Uint8Array;
  /** The file position. */
  pos: number;
  /**
   * The file's `write` op (absent: `EINVAL`, as for a read-only proc file).
   *
   * @param bytes The bytes.
   * @returns Bytes consumed.
   * @throws {KernelError} The errno.
   */
  write?(bytes: Uint8Array): number;
}

/** What an fd refers to. */
export type FdEntry =
  | { readonly kind: "container"; readonly container: FakeContainer }
  | { readonly kind: "group"; readonly group: FakeGroup }
  | { readonly kind: "device"; readonly device: FakeDevice }
  | { readonly kind: "data"; readonly file: FakeDataFile }
  | { readonly kind: "host"; readonly host: HostFile }
  | { readonly kind: "model"; readonly model: ModelFile };

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
   * Installs an entry at a given fd: a host file at its real number.
   *
   * @param fd The fd.
   * @param entry The entry.
   * @returns The fd.
   * @throws {TypeError} When the number is taken (a real fd past 999 that
   *   collides with a fake one).
   */
  installAt(fd: number, entry: FdEntry): number {
    if (this.#entries.has(fd)) {
      throw new TypeError(`Cannot install host fd ${fd} in the fake kernel: the number is taken`);
    }
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
   *   `"data 0000:00:03.0 save"`, `"memfd ram0"`, `"file /proc/self/pagemap"`.
   */
  describe(): string[] {
    return [...this.#entries].sort(([a], [b]) => a - b).map(([fd, e]) => {
      switch (e.kind) {
        case "container":
          return `container ${fd}`;
        case "group":
          return `group ${e.group.id}`;
        case "device":
          return `device ${e.device.name}`;
        case "data":
          return `data ${e.file.label}`;
        case "host":
          return e.host.what === "memfd" || e.host.what === "userfaultfd"
            ? `${e.host.what} ${e.host.label}`
            : `file ${e.host.label}`;
        case "model":
          return `file ${e.model.path}`;
      }
    });
  }
}
