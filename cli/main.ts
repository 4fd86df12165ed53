/**
 * The command line: one file per subcommand; this file dispatches and turns
 * every failure into one line on stderr and a non-zero exit status.
 *
 * @module
 */

import { escapeControl } from "../migration/stream/peer_text.ts";
import { describeError, UsageError } from "./describe_error.ts";
import { runDemo } from "./demo.ts";
import { runInfo } from "./info.ts";
import { runMigrate } from "./migrate.ts";
import { runReceive } from "./receive.ts";
import { runReport } from "./report.ts";
import { runTlsCreds } from "./tls_creds.ts";

/** The top-level usage text. */
export const USAGE = `usage: deno run --allow-ffi --allow-read mod.ts <command> [options]
commands:
  info [--container PATH] [--group N] [--json]   what the VFIO container reports
  migrate --to ENDPOINT --ram SIZE [...]         live-migrate guest RAM (--guest kvm: a KVM guest)
  receive --from ENDPOINT --ram SIZE [...]       restore a migration and verify it
  report FILE [--svg OUT]                        print a migration report and chart it
  demo [...]                                     migrate between two local processes
  tls-creds init DIR [...]                       write a CA and TLS certificates for tls:
endpoints: tcp:HOST:PORT, tls:HOST:PORT, unix:PATH, file:PATH
Every command takes --help: its flags, one line each, with their defaults.`;

/**
 * Runs the CLI.
 *
 * @param args The command line after the script name.
 * @returns The exit status: 0 on success, 1 on failure, 2 on bad usage.
 *
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 * Deno.exit(await main(Deno.args));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "info":
        return runInfo(rest);
      case "migrate":
        return await runMigrate(rest);
      case "receive":
        return await runReceive(rest);
      case "report":
        return runReport(rest);
      case "demo":
        return await runDemo(rest);
      case "tls-creds":
        return await runTlsCreds(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(
          `Unknown command "${command}" (commands: info, migrate, receive, report, demo, tls-creds; run with --help)`,
        );
    }
  } catch (e) {
    // One line whatever the error holds: a peer's text cannot forge more.
    console.error(`deno-vmm: ${escapeControl(describeError(e))}`);
    return e instanceof UsageError ? 2 : 1;
  }
}
