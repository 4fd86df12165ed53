/**
 * `receive`: the destination. Restores a migration stream into its own guest
 * RAM, verifies the final digest, and only then reports success.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { GuestMemory } from "../memory/guest_memory.ts";
import { receiveGuest } from "../migration/destination.ts";
import { formatEndpoint, parseEndpoint } from "../migration/endpoint.ts";
import { listenEndpoint } from "../migration/open_endpoint.ts";
import { guestAddress } from "../sys/address.ts";
import { UsageError } from "./describe_error.ts";
import { parseSize } from "./parse.ts";
import { Progress } from "./progress.ts";
import { peakRssBytes } from "../sys/procfs.ts";

/** The usage text of `receive`. */
export const RECEIVE_USAGE =
  "usage: mod.ts receive --from tcp:HOST:PORT|unix:PATH|file:PATH --ram SIZE [--report FILE]";

/** What `receive --report` writes. */
export interface ReceiveReport {
  /** `completed` once the image is verified, else `failed`. */
  result: "completed" | "failed";
  /** Why it failed. */
  error?: string;
  /** The verified digest (hex). */
  digest?: string;
  /** Stream bytes. */
  bytes?: number;
  /** Pages with bytes, and zero pages. */
  pages?: number;
  /** Zero pages. */
  zeroPages?: number;
  /** Iteration markers seen. */
  iterations?: number;
  /** First byte to verification, ms. */
  ms?: number;
  /** Device states received, by id, with their sizes. */
  deviceStates?: Record<string, number>;
  /** This process's peak resident set size, bytes. */
  peakRssBytes?: number | null;
}

/**
 * Runs `receive`.
 *
 * @param args The arguments after `receive`.
 * @returns 0 once the image is verified; 1 when it was discarded.
 * @throws {UsageError} For bad arguments.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runReceive(["--from", "tcp:0.0.0.0:4444", "--ram", "256M"]));
 * ```
 */
export async function runReceive(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { from: { type: "string" }, ram: { type: "string" }, report: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (${RECEIVE_USAGE})`);
  }
  if (values.from === undefined) throw new UsageError(`--from is required (${RECEIVE_USAGE})`);
  let endpoint;
  try {
    endpoint = parseEndpoint(values.from);
  } catch (e) {
    throw new UsageError(`--from: ${(e as Error).message}`);
  }
  const ram = parseSize("--ram", values.ram);
  if (ram % 4096 !== 0) throw new UsageError(`--ram ${values.ram} is not a multiple of 4 KiB`);
  const progress = new Progress();
  // Pre-fault the RAM before the stream starts: first-touch faults would cap the restore.
  using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(ram) }], {
    prefault: true,
  });
  const listener = listenEndpoint(endpoint);
  progress.done(`listening on ${formatEndpoint(listener.endpoint)}`);
  let report: ReceiveReport;
  try {
    const got = await receiveGuest({
      memory,
      from: listener,
      zeroed: true, // fresh memory, only ever written by this stream
      onAccepted: () => progress.update("receiving…"),
      onIteration: (n) => progress.update(`receiving: iteration ${n} done`),
    });
    const s = got.summary;
    report = {
      result: "completed",
      digest: got.digest,
      bytes: s.bytes,
      pages: s.pages,
      zeroPages: s.zeroPages,
      iterations: s.iterations,
      ms: got.ms,
      deviceStates: Object.fromEntries(
        [...s.deviceStates].map((
          [id, chunks],
        ) => [id, chunks.reduce((n, c) => n + c.byteLength, 0)]),
      ),
    };
    progress.done(
      `received and verified ${(ram / 2 ** 20).toFixed(0)} MiB: ${s.iterations} iterations, ${
        (s.bytes / 2 ** 20).toFixed(1)
      } MiB of stream in ${got.ms.toFixed(0)} ms; digest ${got.digest.slice(0, 16)}…`,
    );
  } catch (e) {
    report = { result: "failed", error: e instanceof Error ? e.message : String(e) };
    progress.done(`deno-vmm: ${report.error}; the partial image was discarded`);
  } finally {
    listener.close();
  }
  report.peakRssBytes = peakRssBytes();
  if (values.report !== undefined) {
    Deno.writeTextFileSync(values.report, JSON.stringify(report, null, 2) + "\n");
  }
  return report.result === "completed" ? 0 : 1;
}
