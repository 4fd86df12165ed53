/**
 * Text that came from a peer (a destination's failure message, a device id
 * from a stream) made safe to print: control characters, escape sequences,
 * line breaks and bidirectional overrides are shown as escapes, so a peer
 * cannot forge lines or move the cursor on a terminal or in a log.
 *
 * @module
 */

// C0 controls, DEL, C1 controls, line and paragraph separators, and the
// bidirectional embedding, override and isolate controls.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Escapes what a peer sent before it reaches a terminal or a log.
 *
 * @param text The peer's text.
 * @param options `max`: keep at most this many characters (default 4096),
 *   marking the cut with `…`.
 * @returns The text with each unsafe character as `\n`, `\t`, `\xNN` or
 *   `\u{NNNN}`, and backslashes doubled.
 *
 * @example A forged line stays on one line
 * ```ts
 * import { peerText } from "./peer_text.ts";
 * console.log(peerText("ok\n\x1b[32mmigration completed: fake"));
 * // ok\n\x1b[32mmigration completed: fake
 * ```
 */
export function peerText(text: string, options: { max?: number } = {}): string {
  const max = options.max ?? 4096;
  const cut = text.length > max ? text.slice(0, max) : text;
  const escaped = escapeControl(cut.replaceAll("\\", "\\\\"));
  return cut.length < text.length ? `${escaped}…` : escaped;
}

/**
 * Escapes only the unsafe characters (no truncation, backslashes kept): the
 * last pass over a line about to be printed, whose peer parts already went
 * through {@linkcode peerText}.
 *
 * @param text The line.
 * @returns The line with each unsafe character escaped.
 *
 * @example
 * ```ts
 * import { escapeControl } from "./peer_text.ts";
 * console.log(escapeControl("a\x07b")); // a\x07b
 * ```
 */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}
