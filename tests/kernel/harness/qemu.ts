/**
 * Boots the test guest under QEMU (TCG, emulated VT-d, the edu device), streams
 * its serial console, and waits for its exit marker within a deadline.
 *
 * @module
 */

import { HarnessError, type Progress } from "./exec.ts";
import type { Kernel } from "./kernel.ts";
import type { FileTally } from "./file_tally.ts";
import { OutputWatcher } from "./output.ts";

/** How a guest run ended. */
export interface GuestResult {
  /** The job's exit status from the guest's marker; undefined when none came. */
  status: number | undefined;
  /** Why there is no status, as one line. */
  reason?: string;
  /** The watcher that saw the console (summary, tail). */
  output: OutputWatcher;
  /** What QEMU wrote on stderr, last lines. */
  qemuStderr: string[];
  /** The file the guest stopped answering in, when `stallMs` ended the boot. */
  stalled?: string;
}

/** Options for {@linkcode runGuest}. */
export interface GuestOptions {
  /** The kernel to boot. */
  kernel: Kernel;
  /** The initramfs image. */
  initramfs: string;
  /** The host dir shared read-write as `work`, holding `job.sh`. */
  jobDir: string;
  /** The deadline for the whole boot-test-poweroff, in milliseconds. */
  timeoutMs: number;
  /** A file that gets the raw serial log. */
  log?: Deno.FsFile;
  /** Phase printer. */
  progress: Progress;
  /** Called with a function that kills QEMU, for signal handlers. */
  onKill?: (kill: () => void) => void;
  /** The machine: emulated VT-d and edu (both default true), extra kernel arguments. */
  machine?: MachineOptions;
  /** Gets every console line, to add up the job's per-file runs. */
  tally?: FileTally;
  /**
   * With `tally`: a file running this long without its end marker means the
   * guest stopped answering (its own per-file bound did not fire): QEMU is
   * killed and the result names the file in `stalled`.
   */
  stallMs?: number;
}

/** What the guest machine has besides the 9p shares. */
export interface MachineOptions {
  /** `-device intel-iommu,intremap=on,caching-mode=on` and `intel_iommu=on` (default true). */
  viommu?: boolean;
  /** QEMU's edu device, bound to vfio-pci by `/init` (default true). */
  edu?: boolean;
  /** Extra kernel command-line words. */
  append?: readonly string[];
}

/**
 * The QEMU command line of real-vfio-in-qemu.md.
 *
 * @param options Kernel, initramfs, job dir, nonce and guest watchdog seconds.
 * @returns argv without the program.
 */
export function qemuArgs(options: {
  kernel: Kernel;
  initramfs: string;
  jobDir: string;
  nonce: string;
  watchdogSeconds: number;
  machine?: MachineOptions;
}): string[] {
  const viommu = options.machine?.viommu ?? true;
  const edu = options.machine?.edu ?? true;
  const append = [
    "console=ttyS0",
    ...(viommu ? ["intel_iommu=on"] : []),
    ...(edu ? [] : ["deno_vmm_edu=0"]),
    ...(options.machine?.append ?? []),
    "loglevel=4",
    "panic=-1",
    "edd=off",
    `deno_vmm_nonce=${options.nonce}`,
    `deno_vmm_watchdog=${options.watchdogSeconds}`,
  ].join(" ");
  return [
    ...["-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max"],
    ...["-smp", "2", "-m", "2G"],
    ...(viommu ? ["-device", "intel-iommu,intremap=on,caching-mode=on"] : []),
    ...(edu ? ["-device", "edu"] : []),
    ...["-kernel", options.kernel.vmlinuz, "-initrd", options.initramfs, "-append", append],
    ...["-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"],
    ...["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"],
    ...["-fsdev", `local,id=work,path=${options.jobDir},security_model=none,multidevs=remap`],
    ...["-device", "virtio-9p-pci,fsdev=work,mount_tag=work"],
    ...["-nographic", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nic", "none"],
  ];
}

const STARTED = /deno-vmm guest: (?:IOMMU group (\d+) holds edu (\S+)|no edu device)/;

async function pump(
  stream: ReadableStream<Uint8Array>,
  each: (chunk: Uint8Array) => void,
): Promise<void> {
  for await (const chunk of stream) each(chunk);
}

/**
 * Boots the guest and waits until it powers off, reports its marker, or the
 * deadline passes. QEMU is always dead when this returns.
 *
 * @param options Kernel, initramfs, job dir, deadline.
 * @returns The guest's status, or why there is none.
 * @throws {HarnessError} When QEMU cannot be started.
 */
export async function runGuest(options: GuestOptions): Promise<GuestResult> {
  const { progress } = options;
  const nonce = crypto.randomUUID().replaceAll("-", "");
  const timeoutSeconds = Math.ceil(options.timeoutMs / 1000);
  const args = qemuArgs({ ...options, nonce, watchdogSeconds: timeoutSeconds + 60 });

  let testsStarted = false;
  const output = new OutputWatcher({
    nonce,
    log: options.log,
    onLine(line) {
      options.tally?.line(line);
      const started = STARTED.exec(line);
      if (!testsStarted && started) {
        testsStarted = true;
        progress.step(
          started[1] === undefined
            ? "running tests (no edu device)"
            : `running tests (IOMMU group ${started[1]}, edu ${started[2]})`,
        );
      }
      if (output.guestStatus !== undefined) afterMarker();
    },
  });

  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("qemu-system-x86_64", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new HarnessError(`Cannot start qemu-system-x86_64: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let exited = false;
  function kill(): void {
    if (exited) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  options.onKill?.(kill);

  let reason: string | undefined;
  const deadline = setTimeout(() => {
    reason = `the guest did not finish within ${timeoutSeconds} s`;
    kill();
  }, options.timeoutMs);
  let stalled: string | undefined;
  const stallMs = options.stallMs;
  const watchdog = options.tally === undefined || stallMs === undefined
    ? undefined
    : setInterval(() => {
      const running = options.tally!.running;
      if (running === undefined || performance.now() - running.sinceMs < stallMs) return;
      stalled = running.file;
      reason = `the guest stopped answering in ${running.file}: no end ${
        Math.round(stallMs / 1000)
      } s after it began, though the guest bounds each file (a guest kernel lockup)`;
      kill();
    }, 1000);
  let grace: ReturnType<typeof setTimeout> | undefined;
  function afterMarker(): void {
    // The guest powers off right after the marker; do not wait long for it.
    grace ??= setTimeout(kill, 15_000);
  }

  const qemuStderr: string[] = [];
  const stderrDecoder = new TextDecoder();
  try {
    await Promise.all([
      pump(child.stdout, (chunk) => output.feed(chunk)),
      pump(child.stderr, (chunk) => {
        const text = stderrDecoder.decode(chunk, { stream: true });
        Deno.stderr.writeSync(new TextEncoder().encode(text));
        qemuStderr.push(...text.split("\n").filter((l) => l.trim() !== ""));
        qemuStderr.splice(0, Math.max(0, qemuStderr.length - 20));
      }),
    ]);
    output.end();
    const status = await child.status;
    exited = true;
    if (output.guestStatus === undefined && reason === undefined) {
      reason = status.signal
        ? `QEMU was killed by ${status.signal} before the guest reported`
        : `QEMU exited with code ${status.code} before the guest reported`;
    }
  } finally {
    clearTimeout(deadline);
    clearTimeout(grace);
    clearInterval(watchdog);
    kill();
  }
  return { status: output.guestStatus, reason, output, qemuStderr, stalled };
}
