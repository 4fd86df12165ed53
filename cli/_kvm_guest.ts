// What `migrate --guest kvm` and `receive --guest kvm` share: opening KVM
// with a one-line error, the test guest's view at the stop point as a small
// device state (so the destination compares its counters with the source's),
// the report sections, and the guest's serial lines on stderr.

import { Kvm } from "../kvm/kvm.ts";
import type { GuestMailbox, GuestProgram } from "../kvm/guest/program.ts";
import type { DeviceMigrator } from "../migration/engine/device_migrator.ts";
import { escapeControl, peerText } from "../migration/stream/peer_text.ts";
import { UsageError } from "./describe_error.ts";
import { parseChoice } from "./parse.ts";
import type { Progress } from "./progress.ts";

/** The device id of the test guest's view at the stop point: `kvm-test-guest`. */
export const TEST_GUEST_DEVICE_ID = "kvm-test-guest";

/** The test guest's mailbox at one moment, as the reports give it (u64s as decimal strings). */
export interface GuestCounters {
  /** Writes since boot. */
  counter: string;
  /** The guest's running checksum of every value written. */
  checksum: string;
  /** Its sum of word 0 of every data page. */
  pageSum: string;
  /** Heartbeat lines printed. */
  heartbeats: string;
  /** Times its entry point ran (1: it never booted again). */
  boots: string;
}

/** What the source saw when it stopped the guest (the `kvm-test-guest` state). */
export interface SourceGuestView extends GuestCounters {
  /** The guest's seed. */
  seed: number;
  /** Data pages its workload writes. */
  dataPages: number;
  /** The heartbeat period it was told, ms (0: none). */
  heartbeatMs: number;
  /** Whether its checksum was the one its counter implies. */
  checksumOk: boolean;
  /** The last heartbeat line before the stop. */
  lastHeartbeat?: string;
}

/** The `guest` section of `migrate --guest kvm --report`. */
export interface SourceGuestReport {
  /** `kvm`. */
  kind: "kvm";
  /** How pre-copy learnt the dirty pages. */
  dirtyLog: "bitmap" | "ring";
  /** The guest at the stop point (absent when the migration failed before it). */
  atStop?: SourceGuestView;
  /** The guest when the source let it go (running on after a failure, or paused). */
  atEnd: GuestCounters;
  /** Auto-converge's throttle, as it ran. */
  throttle: { percent: number; periods: number; sleptMs: number };
  /** Heartbeat lines the source printed. */
  heartbeatLines: number;
}

/** The `guest` section of `receive --guest kvm --report`. */
export interface DestinationGuestReport {
  /** `kvm`. */
  kind: "kvm";
  /** What the source saw at its stop point, from the stream. */
  source?: SourceGuestView;
  /** The guest as restored, before its vCPUs ran here. */
  atRestore?: GuestCounters;
  /** After `--run-after-ms` and a bounded run and VERIFY. */
  after?: GuestCounters & { verifySum: string };
  /** How long the guest ran here, ms. */
  ranMs?: number;
  /** Heartbeat lines seen here. */
  heartbeats: string[];
  /** `continued` when every check held, else `failed` with the checks that did not. */
  verdict: "continued" | "failed";
  /** The checks that failed. */
  failures: string[];
}

/** Parses `--guest`: the Worker (default) or the KVM test guest. */
export function parseGuest(text: string | undefined): "worker" | "kvm" {
  return text === undefined ? "worker" : parseChoice("--guest", text, ["worker", "kvm"] as const);
}

/** Parses `--kvm-dirty`: KVM's dirty bitmap (default) or its dirty ring. */
export function parseKvmDirty(text: string | undefined): "bitmap" | "ring" {
  return text === undefined
    ? "bitmap"
    : parseChoice("--kvm-dirty", text, ["bitmap", "ring"] as const);
}

/** Refuses the KVM-only flags without `--guest kvm`. */
export function checkKvmFlags(
  guest: "worker" | "kvm",
  values: Record<string, unknown>,
  flags: readonly string[],
): void {
  if (guest === "kvm") return;
  const given = flags.find((f) => values[f] !== undefined);
  if (given !== undefined) throw new UsageError(`--${given} needs --guest kvm`);
}

/**
 * Opens KVM. Where the device is missing or not permitted, `Kvm.open()`'s
 * `KvmUnavailableError` names it and what to grant in one line (the CLI
 * prints it and exits 1).
 */
export function openKvm(path: string | undefined): Kvm {
  return Kvm.open(path === undefined ? {} : { path });
}

/** The mailbox as the reports give it. */
export function countersOf(mb: GuestMailbox): GuestCounters {
  return {
    counter: String(mb.counter),
    checksum: String(mb.checksum),
    pageSum: String(mb.pageSum),
    heartbeats: String(mb.heartbeats),
    boots: String(mb.boots),
  };
}

/**
 * The test guest's view at the stop point as device state: the source saves
 * its mailbox (the vCPUs are paused then) as JSON; the destination reads it
 * back to check that its guest continues from the source's last values.
 */
export class TestGuestDevice implements DeviceMigrator {
  readonly id = TEST_GUEST_DEVICE_ID;
  readonly supported = true;
  #guest?: GuestProgram;
  #heartbeatMs: number;
  #lastHeartbeat?: () => string | undefined;
  view?: SourceGuestView;

  constructor(
    guest?: GuestProgram,
    options: { heartbeatMs?: number; lastHeartbeat?: () => string | undefined } = {},
  ) {
    this.#guest = guest;
    this.#heartbeatMs = options.heartbeatMs ?? 0;
    this.#lastHeartbeat = options.lastHeartbeat;
  }

  saveState(): Promise<Uint8Array> {
    const g = this.#guest;
    if (g === undefined) return Promise.reject(new TypeError("No test guest to save"));
    const mb = g.mailbox();
    this.view = {
      seed: g.seed,
      dataPages: g.dataPages,
      heartbeatMs: this.#heartbeatMs,
      ...countersOf(mb),
      checksumOk: mb.checksum === g.expectedChecksum(mb.counter),
      lastHeartbeat: this.#lastHeartbeat?.(),
    };
    return Promise.resolve(new TextEncoder().encode(JSON.stringify(this.view)));
  }

  loadState(bytes: Uint8Array): Promise<void> {
    try {
      const v = JSON.parse(new TextDecoder().decode(bytes)) as SourceGuestView;
      const decimal = (x: unknown) => typeof x === "string" && /^\d{1,20}$/.test(x);
      const ok = typeof v === "object" && v !== null && Number.isInteger(v.seed) &&
        Number.isInteger(v.dataPages) && Number.isInteger(v.heartbeatMs) &&
        ["counter", "checksum", "pageSum", "heartbeats", "boots"].every((k) =>
          decimal((v as unknown as Record<string, unknown>)[k])
        );
      if (!ok) throw new TypeError("fields missing or mistyped");
      if (v.lastHeartbeat !== undefined) v.lastHeartbeat = peerText(String(v.lastHeartbeat));
      this.view = v;
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(
        new TypeError(
          `Cannot read the test guest's state from the source: ${(e as Error).message}`,
        ),
      );
    }
  }

  resumeRunning(): void {}
}

/** Prints a guest serial line on stderr, escaped (it is the guest's text). */
export function guestLine(progress: Progress, line: string): void {
  progress.done(`guest: ${escapeControl(line)}`);
}

/** The heartbeat number and counter of a heartbeat line, if it is one. */
export function parseHeartbeat(line: string): { n: bigint; counter: bigint } | undefined {
  const m = /^heartbeat (\d+) counter=(\d+)$/.exec(line);
  return m === null ? undefined : { n: BigInt(m[1]), counter: BigInt(m[2]) };
}

/** `promise`, or a `Deno.errors.TimedOut` naming `what` after `ms`. */
export async function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Deno.errors.TimedOut(`${what} did not happen within ${ms / 1000} s`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every 10 ms until it holds; fails naming `what` after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) {
      throw new Deno.errors.TimedOut(`${what} did not happen within ${ms / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
