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
