/**
 * The VM's I/O buses: handlers a VMM developer registers per port range
 * ({@linkcode PioBus}) or guest-physical range ({@linkcode MmioBus}), called
 * on the VMM's thread when a vCPU exits with `KVM_EXIT_IO` or
 * `KVM_EXIT_MMIO`.
 *
 * @module
 */

/** What the vCPU does after an exit was handled. */
export type ExitAction = "resume" | "pause" | "stop";

/** A port I/O device. Values are little-endian, `size` bytes (1, 2 or 4). */
export interface PioHandler {
  /**
   * The guest reads a port (`in`).
   *
   * @param port The port.
   * @param size Bytes.
   * @param vcpu The vCPU id.
   * @returns The value; all-ones when absent.
   */
  read?(port: number, size: number, vcpu: number): number;
  /**
   * The guest writes a port (`out`).
   *
   * @param port The port.
   * @param size Bytes.
   * @param value The value.
   * @param vcpu The vCPU id.
   * @returns What the vCPU does next (default `"resume"`).
   */
  write?(port: number, size: number, value: number, vcpu: number): ExitAction | void;
}

/** An MMIO device. Values are little-endian, `size` bytes (1 to 8). */
export interface MmioHandler {
  /**
   * The guest loads from the range.
   *
   * @param gpa The guest-physical address.
   * @param size Bytes.
   * @param vcpu The vCPU id.
   * @returns The value; all-ones when absent.
   */
  read?(gpa: bigint, size: number, vcpu: number): bigint;
  /**
   * The guest stores to the range.
   *
   * @param gpa The guest-physical address.
   * @param size Bytes.
   * @param value The value.
   * @param vcpu The vCPU id.
   * @returns What the vCPU does next (default `"resume"`).
   */
  write?(gpa: bigint, size: number, value: bigint, vcpu: number): ExitAction | void;
}

interface Entry<A, H> {
  base: A;
  end: A;
  handler: H;
}

/**
 * Accesses nobody handles: counted by address; reads return all-ones and
 * writes are dropped, as on a bus with nothing behind it.
 */
export interface UnhandledAccesses<A> {
  /** Accesses so far, by address. */
  readonly counts: ReadonlyMap<A, number>;
}

class Bus<A extends number | bigint, H> {
  #entries: Entry<A, H>[] = [];
  #what: string;
  #fmt: (a: A) => string;
  readonly unhandled = new Map<A, number>();

  constructor(what: string, fmt: (a: A) => string) {
    this.#what = what;
    this.#fmt = fmt;
  }

  register(range: { base: A; length: A }, handler: H): Disposable {
    const { base, length } = range;
    if (length <= 0) throw new RangeError(`Cannot register an empty ${this.#what} range`);
    const end = (base as bigint) + (length as bigint) as A;
    for (const e of this.#entries) {
      if (base < e.end && e.base < end) {
        throw new RangeError(
          `Cannot register ${this.#what} [${this.#fmt(base)}, ${this.#fmt(end)}): ` +
            `it overlaps [${this.#fmt(e.base)}, ${this.#fmt(e.end)})`,
        );
      }
    }
    const entry = { base, end, handler };
    this.#entries.push(entry);
    let live = true;
    return {
      [Symbol.dispose]: () => {
        if (!live) return;
        live = false;
        this.#entries = this.#entries.filter((e) => e !== entry);
      },
    };
  }

  find(addr: A): H | undefined {
    for (const e of this.#entries) if (addr >= e.base && addr < e.end) return e.handler;
    this.unhandled.set(addr, (this.unhandled.get(addr) ?? 0) + 1);
    return undefined;
  }
}

/**
 * Port I/O handlers by port range.
 *
 * @example A port that echoes what was written
 * ```ts
 * import { PioBus } from "./io_bus.ts";
 * const bus = new PioBus();
 * let last = 0;
 * using _lease = bus.register({ base: 0x502, length: 1 }, {
 *   write: (_port, _size, value) => void (last = value),
 *   read: () => last,
 * });
 * bus.find(0x502)?.write?.(0x502, 4, 7, 0);
 * console.log(bus.find(0x502)?.read?.(0x502, 4, 0)); // 7
 * ```
 */
export class PioBus implements UnhandledAccesses<number> {
  #bus = new Bus<number, PioHandler>("ports", (p) => `0x${p.toString(16)}`);

  /**
   * Registers a handler for `[base, base + length)`.
   *
   * @param range The ports.
   * @param handler The device.
   * @returns A lease that unregisters it.
   * @throws {RangeError} For an empty range or one overlapping another.
   */
  register(range: { base: number; length: number }, handler: PioHandler): Disposable {
    return this.#bus.register(range, handler);
  }

  /**
   * The handler of a port (counting the access as unhandled when there is none).
   *
   * @param port The port.
   * @returns The handler, if any.
   */
  find(port: number): PioHandler | undefined {
    return this.#bus.find(port);
  }

  /**
   * Accesses to ports without a handler, by port.
   *
   * @returns The counts.
   */
  get counts(): ReadonlyMap<number, number> {
    return this.#bus.unhandled;
  }
}

/**
 * MMIO handlers by guest-physical range (ranges that have no memory slot).
 *
 * @example A read-only register
 * ```ts
 * import { MmioBus } from "./io_bus.ts";
 * const bus = new MmioBus();
 * using _lease = bus.register({ base: 0xd000_0000n, length: 0x1000n }, { read: () => 42n });
 * console.log(bus.find(0xd000_0004n)?.read?.(0xd000_0004n, 4, 0)); // 42n
 * ```
 */
export class MmioBus implements UnhandledAccesses<bigint> {
  #bus = new Bus<bigint, MmioHandler>("MMIO", (a) => `0x${a.toString(16)}`);

  /**
   * Registers a handler for `[base, base + length)`.
   *
   * @param range The guest-physical range.
   * @param handler The device.
   * @returns A lease that unregisters it.
   * @throws {RangeError} For an empty range or one overlapping another.
   */
  register(range: { base: bigint; length: bigint }, handler: MmioHandler): Disposable {
    return this.#bus.register(range, handler);
  }

  /**
   * The handler of an address (counting the access as unhandled when there is none).
   *
   * @param gpa The address.
   * @returns The handler, if any.
   */
  find(gpa: bigint): MmioHandler | undefined {
    return this.#bus.find(gpa);
  }

  /**
   * Accesses to addresses without a handler, by address.
   *
   * @returns The counts.
   */
  get counts(): ReadonlyMap<bigint, number> {
    return this.#bus.unhandled;
  }
}
