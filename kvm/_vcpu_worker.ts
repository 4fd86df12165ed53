// The vCPU thread: a Worker that dlopens libc for itself and loops on KVM_RUN.
// Exits go to the VMM as messages while this thread waits on the control
// block; pause and stop arrive as a command plus immediate_exit and a kick
// signal, so KVM_RUN returns EINTR even when the guest never exits.

import { EINTR } from "../sys/errno.ts";
import { errno, libc } from "../sys/_libc.ts";
import { hostView } from "../sys/host_memory.ts";
import {
  CMD_PAUSE,
  CMD_STOP,
  CTRL_CMD,
  CTRL_DONE_SEQ,
  CTRL_EINTRS,
  CTRL_EXIT_SEQ,
  CTRL_PARKED_GEN,
  CTRL_PAUSE_GEN,
  CTRL_RUNS,
  CTRL_STATE,
  CTRL_TID,
  STATE_FAILED,
  STATE_IN_EXIT,
  STATE_PAUSED,
  STATE_RUNNING,
  STATE_STOPPED,
  type VcpuThreadInit,
  type VcpuThreadMessage,
} from "./_control.ts";
import { blockOnThisThread, currentTid, takePending } from "./_signals.ts";

const worker = globalThis as unknown as {
  postMessage(message: VcpuThreadMessage): void;
  onmessage: ((e: MessageEvent<VcpuThreadInit>) => void) | null;
};

const IMMEDIATE_EXIT = 1;

/** Parks until the command is no longer PAUSE; returns the command then. */
function park(ctrl: Int32Array): number {
  Atomics.store(ctrl, CTRL_STATE, STATE_PAUSED);
  Atomics.notify(ctrl, CTRL_STATE);
  for (;;) {
    const gen = Atomics.load(ctrl, CTRL_PAUSE_GEN);
    Atomics.store(ctrl, CTRL_PARKED_GEN, gen);
    worker.postMessage({ type: "paused", gen });
    let cmd: number;
    while ((cmd = Atomics.load(ctrl, CTRL_CMD)) === CMD_PAUSE) {
      if (Atomics.load(ctrl, CTRL_PAUSE_GEN) !== gen) break;
      Atomics.wait(ctrl, CTRL_CMD, CMD_PAUSE);
    }
    if (cmd !== CMD_PAUSE) return cmd;
  }
}

function loop(init: VcpuThreadInit): void {
  const lib = libc();
  const ctrl = new Int32Array(init.control);
  blockOnThisThread(init.kickSignal);
  const tid = currentTid();
  Atomics.store(ctrl, CTRL_TID, tid);
  Atomics.store(ctrl, CTRL_STATE, STATE_RUNNING);
  worker.postMessage({ type: "started", tid });
  // SAFETY: the VMM keeps the kvm_run mapping until this thread reports "stopped".
  const run = hostView(init.runAddress, 4096);
  for (;;) {
    const rc = lib.ioctlVal(init.fd, init.runRequest, 0n);
    Atomics.add(ctrl, CTRL_RUNS, 1);
    if (rc < 0) {
      const e = errno();
      if (e !== EINTR) {
        fail(ctrl, { type: "failed", syscall: "KVM_RUN", errno: e });
        return;
      }
      Atomics.add(ctrl, CTRL_EINTRS, 1);
      Atomics.store(run, IMMEDIATE_EXIT, 0);
      takePending(init.kickSignal);
      let cmd = Atomics.load(ctrl, CTRL_CMD);
      if (cmd === CMD_PAUSE) cmd = park(ctrl);
      if (cmd === CMD_STOP) break;
      Atomics.store(ctrl, CTRL_STATE, STATE_RUNNING);
      continue;
    }
    const seq = Atomics.add(ctrl, CTRL_EXIT_SEQ, 1) + 1;
    Atomics.store(ctrl, CTRL_STATE, STATE_IN_EXIT);
    worker.postMessage({ type: "exit", seq });
    let done: number;
    while ((done = Atomics.load(ctrl, CTRL_DONE_SEQ)) !== seq) {
      Atomics.wait(ctrl, CTRL_DONE_SEQ, done);
    }
    if (Atomics.load(ctrl, CTRL_CMD) === CMD_STOP) break;
    Atomics.store(ctrl, CTRL_STATE, STATE_RUNNING);
  }
  Atomics.store(ctrl, CTRL_STATE, STATE_STOPPED);
  Atomics.notify(ctrl, CTRL_STATE);
  worker.postMessage({ type: "stopped" });
}

function fail(ctrl: Int32Array, message: VcpuThreadMessage): void {
  Atomics.store(ctrl, CTRL_STATE, STATE_FAILED);
  Atomics.notify(ctrl, CTRL_STATE);
  worker.postMessage(message);
}

worker.onmessage = (e) => {
  worker.onmessage = null;
  try {
    loop(e.data);
  } catch (err) {
    const x = err as { syscall?: string; errno?: number; message?: string };
    fail(new Int32Array(e.data.control), {
      type: "failed",
      syscall: x.syscall ?? "vCPU thread",
      errno: x.errno ?? 0,
      message: x.message ?? String(err),
    });
  }
};
