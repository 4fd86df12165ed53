/**
 * Cleanup on SIGINT, SIGTERM and SIGHUP: a subcommand registers what must not
 * outlive it (a socket file, child processes, a temp directory), and a
 * signal runs those steps before the process exits with 128 + the signal's
 * number, as a shell reports it.
 *
 * @module
 */

const SIGNALS = [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const;
const cleanups: (() => void | Promise<void>)[] = [];
let installed = false;
let exiting = false;

async function terminate(name: string, code: number): Promise<void> {
  if (exiting) Deno.exit(code); // a second signal: stop at once
  exiting = true;
  console.error(`deno-vmm: stopped by ${name}`);
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch (e) {
      console.error(`deno-vmm: cleanup after ${name} failed: ${(e as Error).message}`);
    }
  }
  Deno.exit(128 + code);
}

/**
 * Runs `cleanup` if the process is told to stop by a signal.
 *
 * @param cleanup What to undo; steps run newest first, each awaited.
 * @returns A disposable that drops the step (once the normal path has done it).
 *
 * @example
 * ```ts ignore
 * using _guard = onTerminate(() => listener.close());
 * ```
 */
export function onTerminate(cleanup: () => void | Promise<void>): Disposable {
  if (!installed) {
    installed = true;
    for (const [name, n] of SIGNALS) Deno.addSignalListener(name, () => void terminate(name, n));
  }
  cleanups.push(cleanup);
  return {
    [Symbol.dispose]() {
      const i = cleanups.indexOf(cleanup);
      if (i >= 0) cleanups.splice(i, 1);
    },
  };
}

/**
 * Aborts `stop` when stdin reaches its end: a parent that started this
 * process with a pipe on stdin (as `demo` does) is gone once its end of the
 * pipe closes, even if it was killed with SIGKILL.
 *
 * @param stop The controller to abort.
 * @returns Once stdin has ended and `stop` is aborted.
 *
 * @example
 * ```ts ignore
 * const stop = new AbortController();
 * void abortWhenStdinCloses(stop);
 * ```
 */
export async function abortWhenStdinCloses(stop: AbortController): Promise<void> {
  const buf = new Uint8Array(256);
  try {
    while ((await Deno.stdin.read(buf)) !== null) { /* discard */ }
  } catch {
    // A closed or unreadable stdin ends the wait too.
  }
  stop.abort(
    new Deno.errors.Interrupted("stdin closed: the process that started this one is gone"),
  );
}
