/**
 * The fake kernel's test support: the call log and fault injection.
 *
 * @module
 */

/** One recorded call. */
export interface FakeCall {
  /** The syscall: `"open"`, `"close"`, `"ioctl"`, `"mmap"`, `"pread"`, `"lseek"`, `"madvise"`... */
  readonly syscall: string;
  /**
   * The ioctl name as passed in the request, the path of an `open`, or the
   * path (or memfd name) of the host or model file another call named.
   */
  readonly name?: string;
  /** The fd the call named. */
  readonly fd?: number;
  /** The errno, when the call failed. */
  readonly errno?: number;
}

/** Options of {@linkcode FaultPlan.add}. */
export interface FailNextOptions {
  /** How many consecutive matching calls fail (default 1). */
  readonly times?: number;
}

/** Queued injected failures, matched by ioctl or syscall name. */
export class FaultPlan {
  #queue: { name: string; errno: number; left: number }[] = [];

  /**
   * Queues a failure.
   *
   * @param name An ioctl name (`"VFIO_IOMMU_MAP_DMA"`) or a syscall name (`"mmap"`).
   * @param errno The errno to fail with.
   * @param options How many times.
   * @throws {RangeError} When `times` is not a positive integer.
   */
  add(name: string, errno: number, options: FailNextOptions = {}): void {
    const times = options.times ?? 1;
    if (!Number.isInteger(times) || times < 1) {
      throw new RangeError(`Cannot inject ${name} failure ${times} times: not a positive integer`);
    }
    this.#queue.push({ name, errno, left: times });
  }

  /**
   * Takes the first queued failure matching any of the names.
   *
   * @param names The names the call goes by.
   * @returns The errno to fail with, or undefined.
   */
  take(names: readonly string[]): number | undefined {
    const i = this.#queue.findIndex((f) => names.includes(f.name));
    if (i < 0) return undefined;
    const f = this.#queue[i];
    if (--f.left === 0) this.#queue.splice(i, 1);
    return f.errno;
  }
}
