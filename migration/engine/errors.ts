/**
 * The migration domain error.
 *
 * @module
 */

/**
 * A migration failed. The source keeps running; the destination discards its
 * image. `phase` says where it failed, and `cause` carries the lower error
 * (an `IoctlError`, a `StreamError`, a transport error).
 *
 * @example
 * ```ts
 * import { MigrationError } from "./errors.ts";
 * const e = new MigrationError("iterate", "Cannot converge: 40 MiB still dirty");
 * console.log(e.phase);
 * ```
 */
export class MigrationError extends Error {
  /**
   * Where it failed: on the source, the engine's phase that was running
   * (`setup`, `iterate`, `stop-and-copy`, `complete`, `cleanup`); on the
   * destination, `destination`.
   */
  readonly phase: string;

  /**
   * Creates the error.
   *
   * @param phase Where it failed.
   * @param message What failed, and why.
   * @param options The lower error.
   */
  constructor(phase: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MigrationError";
    this.phase = phase;
  }
}
