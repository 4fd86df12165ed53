/**
 * Bounded external commands for the kernel test harness.
 *
 * Every command runs with a deadline; a command that is missing, times out or
 * fails becomes a {@linkcode HarnessError} with a one-line message.
 *
 * @module
 */

/** A failure the harness reports as one line, without a stack trace. */
export class HarnessError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed, as one line.
   * @param options The lower error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HarnessError";
  }
}

/** Options for {@linkcode exec}. */
export interface ExecOptions {
  /** Deadline in milliseconds. */
  timeoutMs: number;
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Bytes written to the command's stdin. */
  stdin?: Uint8Array;
  /** Leave stdout and stderr attached to the terminal instead of capturing them. */
  inherit?: boolean;
  /** Return a failed status instead of throwing. */
  allowFailure?: boolean;
}

/** What a finished command produced. */
export interface ExecResult {
  /** The exit code (128 + signal when killed). */
  code: number;
  /** Captured stdout (empty when inherited). */
  stdout: Uint8Array;
  /** Captured stderr as text (empty when inherited). */
  stderr: string;
}

const decoder = new TextDecoder();

/**
 * Runs a command to completion within a deadline.
 *
 * @param argv The program and its arguments.
 * @param options Deadline, cwd, env and stdin.
 * @returns The exit code and the captured output.
 * @throws {HarnessError} When the program is missing, times out, or exits
 * non-zero (unless `allowFailure`).
 */
export async function exec(argv: string[], options: ExecOptions): Promise<ExecResult> {
  const [program, ...args] = argv;
  const signal = AbortSignal.timeout(options.timeoutMs);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin ? "piped" : "null",
      stdout: options.inherit ? "inherit" : "piped",
      stderr: options.inherit ? "inherit" : "piped",
      signal,
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new HarnessError(`Cannot run ${program}: not found on PATH`, { cause: err });
    }
    throw err;
  }
  // Feed stdin while the output is being read, so neither pipe can fill up and stall.
  const feeding = options.stdin ? feed(child.stdin, options.stdin) : Promise.resolve();
  let out: { code: number; stdout: Uint8Array; stderr: Uint8Array };
  if (options.inherit) {
    const status = await child.status;
    out = { code: status.code, stdout: new Uint8Array(), stderr: new Uint8Array() };
  } else {
    out = await child.output();
  }
  await feeding;
  const stderr = decoder.decode(out.stderr).trim();
  if (signal.aborted) {
    throw new HarnessError(
      `Cannot run ${argv.join(" ")}: timed out after ${Math.round(options.timeoutMs / 1000)} s`,
    );
  }
  if (out.code !== 0 && !options.allowFailure) {
    const tail = stderr.split("\n").filter((l) => l.trim() !== "").slice(-3).join(" | ");
    throw new HarnessError(
      `Cannot run ${argv.join(" ")}: exit ${out.code}${tail ? `: ${tail}` : ""}`,
    );
  }
  return { code: out.code, stdout: out.stdout, stderr };
}

async function feed(stdin: WritableStream<Uint8Array>, bytes: Uint8Array): Promise<void> {
  const writer = stdin.getWriter();
  await writer.write(bytes).catch(() => {});
  await writer.close().catch(() => {});
}

/**
 * Runs a command and returns its stdout as text.
 *
 * @param argv The program and its arguments.
 * @param options Deadline, cwd, env and stdin.
 * @returns The trimmed stdout.
 * @throws {HarnessError} As {@linkcode exec}.
 */
export async function execText(argv: string[], options: ExecOptions): Promise<string> {
  return decoder.decode((await exec(argv, options)).stdout).trim();
}

/**
 * Tells whether a program is on PATH.
 *
 * @param program The program name.
 * @returns Its absolute path, or undefined.
 */
export function which(program: string): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  for (const dir of [...dirs, "/usr/sbin", "/sbin"]) {
    const path = `${dir}/${program}`;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Prints phase lines on stderr with the seconds elapsed since the harness started. */
export class Progress {
  #start = performance.now();
  #label: string;

  /**
   * @param label What each line is tagged with.
   */
  constructor(label = "kernel-tests") {
    this.#label = label;
  }

  /**
   * Prints one phase line.
   *
   * @param message What the harness is doing.
   */
  step(message: string): void {
    console.error(`[${this.#label} ${this.elapsed().toFixed(1).padStart(5)} s] ${message}`);
  }

  /**
   * Seconds since the harness started.
   *
   * @returns Elapsed seconds.
   */
  elapsed(): number {
    return (performance.now() - this.#start) / 1000;
  }
}

/**
 * Whether a path exists (follows symlinks).
 *
 * @param path The path.
 * @returns `true` when `stat` succeeds.
 */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `body` holding an exclusive lock on `<dir>/.lock` (created, with
 * `dir`), so two harness runs never build into the same cache dir at once;
 * the other waits.
 *
 * @param dir The cache dir.
 * @param body The work done under the lock.
 * @returns What `body` returns.
 */
export async function withDirLock<T>(dir: string, body: () => Promise<T>): Promise<T> {
  await Deno.mkdir(dir, { recursive: true });
  using file = await Deno.open(`${dir}/.lock`, { create: true, write: true });
  await file.lock(true);
  try {
    return await body();
  } finally {
    await file.unlock();
  }
}
