import assert from "node:assert/strict";
import { LibcSyscalls } from "../../sys/libc.ts";
import { O_CLOEXEC, O_RDWR } from "../../sys/constants.ts";
import { VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION } from "../../vfio/ioctls.ts";
import { VFIO_API_VERSION, VFIO_TYPE1v2_IOMMU } from "../../vfio/constants.ts";
import { kernelGroup } from "./env.ts";

Deno.test("LibcSyscalls.ioctl() reads the real container's API version and TYPE1v2", () => {
  const group = kernelGroup();
  const sys = new LibcSyscalls();
  const fds: number[] = [];
  try {
    const container = sys.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    fds.push(container);
    assert.equal(sys.ioctlValue(container, VFIO_GET_API_VERSION, 0n), VFIO_API_VERSION);
    assert.equal(sys.ioctlValue(container, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU)), 1);
    fds.push(sys.open(`/dev/vfio/${group}`, O_RDWR | O_CLOEXEC));
  } finally {
    for (const fd of fds.reverse()) sys.close(fd);
  }
});
