/**
 * Turns any error into the one line a CLI user should read: what failed, the
 * errno, and what to do about it. Never a stack trace.
 *
 * @module
 */

import { EACCES, ENODEV, ENOENT, EPERM } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { currentUid } from "../sys/procfs.ts";

/** A bad command line: the message says what is wrong; exit status 2. */
export class UsageError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong with the arguments.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function currentUser(): string {
  try {
    const uid = String(currentUid());
    try {
      const passwd = Deno.readTextFileSync("/etc/passwd");
      const name = passwd.split("\n").map((l) => l.split(":")).find((f) => f[2] === uid)?.[0];
      if (name) return `user ${name} (uid ${uid})`;
    } catch {
      // No --allow-read for /etc/passwd: the uid alone.
    }
    return `uid ${uid}`;
  } catch {
    return "this user";
  }
}

function ownerOf(path: string): string {
  try {
    const st = Deno.statSync(path);
    const mode = ((st.mode ?? 0) & 0o777).toString(8).padStart(3, "0");
    return ` (owner uid ${st.uid}, gid ${st.gid}, mode ${mode})`;
  } catch {
    return "";
  }
}

/**
 * Describes an error in one line, with a hint for the errnos users hit.
 *
 * @param e The error.
 * @returns The line, without a trailing newline.
 *
 * @example
 * ```ts
 * import { describeError } from "./describe_error.ts";
 * import { SyscallError } from "../sys/errors.ts";
 * console.log(describeError(new SyscallError("open", 2, { path: "/dev/vfio/vfio" })));
 * ```
 */
export function describeError(e: unknown): string {
  if (e instanceof SyscallError && e.path !== undefined) {
    const group = /^\/dev\/vfio\/(\d+)$/.exec(e.path)?.[1];
    if (e.errno === ENOENT && group !== undefined) {
      return `No VFIO group ${group}: ${e.message} (list the groups with ls /dev/vfio)`;
    }
    if (e.errno === ENOENT && e.path === "/dev/vfio/vfio") {
      return `${e.message}: the vfio modules may not be loaded (modprobe vfio-pci) or there is no IOMMU`;
    }
    if (e.errno === ENOENT) return `${e.message}: no such file`;
    if (e.errno === EACCES || e.errno === EPERM) {
      return `${e.message}: ${currentUser()} lacks read-write permission on ${e.path}${
        ownerOf(e.path)
      }; grant it (chown or a udev rule for /dev/vfio) or run as root`;
    }
    return e.message;
  }
  if (e instanceof IoctlError && e.errno === ENODEV) {
    return `${e.message}: no such device in the group`;
  }
  if (e instanceof Error) {
    return e.message;
  }
  return String(e);
}
