// The benches' command lines: node:util parseArgs with -h/--help added, the
// usage printed for it (exit 0), and a parse error or a bad value reported
// on one stderr line, `<name>: <message> (see --help)`, with exit 2.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { UsageError } from "../cli/describe_error.ts";
import { parseChoice, parseInteger, parseRate, parseSize } from "../cli/parse.ts";

/** Parsed flags and a way to reject a bad value. */
export interface BenchArgs<T extends ParseArgsOptionsConfig> {
  /** The flags' values, as parseArgs gives them. */
  values: ReturnType<typeof parseArgs<{ options: T; strict: true }>>["values"];
  /** Prints `<name>: <message> (see --help)` on stderr and exits 2. */
  fail(message: string): never;
  /** The flag's value as a whole number >= `min` (cli/parse.ts), or `fail`. */
  integer(flag: keyof T & string, min: number): number;
  /** The flag's value as a size in bytes, such as 256M (cli/parse.ts), or `fail`. */
  size(flag: keyof T & string): number;
  /** The flag's value as a rate in bytes/s, such as 32M (cli/parse.ts), or `fail`. */
  rate(flag: keyof T & string): number;
  /** The flag's value if it is one of `choices`, or `fail`. */
  choice(flag: keyof T & string, choices: readonly string[]): string;
}

/**
 * Parses `Deno.args` (or `args`) against `options` plus -h/--help.
 *
 * @param name The prefix of error lines: the deno task or the script.
 * @param usage The text --help prints.
 * @param options parseArgs's options, without help.
 * @param args The arguments, `Deno.args` by default.
 * @returns The values, `fail` and the value checks.
 */
export function benchArgs<const T extends ParseArgsOptionsConfig>(
  name: string,
  usage: string,
  options: T,
  args: string[] = Deno.args,
): BenchArgs<T> {
  const fail = (message: string): never => {
    console.error(`${name}: ${message} (see --help)`);
    Deno.exit(2);
  };
  let values: Record<string, unknown>;
  try {
    values = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
    }).values;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS_")) throw e;
    // "Unknown option '--x'", "Option '--ram <value>' argument missing", ...;
    // the first sentence, without parseArgs's advice about positionals.
    const first = (e as Error).message.split(/\.\s/)[0].replace(/\.$/, "");
    return fail(first.charAt(0).toLowerCase() + first.slice(1));
  }
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  // The CLI's own parsers, their UsageError turned into `fail`.
  const checked = <R>(parse: (text: string | undefined) => R) => (flag: string): R => {
    const text = values[flag];
    try {
      return parse(typeof text === "string" ? text : undefined);
    } catch (e) {
      if (e instanceof UsageError) return fail(e.message);
      throw e;
    }
  };
  const integer = (flag: string, min: number) =>
    checked((t) => parseInteger(`--${flag}`, t, { min }))(flag);
  const size = (flag: string) => checked((t) => parseSize(`--${flag}`, t))(flag);
  const rate = (flag: string) => checked((t) => parseRate(`--${flag}`, t))(flag);
  const choice = (flag: string, choices: readonly string[]) =>
    checked((t) => parseChoice(`--${flag}`, t, choices))(flag);
  return { values: values as BenchArgs<T>["values"], fail, integer, size, rate, choice };
}
