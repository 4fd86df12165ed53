/**
 * A {@linkcode Syscalls} wrapper that records every call and its outcome, for
 * tests that assert what reached the kernel (or that nothing did).
 *
 * @module
 */

import { SyscallError } from "../sys/errors.ts";
import { type ForwardedCall, ForwardingSyscalls } from "./forwarding_syscalls.ts";

/** One recorded call. */
export interface RecordedCall {
  /** `open`, `close`, `ioctl`, `mmap`, `munmap`, `pread`, `lseek`, `madvise`... */
  readonly syscall: string;
  /** The ioctl name, for ioctls. */
  readonly name?: string;
  /** The ioctl argument as the kernel left it (a copy), for pointer ioctls. */
  readonly arg?: Uint8Array;
  /** The return value on success. */
  readonly ret?: number | bigint;
  /** The errno on failure. */
  readonly errno?: number;
}

/**
 * Records the calls made through an inner {@linkcode Syscalls}.
 *
 * @example Count the ioctls a call made
 * ```ts ignore
 * const sys = new RecordingSyscalls(new FakeKernel());
 * using c = VfioContainer.open({ syscalls: sys });
 * console.log(sys.ioctls("VFIO_GET_API_VERSION").length); // 1
 * ```
 */
export class RecordingSyscalls extends ForwardingSyscalls {
  /** The calls, oldest first. */
  readonly calls: RecordedCall[] = [];

  /**
   * Returns the recorded ioctls, optionally of one name.
   *
   * @param name An ioctl name.
   * @returns The matching calls.
   */
  ioctls(name?: string): RecordedCall[] {
    return this.calls.filter((c) =>
      c.syscall === "ioctl" && (name === undefined || c.name === name)
    );
  }

  /**
   * Records the call, its argument as the kernel left it, and its outcome.
   *
   * @param call What is called.
   * @param run Makes the call.
   * @returns What the call returns.
   */
  override around<T>(call: ForwardedCall, run: () => T): T {
    const copy = call.arg ? { arg: call.arg.slice() } : {};
    const entry = {
      syscall: call.syscall,
      ...(call.name === undefined ? {} : { name: call.name }),
    };
    try {
      const ret = run();
      const arg = call.arg ? { arg: call.arg.slice() } : copy;
      const value = typeof ret === "number" || typeof ret === "bigint" ? ret : 0;
      this.calls.push({ ...entry, ...arg, ret: value });
      return ret;
    } catch (e) {
      if (e instanceof SyscallError) {
        const arg = call.arg ? { arg: call.arg.slice() } : copy;
        this.calls.push({ ...entry, ...arg, errno: e.errno });
      }
      throw e;
    }
  }
}
