// The cost the typed wrapper adds to one ioctl, side by side with a raw FFI
// ioctl on the EBADF path (no VFIO needed). Run: deno task bench
//
// Every typed failure throws an IoctlError; "raw + new Error" isolates what
// Deno charges for constructing any Error, so the wrapper's own share shows.
import { errno, libc } from "../sys/_libc.ts";
import { IoctlError } from "../sys/errors.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import { VFIO_CHECK_EXTENSION } from "../vfio/ioctls.ts";
import { VFIO_TYPE1v2_IOMMU } from "../vfio/constants.ts";
import { VfioContainer } from "../vfio/container.ts";

const BAD_FD = 1_000_000;
const lib = libc();
const code = VFIO_CHECK_EXTENSION.code;
const ext = BigInt(VFIO_TYPE1v2_IOMMU);
const sys = defaultSyscalls();
const container = VfioContainer.unsafeFromFd(BAD_FD);
let sink = 0;

Deno.bench({
  name: "raw FFI ioctl(-EBADF) + errno",
  group: "ioctl EBADF",
  baseline: true,
  fn() {
    if (lib.ioctlVal(BAD_FD, code, ext) < 0) sink += errno();
  },
});

Deno.bench({
  name: "raw FFI ioctl(-EBADF) + new Error",
  group: "ioctl EBADF",
  fn() {
    try {
      if (lib.ioctlVal(BAD_FD, code, ext) < 0) throw new Error("EBADF");
    } catch {
      sink++;
    }
  },
});

Deno.bench({
  name: "LibcSyscalls.ioctlValue() throwing IoctlError",
  group: "ioctl EBADF",
  fn() {
    try {
      sys.ioctlValue(BAD_FD, VFIO_CHECK_EXTENSION, ext);
    } catch (e) {
      if (e instanceof IoctlError) sink += e.errno;
    }
  },
});

Deno.bench({
  name: "VfioContainer.checkExtension() throwing IoctlError",
  group: "ioctl EBADF",
  fn() {
    try {
      container.checkExtension(VFIO_TYPE1v2_IOMMU);
    } catch (e) {
      if (e instanceof IoctlError) sink += e.errno;
    }
  },
});

globalThis.addEventListener("unload", () => {
  sys.close(devNull);
  if (sink < 0) console.log(sink);
});

// The success path: FIOCLEX succeeds on any fd and takes no argument, so it
// shows what the boundary adds when nothing throws (VfioContainer methods are
// a closed-check and one call into this same boundary).
const FIOCLEX = { name: "FIOCLEX", code: 0x5451n };
const devNull = sys.open("/dev/null", 0);

Deno.bench({
  name: "raw FFI ioctl(FIOCLEX)",
  group: "ioctl success",
  baseline: true,
  fn() {
    if (lib.ioctlVal(devNull, FIOCLEX.code, 0n) < 0) sink += errno();
  },
});

Deno.bench({
  name: "LibcSyscalls.ioctlValue(FIOCLEX)",
  group: "ioctl success",
  fn() {
    sink += sys.ioctlValue(devNull, FIOCLEX, 0n);
  },
});
