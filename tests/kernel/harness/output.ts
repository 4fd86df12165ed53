/**
 * Streams test output live while remembering what the harness needs from it:
 * the last lines, `deno test`'s summary, and the guest's exit marker.
 *
 * @module
 */

/** The counts on `deno test`'s closing `ok | N passed | M failed` line. */
export interface TestSummary {
  /** Tests that passed. */
  passed: number;
  /** Tests that failed. */
  failed: number;
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
// Terminal controls other than colors (SeaBIOS clears the screen, for one).
// deno-lint-ignore no-control-regex
const CONTROLS = /\x1bc|\x1b\[[0-9;?]*[A-Za-ln-z]/g;
// deno-lint-ignore no-control-regex
const PARTIAL_ESCAPE = /\x1b(?:\[[0-9;?]*)?$/;
const SUMMARY = /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/;
const MARKER = /^DENO_VMM_GUEST_EXIT (\S+) (\d+)$/;

/** Copies a byte stream to a destination line by line, watching each line. */
export class OutputWatcher {
  #decoder = new TextDecoder();
  #partial = "";
  #escape = "";
  #tail: string[] = [];
  #tailSize: number;
  #nonce: string | undefined;
  #log: Deno.FsFile | undefined;
  #sink: (text: string) => void;
  #onLine: (line: string) => void;

  /** The last `deno test` summary seen. */
  summary: TestSummary | undefined;
  /** The guest's exit status, once its marker (with the right nonce) was seen. */
  guestStatus: number | undefined;

  /**
   * Creates a watcher.
   *
   * @param options `nonce`: the run's marker nonce; `log`: a file that gets
   * every byte; `sink`: where text goes (stdout by default); `onLine`: called
   * for each complete line; `tailSize`: lines kept for {@linkcode tail}.
   */
  constructor(options: {
    nonce?: string;
    log?: Deno.FsFile;
    sink?: (text: string) => void;
    onLine?: (line: string) => void;
    tailSize?: number;
  } = {}) {
    this.#nonce = options.nonce;
    this.#log = options.log;
    this.#sink = options.sink ?? writeStdout;
    this.#onLine = options.onLine ?? (() => {});
    this.#tailSize = options.tailSize ?? 40;
  }

  /**
   * Takes the next chunk of output.
   *
   * @param chunk Bytes as they arrived.
   */
  feed(chunk: Uint8Array): void {
    this.#log?.writeSync(chunk);
    let text = this.#escape + this.#decoder.decode(chunk, { stream: true });
    // Hold back an escape sequence cut by the chunk boundary.
    this.#escape = PARTIAL_ESCAPE.exec(text)?.[0] ?? "";
    text = text.slice(0, text.length - this.#escape.length).replaceAll("\r", "")
      .replace(CONTROLS, "");
    if (text === "") return;
    this.#sink(text);
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop()!;
    for (const line of lines) this.#line(line);
  }

  /** Flushes a last line that had no newline. */
  end(): void {
    if (this.#partial !== "") {
      this.#sink("\n");
      this.#line(this.#partial);
      this.#partial = "";
    }
  }

  /**
   * The last lines seen.
   *
   * @returns Up to `tailSize` lines.
   */
  tail(): string[] {
    return [...this.#tail];
  }

  #line(raw: string): void {
    const line = raw.replace(ANSI, "");
    this.#tail.push(line);
    if (this.#tail.length > this.#tailSize) this.#tail.shift();
    const summary = SUMMARY.exec(line);
    if (summary) this.summary = { passed: Number(summary[1]), failed: Number(summary[2]) };
    const marker = MARKER.exec(line.trim());
    if (marker && this.#nonce !== undefined && marker[1] === this.#nonce) {
      this.guestStatus = Number(marker[2]);
    }
    this.#onLine(line);
  }
}

const encoder = new TextEncoder();

/**
 * Writes all of a text to stdout.
 *
 * @param text The text.
 */
export function writeStdout(text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}
