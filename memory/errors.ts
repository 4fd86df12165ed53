/**
 * Errors raised by `memory/` for conditions callers are meant to catch.
 *
 * @module
 */

/**
 * Huge pages were asked for and the host has too few reserved (or none). The
 * message names `/proc/sys/vm/nr_hugepages` and how to reserve pages; `cause`
 * is the failing `SyscallError`. When this is thrown nothing is left mapped.
 *
 * @example Fall back to 4 KiB pages
 * ```ts ignore
 * import { GuestMemory, HugePagesUnavailableError, guestAddress } from "./mod.ts";
 * try {
 *   GuestMemory.create([{ gpa: guestAddress(0n), size: 1n << 30n, backing: "hugetlb" }]);
 * } catch (e) {
 *   if (!(e instanceof HugePagesUnavailableError)) throw e;
 * }
 * ```
 */
export class HugePagesUnavailableError extends Error {
  /** Huge pages the failing region needed. */
  readonly needed: number;
  /** `HugePages_Free` from /proc/meminfo when the mapping failed (-1 if unreadable). */
  readonly free: number;

  /**
   * Creates the error.
   *
   * @param message The message.
   * @param options `needed`, `free` and the lower `cause`.
   */
  constructor(message: string, options: { needed: number; free: number; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "HugePagesUnavailableError";
    this.needed = options.needed;
    this.free = options.free;
  }
}

/**
 * A dirty tracker cannot work on this kernel or with this process's
 * privileges. `reason` says what is missing and how to grant it.
 *
 * @example Read why
 * ```ts
 * import { DirtyTrackerUnavailableError } from "./errors.ts";
 * const e = new DirtyTrackerUnavailableError("soft-dirty", "soft-dirty is not compiled in");
 * console.log(e.message);
 * ```
 */
export class DirtyTrackerUnavailableError extends Error {
  /** The tracker kind. */
  readonly tracker: string;
  /** Why it is unavailable, without the tracker name. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @param tracker The tracker kind, such as `"pagemap-scan"`.
   * @param reason Why, and how to fix it where it can be fixed.
   * @param options The lower `cause`.
   */
  constructor(tracker: string, reason: string, options: { cause?: unknown } = {}) {
    super(`Cannot use the ${tracker} dirty tracker: ${reason}`, { cause: options.cause });
    this.name = "DirtyTrackerUnavailableError";
    this.tracker = tracker;
    this.reason = reason;
  }
}
