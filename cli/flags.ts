/**
 * Declarative flags for the subcommands: each flag has one line of meaning
 * and its default, so `--help` and the parser come from the same table.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "./describe_error.ts";

/** One flag of a subcommand. */
export interface FlagSpec {
  /** `string` takes a value, `boolean` does not. */
  readonly type: "string" | "boolean";
  /** The value's placeholder in `--help` (`SIZE`, `N`, `ENDPOINT`). */
  readonly value?: string;
  /** One line of meaning. */
  readonly help: string;
  /** The default as `--help` shows it; omitted when there is none. */
  readonly default?: string;
}

/** A subcommand: its name, one line of summary, positional arguments, flags. */
export interface CommandSpec<F extends Record<string, FlagSpec>> {
  /** The subcommand, as typed after `mod.ts`. */
  readonly name: string;
  /** What it does, in one line. */
  readonly summary: string;
  /** Positional arguments in the usage line (`FILE`), if any. */
  readonly positionals?: string;
  /** The flags, by long name. */
  readonly flags: F;
  /** Lines after the flag list (endpoints, notes). */
  readonly notes?: readonly string[];
}

/** The parsed values: strings for value flags, booleans for the others. */
export type FlagValues<F extends Record<string, FlagSpec>> = {
  [K in keyof F]?: F[K]["type"] extends "boolean" ? boolean : string;
};

/**
 * The `--help` text of a subcommand.
 *
 * @param spec The subcommand.
 * @returns Usage, summary, and one line per flag with its default.
 *
 * @example
 * ```ts
 * import { helpText } from "./flags.ts";
 * console.log(helpText({ name: "x", summary: "does x", flags: { n: { type: "string", value: "N", help: "how many", default: "1" } } }));
 * ```
 */
export function helpText<F extends Record<string, FlagSpec>>(spec: CommandSpec<F>): string {
  const rows = Object.entries(spec.flags).map(([name, f]) => [
    `--${name}${f.type === "string" ? ` ${f.value ?? "VALUE"}` : ""}`,
    f.help + (f.default === undefined ? "" : ` (default ${f.default})`),
  ]);
  rows.push(["-h, --help", "show this help"]);
  const width = Math.max(...rows.map(([l]) => l.length));
  return [
    `usage: deno run -A mod.ts ${spec.name}${
      spec.positionals ? ` ${spec.positionals}` : ""
    } [options]`,
    "",
    spec.summary,
    "",
    "options:",
    ...rows.map(([l, r]) => `  ${l.padEnd(width)}  ${r}`),
    ...(spec.notes?.length ? ["", ...spec.notes] : []),
  ].join("\n");
}

/**
 * Parses a subcommand's arguments against its table.
 *
 * @param spec The subcommand.
 * @param args The arguments after the subcommand's name.
 * @returns The values and positionals, or `"help"` when `--help` was asked for.
 * @throws {UsageError} For an unknown flag, a missing value, or positionals
 *   where none are taken, pointing at `--help`.
 *
 * @example
 * ```ts
 * import { parseCommand } from "./flags.ts";
 * const spec = { name: "x", summary: "", flags: { n: { type: "string", help: "" } } } as const;
 * console.log(parseCommand(spec, ["--n", "3"])); // { values: { n: "3" }, positionals: [] }
 * ```
 */
export function parseCommand<F extends Record<string, FlagSpec>>(
  spec: CommandSpec<F>,
  args: string[],
): { values: FlagValues<F>; positionals: string[] } | "help" {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, f] of Object.entries(spec.flags)) options[name] = { type: f.type };
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(
      `${(e as Error).message.split(". ")[0]} (see \`mod.ts ${spec.name} --help\`)`,
    );
  }
  if (parsed.values.help) return "help";
  if (spec.positionals === undefined && parsed.positionals.length > 0) {
    throw new UsageError(
      `${spec.name} takes no argument "${
        parsed.positionals[0]
      }" (see \`mod.ts ${spec.name} --help\`)`,
    );
  }
  const { help: _, ...values } = parsed.values;
  return { values: values as FlagValues<F>, positionals: parsed.positionals };
}
