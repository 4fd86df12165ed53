// Explains why a kernel facility is unavailable, naming what to grant.

import { EACCES, EINVAL, ENOSYS, ENOTTY, EPERM } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { readProcFile } from "../sys/procfs.ts";

function readText(path: string): string | undefined {
  try {
    return readProcFile(path).trim();
  } catch {
    return undefined;
  }
}

export function kernelRelease(): string {
  return readText("/proc/sys/kernel/osrelease") ?? "unknown";
}

/** Why `Userfaultfd.open()` failed, and how to grant it. */
export function explainUserfaultfd(err: unknown): string {
  if (!(err instanceof SyscallError)) return `userfaultfd failed: ${err}`;
  if (err.errno === ENOSYS) {
    return `the kernel (${kernelRelease()}) was built without userfaultfd (CONFIG_USERFAULTFD)`;
  }
  if (err.errno === EPERM || err.errno === EACCES) {
    const sysctl = readText("/proc/sys/vm/unprivileged_userfaultfd") ?? "unreadable";
    const dev = err.cause instanceof SyscallError ? err.cause.code : "not tried";
    return `userfaultfd is not permitted: vm.unprivileged_userfaultfd is ${sysctl}, this ` +
      `process lacks CAP_SYS_PTRACE (or a seccomp filter blocks the call), and /dev/userfaultfd ` +
      `could not be used (${dev}). Grant it ` +
      "with `sysctl -w vm.unprivileged_userfaultfd=1`, or give this user read and write " +
      "access to /dev/userfaultfd (for example a udev rule setting its group and mode 0660)";
  }
  return `userfaultfd failed: ${err.message}`;
}

/** Why UFFDIO_API refused the async write-protect features. */
export function explainUffdApi(err: unknown): string {
  if (err instanceof SyscallError && err.errno === EINVAL) {
    return `the kernel (${kernelRelease()}) lacks UFFD_FEATURE_WP_ASYNC or ` +
      "UFFD_FEATURE_WP_UNPOPULATED (both need Linux 6.7 or later)";
  }
  return `UFFDIO_API failed: ${err instanceof Error ? err.message : err}`;
}

/** Why PAGEMAP_SCAN failed. */
export function explainPagemapScan(err: unknown): string {
  if (err instanceof SyscallError && (err.errno === ENOTTY || err.errno === EINVAL)) {
    return `the kernel (${kernelRelease()}) lacks the PAGEMAP_SCAN ioctl on /proc/self/pagemap ` +
      "(Linux 6.7 or later)";
  }
  return `PAGEMAP_SCAN failed: ${err instanceof Error ? err.message : err}`;
}
