// Where KVM_RUN is called: on a Worker thread of its own (libc), or inline on
// the VMM's thread between event-loop turns (a custom syscall boundary, such as
// the fake KVM). Both speak the same control block and report the same events.

import { EINTR } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
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
  STATE_FAILED,
  STATE_IN_EXIT,
  STATE_PAUSED,
  STATE_RUNNING,
  STATE_STOPPED,
  type VcpuThreadMessage,
} from "./_control.ts";
import { kickThread } from "./_signals.ts";
import type { KvmSyscalls } from "./syscalls.ts";
import { KVM_RUN } from "./uapi/ioctls.ts";
import { RUN_IMMEDIATE_EXIT } from "./uapi/run.ts";

/** What the runner calls back into (on the VMM's thread). */
export interface RunnerHost {
  /** Decodes and handles the exit in `kvm_run`; may set the command. Never throws. */
  handleExit(): void;
  /** A thread event: started, paused, stopped, failed. */
  threadEvent(message: VcpuThreadMessage): void;
}

/** A vCPU thread. */
export interface VcpuRunner {
  /** Starts running the vCPU. */
  start(): void;
  /** Interrupts `KVM_RUN` (after the command and `immediate_exit` are set). */
  kick(): void;
  /** Wakes a parked thread after the command changed. */
  wake(): void;
  /** Ends the thread; only once it stopped (or it never will). */
  dispose(): void;
}

/** The Worker thread. */
export class WorkerRunner implements VcpuRunner {
  #worker?: Worker;
  #init: {
    fd: number;
    runAddress: bigint;
    control: SharedArrayBuffer;
    kickSignal: number;
  };
  #ctrl: Int32Array;
  #host: RunnerHost;
  #tid = 0;
  #kickPending = false;

  constructor(
    init: { fd: number; runAddress: bigint; control: SharedArrayBuffer; kickSignal: number },
    host: RunnerHost,
  ) {
    this.#init = init;
    this.#ctrl = new Int32Array(init.control);
    this.#host = host;
  }

  start(): void {
    const worker = new Worker(new URL("./_vcpu_worker.ts", import.meta.url), { type: "module" });
    this.#worker = worker;
    worker.onmessage = (e: MessageEvent<VcpuThreadMessage>) => this.#onMessage(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      this.#host.threadEvent({
        type: "failed",
        syscall: "vCPU thread",
        errno: 0,
        message: e.message,
      });
    };
    worker.postMessage({ ...this.#init, runRequest: KVM_RUN.code });
  }

  #onMessage(m: VcpuThreadMessage): void {
    if (m.type === "exit") {
      this.#host.handleExit();
      Atomics.store(this.#ctrl, CTRL_DONE_SEQ, m.seq);
      Atomics.notify(this.#ctrl, CTRL_DONE_SEQ);
      return;
    }
    if (m.type === "started") {
      this.#tid = m.tid;
      if (this.#kickPending) this.kick();
    }
    this.#host.threadEvent(m);
  }

  kick(): void {
    if (this.#tid === 0) {
      // Not started yet: immediate_exit stops its first KVM_RUN; kick once it reports.
      this.#kickPending = true;
      return;
    }
    this.#kickPending = false;
    const state = Atomics.load(this.#ctrl, CTRL_STATE);
    if (state === STATE_STOPPED || state === STATE_FAILED) return;
    kickThread(this.#tid, this.#init.kickSignal);
  }

  wake(): void {
    Atomics.notify(this.#ctrl, CTRL_CMD);
    // An exit the VMM has not answered yet is answered once its message arrives.
  }

  dispose(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
  }
}

function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** The inline thread: `KVM_RUN` through the syscall boundary on this thread. */
export class InlineRunner implements VcpuRunner {
  #sys: KvmSyscalls;
  #fd: number;
  #ctrl: Int32Array;
  #run: Uint8Array;
  #host: RunnerHost;
  #wake?: () => void;
  #disposed = false;

  constructor(
    init: { sys: KvmSyscalls; fd: number; control: SharedArrayBuffer; run: Uint8Array },
    host: RunnerHost,
  ) {
    this.#sys = init.sys;
    this.#fd = init.fd;
    this.#ctrl = new Int32Array(init.control);
    this.#run = init.run;
    this.#host = host;
  }

  start(): void {
    void this.#loop();
  }

  #runOnce(): number {
    try {
      this.#sys.ioctlValue(this.#fd, KVM_RUN, 0n);
      return 0;
    } catch (e) {
      if (e instanceof IoctlError) return -e.errno;
      throw e;
    }
  }

  async #park(): Promise<number> {
    const ctrl = this.#ctrl;
    Atomics.store(ctrl, CTRL_STATE, STATE_PAUSED);
    for (;;) {
      const gen = Atomics.load(ctrl, CTRL_PAUSE_GEN);
      Atomics.store(ctrl, CTRL_PARKED_GEN, gen);
      this.#host.threadEvent({ type: "paused", gen });
      let cmd: number;
      while ((cmd = Atomics.load(ctrl, CTRL_CMD)) === CMD_PAUSE) {
        if (Atomics.load(ctrl, CTRL_PAUSE_GEN) !== gen || this.#disposed) break;
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
      if (cmd !== CMD_PAUSE || this.#disposed) return cmd;
    }
  }

  async #loop(): Promise<void> {
    const ctrl = this.#ctrl;
    Atomics.store(ctrl, CTRL_STATE, STATE_RUNNING);
    this.#host.threadEvent({ type: "started", tid: 0 });
    try {
      for (;;) {
        if (this.#disposed) return;
        const rc = this.#runOnce();
        Atomics.add(ctrl, CTRL_RUNS, 1);
        if (rc < 0) {
          if (rc !== -EINTR) {
            Atomics.store(ctrl, CTRL_STATE, STATE_FAILED);
            this.#host.threadEvent({ type: "failed", syscall: "KVM_RUN", errno: -rc });
            return;
          }
          Atomics.add(ctrl, CTRL_EINTRS, 1);
          Atomics.store(this.#run, RUN_IMMEDIATE_EXIT, 0);
          let cmd = Atomics.load(ctrl, CTRL_CMD);
          if (cmd === CMD_PAUSE) cmd = await this.#park();
          if (cmd === CMD_STOP || this.#disposed) break;
          Atomics.store(ctrl, CTRL_STATE, STATE_RUNNING);
          await nextTask();
          continue;
        }
        const seq = Atomics.add(ctrl, CTRL_EXIT_SEQ, 1) + 1;
        Atomics.store(ctrl, CTRL_STATE, STATE_IN_EXIT);
        this.#host.handleExit();
        Atomics.store(ctrl, CTRL_DONE_SEQ, seq);
        if (Atomics.load(ctrl, CTRL_CMD) === CMD_STOP) break;
        Atomics.store(ctrl, CTRL_STATE, STATE_RUNNING);
        await nextTask();
      }
    } catch (err) {
      Atomics.store(ctrl, CTRL_STATE, STATE_FAILED);
      this.#host.threadEvent({
        type: "failed",
        syscall: "vCPU loop",
        errno: 0,
        message: (err as Error).message,
      });
      return;
    }
    Atomics.store(ctrl, CTRL_STATE, STATE_STOPPED);
    this.#host.threadEvent({ type: "stopped" });
  }

  kick(): void {
    // immediate_exit is checked at the next KVM_RUN; there is no other thread.
  }

  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  dispose(): void {
    this.#disposed = true;
    this.wake();
  }
}
