/**
 * Typed errors raised at the syscall boundary.
 *
 * Every failed libc call (and every failure the fake kernel injects) is reported
 * through one of these classes, so callers match on `err.errno`, never on the
 * message text.
 *
 * @module
 */

import { errnoName } from "./errno.ts";

/**
 * A system call failed with an errno.
 *
 * @example Match on the errno
 * ```ts
 * import { SyscallError } from "./errors.ts";
 * const err = new SyscallError("open", 2, { path: "/dev/vfio/vfio" });
 * console.log(err.message); // "open /dev/vfio/vfio failed: ENOENT (2)"
 * ```
 */
export class SyscallError extends Error {
  /** The call that failed, such as `"open"` or `"mmap"`. */
  readonly syscall: string;
  /** The errno number the kernel returned. */
  readonly errno: number;
  /** The symbolic errno name, such as `"EINVAL"`. */
  readonly code: string;
  /** The path the call named, where it named one. */
  readonly path?: string;

  /**
   * Creates the error.
   *
   * @param syscall The failing call, named as in the kernel or libc.
   * @param errno The errno number.
   * @param options The path the call named, and a lower error as `cause`.
   */
  constructor(
    syscall: string,
    errno: number,
    options: { path?: string; cause?: unknown } = {},
  ) {
    const what = options.path === undefined ? syscall : `${syscall} ${options.path}`;
    super(
      `${what} failed: ${errnoName(errno)} (${errno})`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "SyscallError";
    this.syscall = syscall;
    this.errno = errno;
    this.code = errnoName(errno);
    if (options.path !== undefined) this.path = options.path;
  }
}

/**
 * An ioctl failed. The ioctl's name is kept with its errno because request
 * numbers repeat across fd types (`VFIO_IOMMU_DIRTY_PAGES` and
 * `VFIO_DEVICE_FEATURE` are both `0x3b75`).
 *
 * @example The message names the ioctl and the errno
 * ```ts
 * import { IoctlError } from "./errors.ts";
 * const err = new IoctlError("VFIO_IOMMU_MAP_DMA", 22);
 * console.log(err.message); // "VFIO_IOMMU_MAP_DMA failed: EINVAL (22)"
 * ```
 */
export class IoctlError extends SyscallError {
  /** The ioctl's name as spelled in the kernel headers. */
  readonly ioctl: string;

  /**
   * Creates the error.
   *
   * @param ioctl The ioctl name, such as `"VFIO_IOMMU_MAP_DMA"`.
   * @param errno The errno number.
   * @param options A lower error as `cause`.
   */
  constructor(ioctl: string, errno: number, options: { cause?: unknown } = {}) {
    super(ioctl, errno, options);
    this.name = "IoctlError";
    this.ioctl = ioctl;
  }
}

/**
 * An object refused to close because things that depend on it are still
 * open: the one rule for every resource of the project (guest memory and its
 * DMA leases, VFIO containers, groups, devices and their mappings, iommufd
 * objects). Nothing was changed; close what it names first (declaring them
 * with `using`, in the order they were made, does that), then close it again.
 *
 * @example Close in order
 * ```ts
 * import { ResourceBusyError } from "./errors.ts";
 * const e = new ResourceBusyError("container /dev/vfio/vfio", ["group /dev/vfio/26"], {
 *   order: "close its devices, then its groups, then the container",
 * });
 * console.log(e.message);
 * // "Cannot close container /dev/vfio/vfio: group /dev/vfio/26 is still open (close its devices, then its groups, then the container)"
 * ```
 */
export class ResourceBusyError extends Error {
  /** What refused to close, such as `"container /dev/vfio/vfio"`. */
  readonly resource: string;
  /** What is still open, such as `["group /dev/vfio/26"]`. */
  readonly dependents: readonly string[];

  /**
   * Creates the error.
   *
   * @param resource What refused to close.
   * @param dependents What is still open.
   * @param options `order`: what to close first, in words; `verb`: the action
   *   refused (default `"close"`).
   */
  constructor(
    resource: string,
    dependents: readonly string[],
    options: { order?: string; verb?: string } = {},
  ) {
    const what = dependents.length === 1
      ? `${dependents[0]} is still open`
      : `${dependents.slice(0, -1).join(", ")} and ${dependents.at(-1)} are still open`;
    const order = options.order ?? `close ${dependents.length === 1 ? "it" : "them"} first`;
    super(`Cannot ${options.verb ?? "close"} ${resource}: ${what} (${order})`);
    this.name = "ResourceBusyError";
    this.resource = resource;
    this.dependents = Object.freeze([...dependents]);
  }
}
