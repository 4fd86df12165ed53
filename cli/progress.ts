/**
 * A one-line progress display on a terminal; plain lines elsewhere.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Shows progress on stderr: on a TTY one line rewritten in place, otherwise
 * (logs, CI) only the lines marked `keep`.
 *
 * @example
 * ```ts ignore
 * const p = new Progress();
 * p.update("iteration 3: 1200 dirty pages");
 * p.done("migrated");
 * ```
 */
export class Progress {
  #tty: boolean;
  #dirty = false;

  /**
   * Creates the display.
   *
   * @param options `tty` overrides the terminal check.
   */
  constructor(options: { tty?: boolean } = {}) {
    this.#tty = options.tty ?? Deno.stderr.isTerminal();
  }

  /**
   * Shows a line.
   *
   * @param text The line.
   * @param options `keep`: also print it as a permanent line when not on a TTY.
   */
  update(text: string, options: { keep?: boolean } = {}): void {
    if (this.#tty) {
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${text}`));
      this.#dirty = true;
    } else if (options.keep) {
      Deno.stderr.writeSync(encoder.encode(`${text}\n`));
    }
  }

  /**
   * Ends the live line and prints a permanent one.
   *
   * @param text The line.
   */
  done(text: string): void {
    const prefix = this.#tty && this.#dirty ? "\r\x1b[K" : "";
    this.#dirty = false;
    Deno.stderr.writeSync(encoder.encode(`${prefix}${text}\n`));
  }
}
