/**
 * VFIO domain errors. Kernel failures stay `IoctlError`s; these name
 * conditions a caller is meant to catch and act on.
 *
 * @module
 */

/**
 * The container cannot report device-side dirty pages: it has no migration
 * capability, or `VFIO_IOMMU_DIRTY_PAGES` answered `ENOTTY` (the iommufd
 * compatibility container). Migration can still run on CPU-side tracking.
 *
 * @example
 * ```ts
 * import { DirtyTrackingUnavailableError } from "./errors.ts";
 * const e = new DirtyTrackingUnavailableError("the container has no migration capability");
 * console.log(e.message);
 * ```
 */
export class DirtyTrackingUnavailableError extends Error {
  /** Why tracking is unavailable. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @param reason Why tracking is unavailable.
   * @param options The lower error, such as the `ENOTTY` `IoctlError`.
   */
  constructor(reason: string, options: { cause?: unknown } = {}) {
    super(`Device-side dirty tracking unavailable: ${reason}`, options);
    this.name = "DirtyTrackingUnavailableError";
    this.reason = reason;
  }
}

/**
 * An object was used in a state that does not allow the call (closed, or torn
 * down out of the kernel's order).
 *
 * @example
 * ```ts
 * import { VfioStateError } from "./errors.ts";
 * const e = new VfioStateError("Cannot map DMA: the container is closed");
 * console.log(e instanceof VfioStateError, e.message);
 * ```
 */
export class VfioStateError extends Error {
  /**
   * Creates the error.
   *
   * @param message What cannot be done, and why.
   * @param options The lower error, if any.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "VfioStateError";
  }
}
