/**
 * The fake kernel's boundary: how every call runs. An injected failure comes
 * first (no side effect), then the model; a {@linkcode KernelError} becomes
 * the boundary's error type (`SyscallError` or `IoctlError`); every call is
 * logged.
 *
 * @module
 */

import { SyscallError } from "../../sys/errors.ts";
import { type FailNextOptions, type FakeCall, FaultPlan } from "./recorder.ts";
import { fail, KernelError } from "./user_memory.ts";
import type { FakeWorld } from "./world.ts";

/** The call log, fault plan and world of one fake kernel. */
export class FakeBoundary {
  /** The kernel's state. */
  readonly world: FakeWorld;
  #faults = new FaultPlan();
  #calls: FakeCall[] = [];

  /**
   * Wraps a world.
   *
   * @param world The kernel's state.
   */
  constructor(world: FakeWorld) {
    this.world = world;
  }

  /**
   * Runs a call.
   *
   * @param call What the log records.
   * @param names The names an injected failure may match.
   * @param toError Makes the boundary's error from an errno.
   * @param body The model.
   * @returns What the model returns.
   * @throws {SyscallError} An injected failure or the model's errno, typed by `toError`.
   */
  run<T>(
    call: FakeCall,
    names: readonly string[],
    toError: (errno: number) => SyscallError,
    body: () => T,
  ): T {
    const injected = this.#faults.take(names);
    try {
      if (injected !== undefined) fail(injected);
      const result = body();
      this.#calls.push(call);
      return result;
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      this.#calls.push({ ...call, errno: err.errno });
      throw toError(err.errno);
    }
  }

  /**
   * Runs a plain syscall, matched by its name, and for a host or model file
   * also by `"<syscall> <path>"` (such as `"pread /proc/self/pagemap"`).
   *
   * @param syscall The syscall's name.
   * @param fd The fd it names, if any.
   * @param body The model.
   * @returns What the model returns.
   * @throws {SyscallError} Named after the syscall, with the errno.
   */
  sys<T>(syscall: string, fd: number | undefined, body: () => T): T {
    const label = fd === undefined ? undefined : this.label(fd);
    const call: FakeCall = {
      syscall,
      ...(label === undefined ? {} : { name: label }),
      ...(fd === undefined ? {} : { fd }),
    };
    const names = label === undefined ? [syscall] : [syscall, `${syscall} ${label}`];
    return this.run(call, names, (e) => new SyscallError(syscall, e), body);
  }

  /**
   * The path (or memfd name) of a host or model file.
   *
   * @param fd The fd.
   * @returns The label, or undefined for VFIO files and unknown fds.
   */
  label(fd: number): string | undefined {
    const e = this.world.fds.get(fd);
    return e?.kind === "host" ? e.host.label : e?.kind === "model" ? e.model.path : undefined;
  }

  /**
   * Queues a failure (see `FakeKernel.failNext`).
   *
   * @param name The call's name.
   * @param errno The errno.
   * @param options How many times.
   * @throws {RangeError} When `times` is not a positive integer.
   */
  failNext(name: string, errno: number, options: FailNextOptions = {}): void {
    this.#faults.add(name, errno, options);
  }

  /** The call log, oldest first. */
  get calls(): readonly FakeCall[] {
    return this.#calls;
  }

  /** Empties the call log. */
  clearCalls(): void {
    this.#calls = [];
  }
}
