/**
 * Argument parsing helpers shared by the subcommands: sizes, rates and
 * integers, each with a one-line error naming the flag.
 *
 * @module
 */

import { UsageError } from "./describe_error.ts";

const UNITS: Record<string, number> = {
  "": 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
};

/**
 * Parses a byte size such as `256M`, `1G`, `4096` or `1.5G` (binary units).
 *
 * @param flag The flag, for the message.
 * @param text The value.
 * @returns Bytes.
 * @throws {UsageError} For anything else.
 *
 * @example
 * ```ts
 * import { parseSize } from "./parse.ts";
 * console.log(parseSize("--ram", "256M")); // 268435456
 * ```
 */
export function parseSize(flag: string, text: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text ?? "");
  if (m === null) {
    throw new UsageError(`${flag} takes a size such as 256M or 1G, not "${text ?? ""}"`);
  }
  const bytes = Math.round(Number(m[1]) * UNITS[m[2].toUpperCase()]);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new UsageError(`${flag} ${text} is out of range`);
  }
  return bytes;
}

/**
 * Parses a rate in bytes per second (`64M`, `64M/s`, `0` for unlimited).
 *
 * @param flag The flag, for the message.
 * @param text The value.
 * @returns Bytes per second (0: unlimited).
 * @throws {UsageError} For anything else.
 *
 * @example
 * ```ts
 * import { parseRate } from "./parse.ts";
 * console.log(parseRate("--dirty-rate", "4M/s")); // 4194304
 * ```
 */
export function parseRate(flag: string, text: string | undefined): number {
  if (text === "0") return 0;
  return parseSize(flag, (text ?? "").replace(/\/s$/, ""));
}

/**
 * Parses a non-negative integer.
 *
 * @param flag The flag, for the message.
 * @param text The value.
 * @param options `min` (default 0).
 * @returns The number.
 * @throws {UsageError} For anything else.
 *
 * @example
 * ```ts
 * import { parseInteger } from "./parse.ts";
 * console.log(parseInteger("--downtime-ms", "300")); // 300
 * ```
 */
export function parseInteger(
  flag: string,
  text: string | undefined,
  options: { min?: number } = {},
): number {
  const min = options.min ?? 0;
  if (!/^\d+$/.test(text ?? "") || Number(text) < min || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${flag} takes a whole number of at least ${min}, not "${text ?? ""}"`);
  }
  return Number(text);
}

/**
 * Picks one of a fixed set of words.
 *
 * @param flag The flag, for the message.
 * @param text The value.
 * @param choices The allowed words.
 * @returns The word.
 * @throws {UsageError} For anything else.
 *
 * @example
 * ```ts
 * import { parseChoice } from "./parse.ts";
 * console.log(parseChoice("--workload", "random", ["random", "hotspot"] as const));
 * ```
 */
export function parseChoice<T extends string>(
  flag: string,
  text: string | undefined,
  choices: readonly T[],
): T {
  if (!choices.includes(text as T)) {
    throw new UsageError(`${flag} takes one of ${choices.join(", ")}, not "${text ?? ""}"`);
  }
  return text as T;
}

/**
 * Parses a duration in seconds (`10`, `0.5`).
 *
 * @param flag The flag, for the message.
 * @param text The value.
 * @param options `min` seconds (default: more than 0).
 * @returns Milliseconds.
 * @throws {UsageError} For anything else.
 *
 * @example
 * ```ts
 * import { parseSeconds } from "./parse.ts";
 * console.log(parseSeconds("--idle-timeout", "2.5")); // 2500
 * ```
 */
export function parseSeconds(
  flag: string,
  text: string | undefined,
  options: { min?: number } = {},
): number {
  const v = /^\d+(?:\.\d+)?$/.test(text ?? "") ? Number(text) : NaN;
  const min = options.min ?? 0;
  if (!(v > 0 && v >= min && v <= 365 * 86400)) {
    throw new UsageError(
      `${flag} takes seconds${min > 0 ? ` (at least ${min})` : ""}, such as 10 or 0.5, not "${
        text ?? ""
      }"`,
    );
  }
  return Math.round(v * 1000);
}
