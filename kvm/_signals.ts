// Signals for kicking a vCPU thread out of KVM_RUN: the thread blocks the kick
// signal for itself, KVM_SET_SIGNAL_MASK unblocks it only inside KVM_RUN, so a
// kick sent by tgkill makes KVM_RUN return EINTR and is never delivered to a
// handler; the thread then takes it off its pending set with sigtimedwait.

import { EAGAIN } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { errno, libc } from "../sys/_libc.ts";

/**
 * The default kick: glibc's SIGRTMIN (34). Deno itself uses SIGUSR1 (the
 * inspector), so the kick stays clear of it, as Cloud Hypervisor's does.
 */
export const DEFAULT_KICK_SIGNAL = 34;

const SIG_BLOCK = 0;
/** glibc's sigset_t: 1024 bits. */
const SIGSET_BYTES = 128;

function sigset(signal: number): Uint8Array {
  if (!Number.isInteger(signal) || signal < 1 || signal > 64) {
    throw new RangeError(`Cannot use signal ${signal}`);
  }
  const set = new Uint8Array(SIGSET_BYTES);
  set[(signal - 1) >> 3] |= 1 << ((signal - 1) & 7);
  return set;
}

/** Blocks `signal` on the calling thread only. */
export function blockOnThisThread(signal: number): void {
  const rc = libc().pthreadSigmask(SIG_BLOCK, sigset(signal), null);
  if (rc !== 0) throw new SyscallError("pthread_sigmask", rc);
}

/** Takes every pending instance of `signal` off the calling thread; returns how many. */
export function takePending(signal: number): number {
  const lib = libc();
  const set = sigset(signal);
  const zero = new Uint8Array(16); // struct timespec { 0, 0 }
  let taken = 0;
  for (;;) {
    if (lib.sigtimedwait(set, null, zero) === signal) {
      taken++;
      continue;
    }
    const e = errno();
    if (e === EAGAIN) return taken;
    throw new SyscallError("sigtimedwait", e);
  }
}

/** The calling thread's kernel tid. */
export function currentTid(): number {
  return libc().gettid();
}

/** Sends `signal` to thread `tid` of this process. */
export function kickThread(tid: number, signal: number): void {
  const lib = libc();
  if (lib.tgkill(lib.getpid(), tid, signal) < 0) throw new SyscallError("tgkill", errno());
}
