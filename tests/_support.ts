// Shared test helpers: bounded waits, descriptor accounting, and `mod.ts`
// subcommands run as child processes with their stderr read line by line.

import assert from "node:assert/strict";

export const MOD = new URL("../mod.ts", import.meta.url).pathname;
export const PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
];

/** `promise`, or `"timeout"` if it has not settled after `ms` (its rejection is passed on). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` until it holds or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

/**
 * What this process's descriptors point at (libc ones too, which the resource
 * sanitizer cannot see), leaving out the eventfd/epoll pair a terminated
 * Worker's runtime keeps until Deno reaps it.
 */
export function openFds(): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
    } catch {
      continue; // the descriptor readDirSync itself used
    }
    if (target === "anon_inode:[eventfd]" || target === "anon_inode:[eventpoll]") continue;
    out.push(`${e.name} -> ${target}`);
  }
  return out.sort();
}

/** A `mod.ts` subcommand running as a child process. */
export interface Cli extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Its stderr so far, line by line. */
  readonly stderr: string[];
  /** Its stdout, once it has exited. */
  readonly stdout: Promise<string>;
  /** Waits (at most `ms`) for a line of stdout or stderr matching `pattern`; fails the test otherwise. */
  line(pattern: RegExp, ms?: number): Promise<RegExpExecArray>;
  /** Waits (at most `ms`) for the exit; fails the test otherwise. */
  exit(ms?: number): Promise<Deno.CommandStatus>;
}

/**
 * Starts `deno run mod.ts ...args`. Disposing kills it if it still runs.
 *
 * @param args The subcommand and its flags.
 * @param options `stdin` (default `"null"`), `env`.
 */
export function startCli(
  args: string[],
  options: { stdin?: "null" | "piped"; env?: Record<string, string> } = {},
): Cli {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, MOD, ...args],
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
  }).spawn();
  const stderr: string[] = [];
  const seen: string[] = [];
  const waiters: { pattern: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];
  const offer = (l: string) => {
    seen.push(l);
    for (const w of [...waiters]) {
      const m = w.pattern.exec(l);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  const read = async (stream: ReadableStream<Uint8Array>, into?: string[]) => {
    let rest = "";
    let all = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      all += chunk;
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const l of lines) {
        into?.push(l);
        offer(l);
      }
    }
    if (rest) {
      into?.push(rest);
      offer(rest);
    }
    return all;
  };
  const stdout = read(child.stdout);
  const drained = read(child.stderr, stderr);
  const status = child.status;
  const cli: Cli = {
    child,
    stderr,
    stdout,
    async line(pattern, ms = 30_000) {
      const early = seen.map((l) => pattern.exec(l)).find((m) => m !== null);
      if (early) return early;
      const found = new Promise<RegExpExecArray>((resolve) => waiters.push({ pattern, resolve }));
      const got = await within(
        Promise.race([found, status.then((s) => ({ exited: s.code }))]),
        ms,
      );
      if (got === "timeout" || "exited" in got) {
        // The line may have come with the last output before the exit.
        if (got !== "timeout") await Promise.all([drained, stdout]);
        const late = seen.map((l) => pattern.exec(l)).find((m) => m !== null);
        if (late) return late;
        return assert.fail(
          `${args[0]}: no line ${pattern} ${
            got === "timeout" ? `within ${ms} ms` : `before it exited (${got.exited})`
          }:\n${seen.join("\n")}`,
        );
      }
      return got;
    },
    async exit(ms = 60_000) {
      const got = await within(status, ms);
      if (got === "timeout") {
        return assert.fail(`${args[0]} did not exit within ${ms} ms:\n${stderr.join("\n")}`);
      }
      await drained;
      await stdout;
      return got;
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await status;
      await drained;
      await stdout;
    },
  };
  return cli;
}

/** The control characters (C0 but newline, DEL, C1, bidi overrides) in `text`, as code points. */
export function controlCharacters(text: string, options: { newline?: boolean } = {}): number[] {
  const out: number[] = [];
  for (const c of text) {
    const n = c.codePointAt(0)!;
    if (n === 10 && !options.newline) continue;
    if (n < 0x20 || (n >= 0x7f && n <= 0x9f) || (n >= 0x202a && n <= 0x202e)) out.push(n);
  }
  return out;
}
