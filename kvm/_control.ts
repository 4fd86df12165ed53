// The control block a vCPU's thread and the VMM share (an Int32Array over a
// SharedArrayBuffer), and the messages the thread posts.

/** Index: the command, `CMD_*` (the VMM writes). */
export const CTRL_CMD = 0;
/** Index: the thread's state, `STATE_*` (the thread writes). */
export const CTRL_STATE = 1;
/** Index: exits posted so far (the thread writes). */
export const CTRL_EXIT_SEQ = 2;
/** Index: exits handled so far (the VMM writes). */
export const CTRL_DONE_SEQ = 3;
/** Index: the thread's kernel tid. */
export const CTRL_TID = 4;
/** Index: `KVM_RUN` calls. */
export const CTRL_RUNS = 5;
/** Index: `KVM_RUN` calls that returned `EINTR`. */
export const CTRL_EINTRS = 6;
/** Index: pause requests so far (the VMM writes). */
export const CTRL_PAUSE_GEN = 7;
/** Index: the pause request the thread is parked for. */
export const CTRL_PARKED_GEN = 8;
/** Words in the block. */
export const CTRL_WORDS = 16;

/** Run the guest. */
export const CMD_RUN = 0;
/** Park the thread once `KVM_RUN` returns. */
export const CMD_PAUSE = 1;
/** End the thread once `KVM_RUN` returns. */
export const CMD_STOP = 2;

export const STATE_STARTING = 0;
export const STATE_RUNNING = 1;
export const STATE_IN_EXIT = 2;
export const STATE_PAUSED = 3;
export const STATE_STOPPED = 4;
export const STATE_FAILED = 5;

/** What the vCPU thread starts with. */
export interface VcpuThreadInit {
  /** The vCPU fd (fds are process-wide). */
  fd: number;
  /** `KVM_RUN`'s request number. */
  runRequest: bigint;
  /** The host address of the mapped `kvm_run` page. */
  runAddress: bigint;
  /** The control block. */
  control: SharedArrayBuffer;
  /** The signal that kicks the thread out of `KVM_RUN`. */
  kickSignal: number;
}

/** Messages from the vCPU thread. */
export type VcpuThreadMessage =
  | { type: "started"; tid: number }
  | { type: "exit"; seq: number }
  | { type: "paused"; gen: number }
  | { type: "stopped" }
  | { type: "failed"; syscall: string; errno: number; message?: string };
