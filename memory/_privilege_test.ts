import assert from "node:assert/strict";
import { EACCES, EINVAL, ENOSYS, ENOTTY, EPERM } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import { explainPagemapScan, explainUffdApi, explainUserfaultfd } from "./_privilege.ts";

Deno.test("explainUserfaultfd() names the sysctl, UFFD_USER_MODE_ONLY and /dev/userfaultfd when denied", () => {
  const kernel = new FakeKernel({ unprivilegedUserfaultfd: 0 });
  const denied = new SyscallError("userfaultfd", EPERM, {
    cause: new SyscallError("open", EACCES, { path: "/dev/userfaultfd" }),
  });
  const msg = explainUserfaultfd(denied, kernel);
  assert.match(msg, /^userfaultfd\(UFFD_USER_MODE_ONLY\) is not permitted \(EPERM\): /);
  assert.match(msg, /vm\.unprivileged_userfaultfd is 0/);
  assert.match(msg, /\/dev\/userfaultfd could not be used either \(EACCES\)/);
  assert.match(msg, /sysctl -w vm\.unprivileged_userfaultfd=1/);
  assert.match(msg, /read and write access to \/dev\/userfaultfd/);
  assert.match(msg, /seccomp/);
  assert.equal(kernel.openFds, 0);
  assert.match(
    explainUserfaultfd(new SyscallError("userfaultfd", ENOSYS), kernel),
    /CONFIG_USERFAULTFD/,
  );
  assert.match(
    explainUserfaultfd(new SyscallError("userfaultfd", EINVAL), kernel),
    /does not know UFFD_USER_MODE_ONLY \(Linux 5\.11 or later\)/,
  );
});

Deno.test("explainUserfaultfd() says when the sysctl cannot be read", () => {
  const kernel = new FakeKernel({ deniedPaths: ["/proc/sys/vm/unprivileged_userfaultfd"] });
  const msg = explainUserfaultfd(new SyscallError("userfaultfd", EPERM), kernel);
  assert.match(msg, /vm\.unprivileged_userfaultfd is unreadable/);
  assert.match(msg, /could not be used either \(not tried\)/);
  assert.equal(kernel.openFds, 0);
});

Deno.test("explainUffdApi() and explainPagemapScan() name the kernel version needed", () => {
  const kernel = new FakeKernel();
  assert.match(
    explainUffdApi(new SyscallError("UFFDIO_API", EINVAL), kernel),
    /UFFD_FEATURE_WP_ASYNC .*Linux 6\.7/,
  );
  assert.match(
    explainPagemapScan(new SyscallError("PAGEMAP_SCAN", ENOTTY), kernel),
    /PAGEMAP_SCAN ioctl .*Linux 6\.7/,
  );
  assert.equal(kernel.openFds, 0);
});
