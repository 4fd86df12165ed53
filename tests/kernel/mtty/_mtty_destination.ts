// The destination of a two-process mtty migration, run as its own process
// (`deno run -A _mtty_destination.ts --socket PATH --source-id UUID --ram
// BYTES [--hold]`): it creates an mtty of its own, listens on the unix
// socket, and receives guest RAM and the source mtty's state with
// receiveGuest(), its VfioDeviceMigration taking the chunks in RESUMING as
// they arrive under the source device's id. Its stdout is JSON lines:
// `{"listening":PATH,"uuid":UUID}` once the socket is bound, with --hold
// `{"holding":BYTES}` when it keeps the first state chunk back (the switchover
// ack is then never sent; a line "release" on stdin lets it go on), and last
// `{"ok":true,...}` with the RAM digest and the port read back, or
// `{"ok":false,"error":...}` (exit code 1).
//
// The test side, startMttyDestination(), spawns it and reads those lines with
// bounded waits.
import { parseArgs } from "node:util";
import { GuestMemory } from "../../../memory/guest_memory.ts";
import type { DeviceRestorer } from "../../../migration/engine/device_migrator.ts";
import { receiveGuest } from "../../../migration/guest/destination.ts";
import { listenEndpoint } from "../../../migration/transport/open.ts";
import { guestAddress } from "../../../sys/address.ts";
import { deviceStateName, VfioDeviceMigration } from "../../../vfio/device_migration.ts";
import { createMtty, type MttyDevice, readPort } from "./_mtty.ts";

/** What the destination prints last. */
export type DestinationResult =
  | {
    readonly ok: true;
    /** The verified RAM digest (hex). */
    readonly digest: string;
    /** The destination mtty's state after the restore (`deviceStateName`). */
    readonly deviceState: string;
    /** The byte length of each state chunk loaded, in order. */
    readonly chunks: readonly number[];
    /** The destination port read back with readPort(). */
    readonly registers: readonly (readonly [string, number])[];
    readonly fifo: readonly number[];
  }
  | {
    readonly ok: false;
    readonly error: string;
    /** The destination mtty's state after the failure, when it could be read. */
    readonly deviceState?: string;
    readonly chunks: readonly number[];
  };

// The longest --hold waits for "release" before it gives up on its own.
const HOLD_BOUND_MS = 120_000;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      socket: { type: "string" },
      "source-id": { type: "string" },
      ram: { type: "string" },
      hold: { type: "boolean", default: false },
    },
    strict: true,
  });
  const socket = values.socket!;
  const sourceId = values["source-id"]!;
  const ram = Number(values.ram);
  const chunks: number[] = [];
  const print = (value: unknown) => console.log(JSON.stringify(value));
  let mtty: MttyDevice | undefined;
  let migration: VfioDeviceMigration | undefined;
  const stateName = () => {
    try {
      return migration === undefined ? undefined : deviceStateName(migration.deviceState);
    } catch (e) {
      return `unreadable: ${e}`;
    }
  };
  try {
    mtty = createMtty();
    const m = VfioDeviceMigration.probe(mtty.device);
    migration = m;
    if (!m.supported) throw new Error(`the destination mtty cannot migrate: ${m.reason}`);
    using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: BigInt(ram) }], {
      prefault: true,
    });
    const release = values.hold ? released() : undefined;
    let holding = false;
    const restorer: DeviceRestorer = {
      id: sourceId,
      loadState: (bytes) => {
        chunks.push(bytes.byteLength);
        return m.loadState(bytes);
      },
      beginResume: () => m.beginResume(),
      async loadChunk(bytes) {
        if (release !== undefined && !holding) {
          // The first chunk is the initial pre-copy data: held, the stream
          // stops here and the switchover ack is never sent.
          holding = true;
          print({ holding: bytes.byteLength });
          await release;
        }
        chunks.push(bytes.byteLength);
        m.loadChunk(bytes);
      },
      finishResume: () => m.finishResume(),
      abortResume: () => m.abortResume(),
    };
    const listener = listenEndpoint(`unix:${socket}`);
    print({ listening: socket, uuid: mtty.uuid });
    const got = await receiveGuest({ memory, from: listener, zeroed: true, devices: [restorer] });
    const deviceState = deviceStateName(m.deviceState);
    const port = readPort(mtty.port);
    print(
      {
        ok: true,
        digest: got.digest,
        deviceState,
        chunks,
        registers: port.registers,
        fifo: port.fifo,
      } satisfies DestinationResult,
    );
    return 0;
  } catch (e) {
    print(
      {
        ok: false,
        error: e instanceof Error ? e.message : String(e),
        deviceState: stateName(),
        chunks,
      } satisfies DestinationResult,
    );
    return 1;
  } finally {
    mtty?.[Symbol.dispose]();
  }
}

// Resolves on a line "release" on stdin; rejects when stdin ends first or
// after HOLD_BOUND_MS.
function released(): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "release" on stdin within ${HOLD_BOUND_MS / 1000} s`)),
      HOLD_BOUND_MS,
    );
    (async () => {
      let text = "";
      for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        if (text.split("\n").includes("release")) return resolve();
      }
      reject(new Error('stdin ended before "release"'));
    })().catch(reject).finally(() => clearTimeout(timer));
  });
}

if (import.meta.main) Deno.exit(await main());

/** A destination process, spawned by {@linkcode startMttyDestination}. */
export interface MttyDestination extends AsyncDisposable {
  /** Every stdout line so far. */
  readonly stdout: readonly string[];
  /** Every stderr line so far. */
  readonly stderr: readonly string[];
  /** The first stdout line that is JSON with `key`, within `ms`; fails naming the output. */
  line(key: string, ms: number): Promise<Record<string, unknown>>;
  /** Writes a line to its stdin. */
  send(line: string): Promise<void>;
  /** Its exit code and last line, within `ms`; fails naming the output. */
  exit(ms: number): Promise<{ code: number; result: DestinationResult }>;
  /** Its stdout and stderr, for failure messages. */
  output(): string;
}

/**
 * Spawns the destination (`Deno.execPath() run -A`), its stdio piped;
 * disposing kills it if it still runs and waits for it.
 */
export function startMttyDestination(
  options: { socket: string; sourceId: string; ram: number; hold?: boolean },
): MttyDestination {
  const args = [
    "run",
    "-A",
    "--cached-only",
    new URL("./_mtty_destination.ts", import.meta.url).pathname,
    "--socket",
    options.socket,
    "--source-id",
    options.sourceId,
    "--ram",
    String(options.ram),
    ...(options.hold ? ["--hold"] : []),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stdout: string[] = [];
  const stderr: string[] = [];
  let wake = () => {};
  const lines = async (stream: ReadableStream<Uint8Array>, into: string[]) => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      into.push(...parts);
      wake();
    }
    if (rest !== "") into.push(rest);
    wake();
  };
  const drained = Promise.all([lines(child.stdout, stdout), lines(child.stderr, stderr)]);
  const status = child.status;
  let exited = false;
  const ended = () => {
    exited = true;
    wake();
  };
  status.then(ended, ended);
  const stdin = child.stdin.getWriter();
  const output = () => `stdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`;
  const parsed = () =>
    stdout.flatMap((l) => {
      try {
        const v = JSON.parse(l);
        return typeof v === "object" && v !== null ? [v as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  // Resolves at the next output line or exit, or after `ms`.
  const next = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const deadline = async (ms: number, what: string) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        status.then(async (s) => {
          await drained;
          return s;
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`the destination ${what} within ${ms / 1000} s:\n${output()}`)),
            ms,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    stdout,
    stderr,
    output,
    async line(key, ms) {
      const end = performance.now() + ms;
      for (;;) {
        const found = parsed().find((v) => key in v);
        if (found !== undefined) return found;
        if (exited) {
          await drained;
          const late = parsed().find((v) => key in v);
          if (late !== undefined) return late;
          throw new Error(`the destination exited before a "${key}" line:\n${output()}`);
        }
        const left = end - performance.now();
        if (left <= 0) {
          throw new Error(
            `the destination printed no "${key}" line within ${ms / 1000} s:\n${output()}`,
          );
        }
        await next(left);
      }
    },
    async send(line) {
      await stdin.write(new TextEncoder().encode(`${line}\n`));
    },
    async exit(ms) {
      const s = await deadline(ms, "did not exit");
      const last = parsed().filter((v) => "ok" in v).at(-1);
      if (last === undefined) {
        throw new Error(`the destination (exit ${s.code}) printed no result line:\n${output()}`);
      }
      return { code: s.code, result: last as unknown as DestinationResult };
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // It has exited.
      }
      await status;
      await stdin.close().catch(() => {});
      await drained;
    },
  };
}
