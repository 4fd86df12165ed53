// Explains why a kernel facility is unavailable, naming what to grant. The
// /proc reads go through the caller's syscalls, so a fake kernel answers them.

import { EACCES, EINVAL, ENOSYS, ENOTTY, EPERM } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { readProcFile } from "../sys/procfs.ts";
import type { ProcSyscalls } from "../sys/syscalls.ts";

function readText(sys: ProcSyscalls, path: string): string | undefined {
  try {
    return readProcFile(path, { syscalls: sys }).trim();
  } catch {
    return undefined;
  }
}

export function kernelRelease(sys: ProcSyscalls): string {
  return readText(sys, "/proc/sys/kernel/osrelease") ?? "unknown";
}

/** Why `Userfaultfd.open()` failed, and how to grant it. */
export function explainUserfaultfd(err: unknown, sys: ProcSyscalls): string {
  if (!(err instanceof SyscallError)) return `userfaultfd failed: ${err}`;
  if (err.errno === ENOSYS) {
    return `the kernel (${kernelRelease(sys)}) was built without userfaultfd (CONFIG_USERFAULTFD)`;
  }
  if (err.errno === EINVAL) {
    return `the kernel (${
      kernelRelease(sys)
    }) does not know UFFD_USER_MODE_ONLY (Linux 5.11 or later)`;
  }
  if (err.errno === EPERM || err.errno === EACCES) {
    const sysctl = readText(sys, "/proc/sys/vm/unprivileged_userfaultfd") ?? "unreadable";
    const dev = err.cause instanceof SyscallError ? err.cause.code : "not tried";
    return `userfaultfd(UFFD_USER_MODE_ONLY) is not permitted (${err.code}): ` +
      `vm.unprivileged_userfaultfd is ${sysctl}, and although Linux 5.11 and later allow ` +
      "UFFD_USER_MODE_ONLY without privilege, the call was refused (a seccomp filter, such as " +
      "a container runtime's default profile, or a security module blocks it); " +
      `/dev/userfaultfd could not be used either (${dev}). Grant it by allowing the ` +
      "userfaultfd syscall in the seccomp profile, with `sysctl -w vm.unprivileged_userfaultfd=1`, " +
      "or by giving this user read and write access to /dev/userfaultfd (for example a udev " +
      "rule setting its group and mode 0660)";
  }
  return `userfaultfd failed: ${err.message}`;
}

/** Why UFFDIO_API refused the async write-protect features. */
export function explainUffdApi(err: unknown, sys: ProcSyscalls): string {
  if (err instanceof SyscallError && err.errno === EINVAL) {
    return `the kernel (${kernelRelease(sys)}) lacks UFFD_FEATURE_WP_ASYNC or ` +
      "UFFD_FEATURE_WP_UNPOPULATED (both need Linux 6.7 or later)";
  }
  return `UFFDIO_API failed: ${err instanceof Error ? err.message : err}`;
}

/** Why PAGEMAP_SCAN failed. */
export function explainPagemapScan(err: unknown, sys: ProcSyscalls): string {
  if (err instanceof SyscallError && (err.errno === ENOTTY || err.errno === EINVAL)) {
    return `the kernel (${
      kernelRelease(sys)
    }) lacks the PAGEMAP_SCAN ioctl on /proc/self/pagemap ` +
      "(Linux 6.7 or later)";
  }
  return `PAGEMAP_SCAN failed: ${err instanceof Error ? err.message : err}`;
}
