/**
 * `receive`: the destination. Restores a migration stream into its own guest
 * RAM, verifies the final digest, and only then reports success; with
 * `--guest kvm` it restores the vCPU state too and checks that the guest goes on.
 *
 * @module
 */

import { GuestMemory } from "../memory/guest_memory.ts";
import { formatBytes } from "../memory/host_capacity.ts";
import {
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  defaultIdleTimeoutMs,
  DestinationFailure,
  receiveGuest,
} from "../migration/guest/destination.ts";
import { formatEndpoint, parseEndpoint } from "../migration/transport/endpoint.ts";
import { openListener } from "../migration/transport/open.ts";
import { DESTINATION_TLS_FLAGS, destinationTls } from "./_tls_flags.ts";
import { guestAddress } from "../sys/address.ts";
import { peakRssBytes } from "../sys/procfs.ts";
import { UsageError } from "./describe_error.ts";
import { MAX_CHANNELS } from "../migration/stream/channel_hello.ts";
import { helpText, parseCommand } from "./flags.ts";
import { parseInteger, parseSeconds, parseSize } from "./parse.ts";
import { Progress } from "./progress.ts";
import { ReportFile } from "./report_file.ts";
import { abortWhenStdinCloses, onTerminate } from "./terminate.ts";
import { checkKvmFlags, type DestinationGuestReport, openKvm, parseGuest } from "./_kvm_guest.ts";
import { guestSummary, kvmDestination } from "./_kvm_receive.ts";

/** The flags of `receive`. */
export const RECEIVE_COMMAND = {
  name: "receive",
  summary:
    "Listen for one migration, restore it into fresh guest RAM, verify its digest, and only then report success.",
  flags: {
    from: {
      type: "string",
      value: "ENDPOINT",
      help: "where to listen: tls:HOST:PORT, tcp:HOST:PORT, unix:PATH, or file:PATH (required)",
    },
    ...DESTINATION_TLS_FLAGS,
    ram: { type: "string", value: "SIZE", help: "guest RAM, equal to the source's (required)" },
    report: { type: "string", value: "FILE", help: "write a JSON report here" },
    "idle-timeout": {
      type: "string",
      value: "SECONDS",
      help: "fail when the source sends nothing for this long",
      default: "30 + 0.25 per GiB of RAM",
    },
    "header-timeout": {
      type: "string",
      value: "SECONDS",
      help: "drop a connected peer that sends no valid stream header within this",
      default: String(DEFAULT_HEADER_TIMEOUT_MS / 1000),
    },
    channels: {
      type: "string",
      value: "N",
      help:
        "take RAM over N parallel connections on the same endpoint, as migrate --channels N sends it",
      default: "1",
    },
    "max-attempts": {
      type: "string",
      value: "N",
      help: "give up after this many peers fail before a valid header",
      default: String(DEFAULT_MAX_ATTEMPTS),
    },
    "until-stdin-closes": {
      type: "boolean",
      help: "stop (discarding any image) when stdin reaches its end, as when a parent dies",
    },
    guest: {
      type: "string",
      value: "worker|kvm",
      help:
        "kvm: restore the vCPU state too, resume the test guest on KVM, and check that it goes on",
      default: "worker (RAM only)",
    },
    "run-after-ms": {
      type: "string",
      value: "N",
      help: "with --guest kvm: how long the resumed guest runs before it is checked",
      default: "1000",
    },
    "kvm-device": {
      type: "string",
      value: "PATH",
      help: "with --guest kvm: the KVM device",
      default: "/dev/kvm",
    },
  },
  notes: [
    "A peer that fails before a valid header (or the TLS handshake and authorization) is",
    "dropped and the next one is awaited; once a source is in, any failure discards the image.",
    "Plain tcp: beyond loopback needs --insecure-plaintext. Unix sockets are created mode 0600.",
    "Exit status: 0 verified, 1 failed, 2 usage.",
  ],
} as const;

/** What `receive --report` writes. */
export interface ReceiveReport {
  /** `completed` once the image is verified, else `failed`. */
  result: "completed" | "failed";
  /** Why it failed. */
  error?: string;
  /** Whether the failure came after a source began writing RAM (the image was partial). */
  imageTouched?: boolean;
  /** The source's address, when known. */
  peer?: string;
  /** The source's authenticated identity (over TLS, its certificate's subject). */
  peerIdentity?: string;
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
  /** From the accepted header to verification, ms. */
  ms?: number;
  /** Device states received, by id, with their sizes. */
  deviceStates?: Record<string, number>;
  /** This process's peak resident set size, bytes. */
  peakRssBytes?: number | null;
  /** With `--guest kvm`: both sides' guest counters and whether it went on. */
  guest?: DestinationGuestReport;
}

/**
 * Runs `receive`.
 *
 * @param args The arguments after `receive`.
 * @returns 0 once the image is verified; 1 when none was, or it was discarded.
 * @throws {UsageError} For bad arguments, or a `--report` path that cannot be written.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runReceive(["--from", "tls:0.0.0.0:4444", "--tls-creds", "creds", "--ram", "256M"]));
 * ```
 */
export async function runReceive(args: string[]): Promise<number> {
  const parsed = parseCommand(RECEIVE_COMMAND, args);
  if (parsed === "help") {
    console.log(helpText(RECEIVE_COMMAND));
    return 0;
  }
  const { values } = parsed;
  if (values.from === undefined) throw new UsageError("--from is required (see --help)");
  let endpoint;
  try {
    endpoint = parseEndpoint(values.from);
  } catch (e) {
    throw new UsageError(`--from: ${(e as Error).message}`);
  }
  const security = destinationTls(endpoint, values);
  const ram = parseSize("--ram", values.ram);
  if (ram % 4096 !== 0) throw new UsageError(`--ram ${values.ram} is not a multiple of 4 KiB`);
  const idleTimeoutMs = values["idle-timeout"] === undefined
    ? defaultIdleTimeoutMs(ram)
    : parseSeconds("--idle-timeout", values["idle-timeout"]);
  const headerTimeoutMs = values["header-timeout"] === undefined
    ? DEFAULT_HEADER_TIMEOUT_MS
    : parseSeconds("--header-timeout", values["header-timeout"]);
  const maxAttempts = values["max-attempts"] === undefined
    ? DEFAULT_MAX_ATTEMPTS
    : parseInteger("--max-attempts", values["max-attempts"], { min: 1 });
  const channels = values.channels === undefined
    ? 1
    : parseInteger("--channels", values.channels, { min: 1 });
  if (channels > MAX_CHANNELS) {
    throw new UsageError(`--channels ${channels}: at most ${MAX_CHANNELS} parallel channels`);
  }
  if (channels > 1 && endpoint.transport === "file") {
    throw new UsageError(`--channels ${channels}: a file: source is one stream`);
  }
  const guest = parseGuest(values.guest);
  checkKvmFlags(guest, values, ["run-after-ms", "kvm-device"]);
  const runAfterMs = values["run-after-ms"] === undefined
    ? 1000
    : parseInteger("--run-after-ms", values["run-after-ms"]);
  using reportFile = values.report === undefined
    ? undefined
    : ReportFile.open("--report", values.report);
  // Where /dev/kvm is missing or not permitted this fails first, in one line.
  using kvm = guest === "kvm" ? openKvm(values["kvm-device"]) : undefined;
  const progress = new Progress();
  // Pre-fault the RAM before the stream starts: first-touch faults would cap
  // the restore. More than the host can back fails here, in one line. A KVM
  // guest's RAM is memfd, mapped as its memory slots.
  using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(ram) }], {
    prefault: true,
    ...(kvm === undefined ? {} : { backing: "memfd" as const }),
  });
  if (security.warning) progress.done(security.warning);
  using destination = kvm === undefined ? undefined : kvmDestination(kvm, memory, progress);
  const listener = await openListener(endpoint, { tls: security.tls });
  // A signal removes the socket file before the process goes.
  using _closeOnSignal = onTerminate(() => listener.close());
  const stop = new AbortController();
  if (values["until-stdin-closes"]) void abortWhenStdinCloses(stop);
  progress.done(
    `listening on ${formatEndpoint(listener.endpoint)} (${
      formatBytes(ram)
    } of RAM; a source idle for ${idleTimeoutMs / 1000} s is dropped)`,
  );
  let report: ReceiveReport;
  try {
    const got = await receiveGuest({
      memory,
      from: listener,
      zeroed: true, // fresh memory, only ever written by this stream
      signal: stop.signal,
      idleTimeoutMs,
      headerTimeoutMs,
      maxAttempts,
      channels,
      onAccepted: (peer, identity) =>
        progress.update(
          `receiving${peer ? ` from ${peer}` : ""}${identity ? ` (${identity})` : ""}…`,
        ),
      onRejected: (peer, reason) => progress.done(`dropped ${peer}: ${reason}`),
      onIteration: (n) => progress.update(`receiving: iteration ${n} done`),
      devices: destination?.devices,
    });
    const s = got.summary;
    report = {
      result: "completed",
      peer: got.peer,
      peerIdentity: got.peerIdentity,
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
      `received and verified ${formatBytes(ram)}: ${s.iterations} iterations, ${
        formatBytes(s.bytes)
      } of stream in ${got.ms.toFixed(0)} ms; digest ${got.digest.slice(0, 16)}…`,
    );
    if (destination !== undefined) {
      listener.close();
      const g = report.guest = await destination.resume(got, runAfterMs);
      if (g.verdict !== "continued") {
        report.result = "failed";
        report.error = `The guest did not live through the migration: ${g.failures.join("; ")}`;
      }
      progress.done(guestSummary(g));
    }
  } catch (e) {
    const touched = e instanceof DestinationFailure && e.imageTouched;
    report = {
      result: "failed",
      error: e instanceof Error ? e.message : String(e),
      imageTouched: touched,
    };
    progress.done(
      `deno-vmm: ${report.error}${touched ? "; the partial image was discarded" : ""}`,
    );
  } finally {
    listener.close();
  }
  report.peakRssBytes = peakRssBytes();
  reportFile?.write(JSON.stringify(report, null, 2) + "\n");
  return report.result === "completed" ? 0 : 1;
}
