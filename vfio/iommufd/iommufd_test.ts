// The iommufd objects against a scripted /dev/iommu (no kernel): typed errors,
// idempotent close, and how the dirty tracker reads. The same objects run
// against the real 6.12 kernel in tests/kernel/iommufd/.
import assert from "node:assert/strict";
import { iova } from "../../sys/address.ts";
import { ENOENT, EOPNOTSUPP } from "../../sys/errno.ts";
import { IoctlError, ResourceBusyError, SyscallError } from "../../sys/errors.ts";
import { defaultSyscalls } from "../../sys/libc.ts";
import type { IoctlRequest } from "../../sys/syscalls.ts";
import { ForwardingSyscalls } from "../../tests/forwarding_syscalls.ts";
import { DirtyTrackingUnavailableError, VfioStateError } from "../errors.ts";
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "./constants.ts";
import { IommufdDirtyTracker } from "./dirty_tracker.ts";
import { Iommufd } from "./iommufd.ts";
import { VfioCdevDevice, vfioCdevPath } from "./cdev_device.ts";
import { decodeGetDirtyBitmap } from "./uapi/hwpt.ts";

/** /dev/iommu as a script: ids count up, HWPT_ALLOC(DIRTY) can be refused, calls are logged. */
class ScriptedIommu extends ForwardingSyscalls {
  calls: { name: string; arg: Uint8Array }[] = [];
  open_ = 0;
  nextId = 1;
  refuseDirty = false;
  missing = false;
  constructor() {
    super(defaultSyscalls()); // mmap and munmap are real
  }
  override open(path: string): number {
    if (this.missing) throw new SyscallError("open", ENOENT, { path });
    this.open_++;
    return 1000;
  }
  override close(): void {
    this.open_--;
  }
  override ioctl(_fd: number, req: IoctlRequest, arg: Uint8Array): number {
    this.calls.push({ name: req.name, arg: arg.slice() });
    const v = new DataView(arg.buffer, arg.byteOffset);
    if (req.name === "IOMMU_IOAS_ALLOC") v.setUint32(8, this.nextId++, true);
    if (req.name === "IOMMU_HWPT_ALLOC") {
      if (this.refuseDirty && (v.getUint32(4, true) & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)) {
        throw new IoctlError(req.name, EOPNOTSUPP);
      }
      v.setUint32(16, this.nextId++, true);
    }
    return 0;
  }
  override ioctlValue(): number {
    return 0;
  }
  override pread(): number {
    return 0;
  }
  override pwrite(): number {
    return 0;
  }
  override read(): number {
    return 0;
  }
  override write(): number {
    return 0;
  }
  named(name: string): Uint8Array[] {
    return this.calls.filter((c) => c.name === name).map((c) => c.arg);
  }
}

Deno.test("Iommufd.allocHwpt() with dirty tracking refused: DirtyTrackingUnavailableError caused by EOPNOTSUPP", () => {
  const sys = new ScriptedIommu();
  sys.refuseDirty = true;
  using iommufd = Iommufd.open({ syscalls: sys });
  using ioas = iommufd.allocIoas();
  let e: unknown;
  try {
    iommufd.allocHwpt({ devId: 7, ioas, dirtyTracking: true });
  } catch (err) {
    e = err;
  }
  assert.ok(e instanceof DirtyTrackingUnavailableError);
  assert.match(e.message, /^Device-side dirty tracking unavailable: the IOMMU behind device 7/);
  assert.ok(e.cause instanceof IoctlError && e.cause.errno === EOPNOTSUPP);
  using plain = iommufd.allocHwpt({ devId: 7, ioas });
  assert.equal(plain.dirtyTrackingCapable, false);
  assert.throws(() => plain.setDirtyTracking(true), DirtyTrackingUnavailableError);
});

Deno.test("Iommufd.open() says the kernel has no iommufd when /dev/iommu is missing", () => {
  const sys = new ScriptedIommu();
  sys.missing = true;
  assert.throws(
    () => Iommufd.open({ syscalls: sys }),
    (e: unknown) =>
      e instanceof SyscallError && e.errno === ENOENT && /CONFIG_IOMMUFD/.test(e.message),
  );
});

Deno.test("IommufdIoas.close() and Iommufd.close() refuse while their dependents live, then close once", () => {
  const sys = new ScriptedIommu();
  const iommufd = Iommufd.open({ syscalls: sys });
  const ioas = iommufd.allocIoas();
  const m = ioas.map(iova(0x100000n), { vaddr: 0x7f00_0000_0000n as never, size: 0x2000n });
  assert.throws(
    () => ioas.map(iova(0x100800n), { vaddr: 0x7f00_0000_0000n as never, size: 0x1000n }),
    RangeError,
  );
  assert.throws(() => iommufd.close(), (e: unknown) =>
    e instanceof ResourceBusyError &&
    e.message === "Cannot close /dev/iommu: IOAS 1 is still open (close its devices, then its " +
        "HWPTs, then its IOASes, then the context)");
  assert.throws(() => ioas.close(), (e: unknown) =>
    e instanceof ResourceBusyError &&
    /^Cannot close IOAS 1: DMA mapping \[0x100000, 0x102000\) is still open/.test(e.message));
  assert.equal(sys.named("IOMMU_DESTROY").length, 0, "refused before any ioctl");
  assert.equal(m.mapped, true);
  m.unmap();
  ioas.close();
  ioas.close();
  assert.equal(sys.named("IOMMU_DESTROY").length, 1);
  iommufd.close();
  iommufd.close();
  assert.equal(sys.open_, 0);
});

Deno.test("IommufdDirtyTracker.harvestInto() reads mapping by mapping, never across a hole", () => {
  const sys = new ScriptedIommu();
  using iommufd = Iommufd.open({ syscalls: sys });
  using ioas = iommufd.allocIoas();
  const vaddr = 0x7f00_0000_0000n as never;
  using _a = ioas.map(iova(0x100000n), { vaddr, size: 0x4000n });
  using _b = ioas.map(iova(0x200000n), { vaddr, size: 0x2000n });
  using hwpt = iommufd.allocHwpt({ devId: 1, ioas, dirtyTracking: true });
  const tracker = new IommufdDirtyTracker(hwpt, ioas, [{ gpa: 0n, size: 0x400000n }]);
  tracker.start();
  const bitmap = { pages: 1024, words: new Uint32Array(32) };
  const h = tracker.harvestInto([bitmap]);
  const reads = sys.named("IOMMU_HWPT_GET_DIRTY_BITMAP").map(decodeGetDirtyBitmap);
  assert.deepEqual(reads.map((r) => [r.iova, r.length, r.flags]), [[0x100000n, 0x4000n, 0], [
    0x200000n,
    0x2000n,
    0,
  ]]);
  assert.equal(h.coveredPages, 6);
  sys.calls = [];
  tracker.unmap(0x100000n, 0x4000n);
  assert.deepEqual(sys.calls.map((c) => c.name), [
    "IOMMU_HWPT_GET_DIRTY_BITMAP",
    "IOMMU_IOAS_UNMAP",
  ]);
  assert.equal(decodeGetDirtyBitmap(sys.calls[0].arg).flags, 1, "NO_CLEAR before the unmap");
  tracker.stop();
});

Deno.test("HwPagetable.close(), IommufdIoas.close() and Iommufd.close() refuse while a cdev device uses them", () => {
  const sys = new ScriptedIommu();
  const iommufd = Iommufd.open({ syscalls: sys });
  const ioas = iommufd.allocIoas();
  const device = VfioCdevDevice.open("/dev/vfio/devices/vfio0", { syscalls: sys });
  device.bind(iommufd);
  const hwpt = iommufd.allocHwpt({ devId: 1, ioas });
  device.attach(hwpt);
  const label = "device /dev/vfio/devices/vfio0";
  assert.throws(() => hwpt.close(), (e: unknown) =>
    e instanceof ResourceBusyError &&
    e.message ===
      `Cannot close HWPT ${hwpt.id}: ${label} is still open (detach or close the device first)`);
  assert.throws(
    () => ioas.close(),
    (e: unknown) => e instanceof ResourceBusyError && e.dependents.includes(`HWPT ${hwpt.id}`),
  );
  assert.throws(() => iommufd.close(), (e: unknown) =>
    e instanceof ResourceBusyError &&
    e.dependents.join(", ") === `IOAS ${ioas.id}, ${label}, HWPT ${hwpt.id}`);
  assert.equal(sys.named("IOMMU_DESTROY").length, 0, "refused before any ioctl");
  device.detach();
  hwpt.close();
  device.attach(ioas); // attached through an automatic HWPT: it uses the IOAS
  assert.throws(
    () => ioas.close(),
    (e: unknown) => e instanceof ResourceBusyError && e.dependents.join() === label,
  );
  device.close(); // the kernel detaches and unbinds it
  ioas.close();
  iommufd.close();
  assert.equal(sys.named("IOMMU_DESTROY").length, 2);
  assert.equal(sys.open_, 0);
});

Deno.test("vfioCdevPath() finds a device's cdev in sysfs, and names a device without one", () => {
  const sysfs = Deno.makeTempDirSync({ prefix: "deno-vmm-sysfs-" });
  try {
    Deno.mkdirSync(`${sysfs}/bus/mdev/devices/u-1/vfio-dev/vfio3`, { recursive: true });
    assert.equal(vfioCdevPath("u-1", { sysfs }), "/dev/vfio/devices/vfio3");
    assert.throws(
      () => vfioCdevPath("0000:00:09.0", { sysfs }),
      (e: unknown) => e instanceof VfioStateError && /no .*0000:00:09\.0\/vfio-dev/.test(e.message),
    );
  } finally {
    Deno.removeSync(sysfs, { recursive: true });
  }
});

Deno.test("vfioCdevPath() without the permission to read sysfs says so, not that the device is absent", async () => {
  const sysfs = Deno.makeTempDirSync({ prefix: "deno-vmm-sysfs-" });
  const repo = new URL("../..", import.meta.url).pathname;
  try {
    Deno.mkdirSync(`${sysfs}/bus/pci/devices/0000:00:03.0/vfio-dev/vfio0`, { recursive: true });
    const script = `${sysfs}.ts`;
    Deno.writeTextFileSync(
      script,
      `import { vfioCdevPath } from "${new URL("./cdev_device.ts", import.meta.url)}";
      try { vfioCdevPath("0000:00:03.0", { sysfs: "${sysfs}" }); console.log("found"); }
      catch (e) { console.log(e instanceof Deno.errors.NotCapable ? "NotCapable" : String(e)); }`,
    );
    // Reading the repository and the script only: the fake sysfs is not granted.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--allow-read=${repo},${script}`, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "NotCapable");
    Deno.removeSync(script);
  } finally {
    Deno.removeSync(sysfs, { recursive: true });
  }
});
