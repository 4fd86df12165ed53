/**
 * An output-only 16550/8250 UART at COM1 (ports 0x3f8-0x3ff): bytes the guest
 * writes to the transmit register are collected into lines and handed to a
 * callback. The line status register always reads "transmitter empty", so a
 * guest that polls it never waits; other registers read back what was written.
 *
 * @module
 */

import type { PioHandler } from "./io_bus.ts";

/** COM1's base port. */
export const COM1_PORT = 0x3f8;
/** Registers the UART occupies. */
export const SERIAL_PORTS = 8;

const THR = 0; // transmit holding (DLAB 0)
const LCR = 3;
const LSR = 5;
const LCR_DLAB = 0x80;
const LSR_THRE_TEMT = 0x60;
const MAX_LINE = 4096;

/**
 * The UART. Register it on a VM's PIO bus at {@linkcode COM1_PORT}.
 *
 * @example Log the guest's lines
 * ```ts
 * import { COM1_PORT, SERIAL_PORTS, Serial8250 } from "./serial.ts";
 * const lines: string[] = [];
 * const uart = new Serial8250({ onLine: (line) => lines.push(line) });
 * for (const c of "hi\n") uart.write(COM1_PORT, 1, c.charCodeAt(0));
 * console.log(lines, SERIAL_PORTS); // [ "hi" ] 8
 * ```
 */
export class Serial8250 implements PioHandler {
  #base: number;
  #regs = new Uint8Array(SERIAL_PORTS);
  #line: number[] = [];
  #onLine: (line: string) => void;
  #decoder = new TextDecoder();
  #bytes = 0;

  /**
   * Creates the UART.
   *
   * @param options `base`: its first port (default COM1); `onLine`: called
   *   with each line, without the newline (carriage returns dropped).
   */
  constructor(options: { base?: number; onLine: (line: string) => void }) {
    this.#base = options.base ?? COM1_PORT;
    this.#onLine = options.onLine;
  }

  /**
   * Bytes transmitted so far.
   *
   * @returns The count.
   */
  get bytesWritten(): number {
    return this.#bytes;
  }

  /**
   * Reads a register.
   *
   * @param port The port.
   * @returns LSR: transmitter empty; others: the last value written.
   */
  read(port: number): number {
    const reg = port - this.#base;
    if (reg === LSR) return LSR_THRE_TEMT;
    return this.#regs[reg] ?? 0xff;
  }

  /**
   * Writes a register; bytes to the transmit register go to the line.
   *
   * @param port The port.
   * @param _size Bytes (only the low byte is used).
   * @param value The value.
   */
  write(port: number, _size: number, value: number): void {
    const reg = port - this.#base;
    if (reg === THR && (this.#regs[LCR] & LCR_DLAB) === 0) {
      this.#bytes++;
      const c = value & 0xff;
      if (c === 0x0a) this.#emit();
      else if (c !== 0x0d) {
        this.#line.push(c);
        if (this.#line.length >= MAX_LINE) this.#emit();
      }
      return;
    }
    if (reg >= 0 && reg < SERIAL_PORTS) this.#regs[reg] = value & 0xff;
  }

  #emit(): void {
    const line = this.#decoder.decode(new Uint8Array(this.#line));
    this.#line = [];
    this.#onLine(line);
  }

  /** Hands a partial line to the callback, if there is one. */
  flush(): void {
    if (this.#line.length > 0) this.#emit();
  }
}
