import assert from "node:assert/strict";
import { EACCES, EINVAL, ENOSYS, ENOTTY, EPERM } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { explainPagemapScan, explainUffdApi, explainUserfaultfd } from "./_privilege.ts";

Deno.test("explainUserfaultfd() names the sysctl and /dev/userfaultfd when denied", () => {
  const denied = new SyscallError("userfaultfd", EPERM, {
    cause: new SyscallError("open", EACCES, { path: "/dev/userfaultfd" }),
  });
  const msg = explainUserfaultfd(denied);
  assert.match(msg, /^userfaultfd is not permitted: vm\.unprivileged_userfaultfd is \d/);
  assert.match(msg, /\/dev\/userfaultfd could not be used \(EACCES\)/);
  assert.match(msg, /sysctl -w vm\.unprivileged_userfaultfd=1/);
  assert.match(msg, /read and write access to \/dev\/userfaultfd/);
  assert.match(explainUserfaultfd(new SyscallError("userfaultfd", ENOSYS)), /CONFIG_USERFAULTFD/);
});

Deno.test("explainUffdApi() and explainPagemapScan() name the kernel version needed", () => {
  assert.match(
    explainUffdApi(new SyscallError("UFFDIO_API", EINVAL)),
    /UFFD_FEATURE_WP_ASYNC .*Linux 6\.7/,
  );
  assert.match(
    explainPagemapScan(new SyscallError("PAGEMAP_SCAN", ENOTTY)),
    /PAGEMAP_SCAN ioctl .*Linux 6\.7/,
  );
});
