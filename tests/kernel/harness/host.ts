/**
 * Runs the kernel tests directly on this host, for a host with a real VFIO
 * group.
 *
 * @module
 */

import type { Progress } from "./exec.ts";
import { OutputWatcher } from "./output.ts";

/** How a run on this host ended. */
export interface HostResult {
  /** `deno test`'s exit code; undefined when it was killed at the deadline. */
  status: number | undefined;
  /** The watcher that saw stdout (summary, tail). */
  output: OutputWatcher;
}

/**
 * Runs `deno test --allow-all` on the files with `DENO_VMM_VFIO_GROUP` set,
 * streaming its stdout, within a deadline.
 *
 * @param options Project root, group, files, extra flags, deadline, log file.
 * @returns The exit code and what was seen.
 */
export async function runOnHost(options: {
  project: string;
  group: string;
  files: string[];
  denoFlags: string[];
  timeoutMs: number;
  log?: Deno.FsFile;
  progress: Progress;
  onKill?: (kill: () => void) => void;
}): Promise<HostResult> {
  options.progress.step(`running tests on this host (IOMMU group ${options.group})`);
  const output = new OutputWatcher({ log: options.log });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", ...options.denoFlags, ...options.files],
    cwd: options.project,
    env: { DENO_VMM_VFIO_GROUP: options.group },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let done = false;
  function kill(): void {
    if (done) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  options.onKill?.(kill);
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs);
  try {
    for await (const chunk of child.stdout) output.feed(chunk);
    output.end();
    const status = await child.status;
    done = true;
    return { status: timedOut ? undefined : status.code, output };
  } finally {
    clearTimeout(deadline);
    kill();
  }
}
