/**
 * The pinned-scope rows of the faithfulness scenario: raw VFIO calls on a
 * type1 container whose group is an emulated-IOMMU mdev that pins and
 * DMA-writes pages (the `pintest` module of `tests/kernel/modules/`, or the
 * fake's model of it), then a vfio-pci group joining and leaving the same
 * container. Run against the real kernel and against `FakeKernel`, step by
 * step; where they differ, the fake is wrong.
 *
 * @module
 */

import { EBADF } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { O_CLOEXEC, O_RDWR } from "../sys/constants.ts";
import type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";
import * as I from "../vfio/ioctls.ts";
import { encodeDeviceInfoRequest, encodeRegionInfoRequest } from "../vfio/uapi/device_info.ts";
import { encodeDirtyPages } from "../vfio/uapi/dirty_pages.ts";
import { encodeDmaMap, encodeDmaUnmap } from "../vfio/uapi/dma.ts";
import { encodeIommuInfoRequest } from "../vfio/uapi/iommu_info.ts";
import { anonMemory } from "./anon_memory.ts";
import type { StepResult } from "./faithfulness_scenario.ts";

const PAGE = 0x1000n;
const BASE = 0x100000n;
const FD_STEPS = /^(open container|open mdev group|open edu group|GET_DEVICE_FD)$/;

/** pintest's registers (tests/kernel/modules/pintest/pintest.c). */
export const PINTEST_REGS = {
  PIN: 0x00n,
  DMA_WRITE: 0x08n,
  DATA: 0x10n,
  UNPIN: 0x18n,
  DMA_READ: 0x20n,
  PINNED: 0x28n,
  UNMAPPED: 0x30n,
} as const;

function hexOf(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

/**
 * Runs the pinned-scope rows.
 *
 * @param sys The boundary: libc (real kernel) or a fake.
 * @param options The mdev's group and UUID, and the vfio-pci group that joins later.
 * @returns The step results, in order.
 *
 * @example
 * ```ts ignore
 * const real = runPinnedScenario(new LibcSyscalls(), { mdevGroup: 3, mdev: uuid, eduGroup: 2 });
 * ```
 */
export function runPinnedScenario(
  sys: Syscalls,
  options: { mdevGroup: number; mdev: string; eduGroup: number },
): StepResult[] {
  const out: StepResult[] = [];
  const fds: number[] = [];
  using mem = anonMemory(16n * PAGE, { syscalls: sys });
  using bitmap = anonMemory(PAGE, { syscalls: sys });
  const call = (step: string, fn: () => number, back?: Uint8Array) => {
    let ret: number;
    try {
      ret = fn();
    } catch (e) {
      if (!(e instanceof SyscallError)) throw e;
      ret = -e.errno;
    }
    const shown = FD_STEPS.test(step) && ret >= 0 ? 0 : ret;
    out.push(back === undefined ? { step, ret: shown } : { step, ret: shown, out: hexOf(back) });
    return ret;
  };
  const io = (step: string, fd: number, req: IoctlRequest, arg: Uint8Array, keep = false) =>
    call(step, () => sys.ioctl(fd, req, arg), keep ? arg : undefined);
  const bits = () => {
    const b = hexOf(bitmap.bytes.subarray(0, 8));
    bitmap.bytes.fill(0, 0, 8);
    return b;
  };
  const closeFd = (fd: number) => {
    fds.splice(fds.indexOf(fd), 1);
    sys.close(fd);
  };
  try {
    const c = call("open container", () => sys.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC));
    fds.push(c);
    const g = call(
      "open mdev group",
      () => sys.open(`/dev/vfio/${options.mdevGroup}`, O_RDWR | O_CLOEXEC),
    );
    fds.push(g);
    const cfd = new Uint8Array(4);
    new DataView(cfd.buffer).setInt32(0, c, true);
    io("mdev GROUP_SET_CONTAINER", g, I.VFIO_GROUP_SET_CONTAINER, cfd);
    call("SET_IOMMU 3", () => sys.ioctlValue(c, I.VFIO_SET_IOMMU, 3n));
    const info = new Uint8Array(128);
    info.set(encodeIommuInfoRequest(16));
    io("GET_INFO argsz 16 (mdev only)", c, I.VFIO_IOMMU_GET_INFO, info.subarray(0, 24), true);
    const name = new TextEncoder().encode(`${options.mdev}\0`);
    const d = io("GET_DEVICE_FD", g, I.VFIO_GROUP_GET_DEVICE_FD, name);
    if (d >= 0) fds.push(d);
    io("DEVICE_GET_INFO", d, I.VFIO_DEVICE_GET_INFO, encodeDeviceInfoRequest(), true);
    io("GET_REGION_INFO 0", d, I.VFIO_DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(0, 32), true);
    io("GET_REGION_INFO 1", d, I.VFIO_DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(1, 32));
    const reg = (step: string, at: bigint, value: bigint) =>
      call(step, () => sys.pwrite(d, u64(value), at));
    const read = (step: string, at: bigint) => {
      const buf = new Uint8Array(8);
      call(step, () => sys.pread(d, buf, at), buf);
    };
    reg("PIN before any mapping", PINTEST_REGS.PIN, BASE);
    io(
      "MAP 16 pages",
      c,
      I.VFIO_IOMMU_MAP_DMA,
      encodeDmaMap({ flags: 3, vaddr: mem.vaddr, iova: BASE, size: 16n * PAGE }),
    );
    const get = (step: string) => {
      const arg = encodeDirtyPages({
        flags: 4,
        get: {
          iova: BASE,
          size: 16n * PAGE,
          bitmap: { pgsize: PAGE, size: 8n, data: bitmap.vaddr },
        },
      });
      io(step, c, I.VFIO_IOMMU_DIRTY_PAGES, arg);
      out[out.length - 1].out = bits();
    };
    call(
      "DIRTY START",
      () => sys.ioctl(c, I.VFIO_IOMMU_DIRTY_PAGES, encodeDirtyPages({ flags: 1 })),
    );
    get("GET nothing pinned");
    reg("PIN page 2", PINTEST_REGS.PIN, BASE + 2n * PAGE);
    reg("PIN page 2 again", PINTEST_REGS.PIN, BASE + 2n * PAGE);
    reg("PIN unmapped", PINTEST_REGS.PIN, BASE + 16n * PAGE);
    reg("PIN unaligned", PINTEST_REGS.PIN, BASE + 0x10n);
    reg("DATA", PINTEST_REGS.DATA, 0x0123_4567_89ab_cdefn);
    reg("DMA_WRITE page 5", PINTEST_REGS.DMA_WRITE, BASE + 5n * PAGE + 0x40n);
    reg("DMA_WRITE unmapped", PINTEST_REGS.DMA_WRITE, BASE + 20n * PAGE);
    read("PINNED", PINTEST_REGS.PINNED);
    call("write 4 bytes", () => sys.pwrite(d, new Uint8Array(4), PINTEST_REGS.DATA));
    get("GET pinned and written");
    get("GET again");
    call("RAM at page 5", () => 0, mem.bytes.subarray(5 * 4096 + 0x40, 5 * 4096 + 0x48));
    reg("DATA cleared", PINTEST_REGS.DATA, 0n);
    reg("DMA_READ page 5", PINTEST_REGS.DMA_READ, BASE + 5n * PAGE + 0x40n);
    read("DATA after DMA_READ", PINTEST_REGS.DATA);
    get("GET after a DMA read");
    reg("UNPIN page 2", PINTEST_REGS.UNPIN, BASE + 2n * PAGE);
    reg("UNPIN page 2 again", PINTEST_REGS.UNPIN, BASE + 2n * PAGE);
    get("GET after unpin");
    get("GET after unpin, again");
    reg("PIN page 3", PINTEST_REGS.PIN, BASE + 3n * PAGE);
    get("GET page 3 pinned");
    const e = call(
      "open edu group",
      () => sys.open(`/dev/vfio/${options.eduGroup}`, O_RDWR | O_CLOEXEC),
    );
    if (e >= 0) fds.push(e);
    io("edu GROUP_SET_CONTAINER", e, I.VFIO_GROUP_SET_CONTAINER, cfd);
    get("GET with edu");
    get("GET with edu, again");
    io("edu GROUP_UNSET_CONTAINER", e, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array(0));
    get("GET after edu left");
    get("GET after edu left, again");
    if (e >= 0) closeFd(e);
    const unmap = encodeDmaUnmap({
      flags: 1,
      iova: BASE,
      size: 16n * PAGE,
      bitmap: { pgsize: PAGE, size: 8n, data: bitmap.vaddr },
    });
    io("UNMAP with bitmap", c, I.VFIO_IOMMU_UNMAP_DMA, unmap);
    out[out.length - 1].out = bits();
    read("PINNED after unmap", PINTEST_REGS.PINNED);
    read("UNMAPPED after unmap", PINTEST_REGS.UNMAPPED);
    call(
      "DIRTY STOP",
      () => sys.ioctl(c, I.VFIO_IOMMU_DIRTY_PAGES, encodeDirtyPages({ flags: 2 })),
    );
    if (d >= 0) {
      call("close device", () => {
        closeFd(d);
        return 0;
      });
    }
    io("mdev GROUP_UNSET_CONTAINER", g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array(0));
  } finally {
    for (const fd of fds.reverse()) {
      try {
        sys.close(fd);
      } catch (e) {
        if (!(e instanceof SyscallError && e.errno === EBADF)) console.error(`close(${fd}): ${e}`);
      }
    }
  }
  return out;
}
