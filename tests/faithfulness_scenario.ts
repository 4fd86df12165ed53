/**
 * One scenario of raw VFIO calls, run against any {@linkcode Syscalls}: the
 * real kernel in the QEMU guest, and `FakeKernel`. Each step records its
 * return code or errno and the bytes the kernel wrote back, so the two runs
 * can be compared field by field. Where they differ, the fake is wrong.
 *
 * @module
 */

import { EBADF } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { O_CLOEXEC, O_RDWR } from "../sys/constants.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import type { IoctlRequest } from "../sys/syscalls.ts";
import * as I from "../vfio/ioctls.ts";
import { encodeDirtyPages } from "../vfio/uapi/dirty_pages.ts";
import { encodeDmaMap, encodeDmaUnmap } from "../vfio/uapi/dma.ts";
import { encodeGroupStatus } from "../vfio/uapi/group_status.ts";
import { encodeIommuInfoRequest } from "../vfio/uapi/iommu_info.ts";
import { anonMemory } from "./anon_memory.ts";

/** One step's outcome. */
export interface StepResult {
  /** What the step did. */
  step: string;
  /** The return value (0 for a new fd, whose number differs), or `-errno`. */
  ret: number;
  /** Bytes the kernel wrote back (hex), where they matter. */
  out?: string;
}

const MiB = 0x100000n;
const FD_STEPS = /^(open container|open group|GET_DEVICE_FD)$/;

function closeQuietly(sys: Syscalls, fd: number): void {
  try {
    sys.close(fd);
  } catch (e) {
    if (!(e instanceof SyscallError && e.errno === EBADF)) console.error(`close(${fd}): ${e}`);
  }
}

function hexOf(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Runs the scenario.
 *
 * @param sys The boundary: libc (real kernel) or a fake.
 * @param options The group number and its device name.
 * @returns The step results, in order.
 *
 * @example
 * ```ts ignore
 * const real = runFaithfulnessScenario(new LibcSyscalls(), { group: 26, device: "0000:00:03.0" });
 * ```
 */
export function runFaithfulnessScenario(
  sys: Syscalls,
  options: { group: number; device: string },
): StepResult[] {
  const out: StepResult[] = [];
  const fds: number[] = [];
  using mem = anonMemory(4n * MiB, { syscalls: sys });
  using bitmap = anonMemory(0x1000n, { syscalls: sys });
  const call = (step: string, fn: () => number, back?: Uint8Array) => {
    let ret: number;
    try {
      ret = fn();
    } catch (e) {
      if (!(e instanceof SyscallError)) throw e;
      ret = -e.errno;
    }
    // New fds differ in number between kernels: record that one was returned.
    const shown = FD_STEPS.test(step) && ret >= 0 ? 0 : ret;
    out.push(back === undefined ? { step, ret: shown } : { step, ret: shown, out: hexOf(back) });
    return ret;
  };
  const io = (step: string, fd: number, req: IoctlRequest, arg: Uint8Array, keep = false) =>
    call(step, () => sys.ioctl(fd, req, arg), keep ? arg : undefined);
  const val = (step: string, fd: number, req: IoctlRequest, v: bigint) =>
    call(step, () => sys.ioctlValue(fd, req, v));
  const bits = () => {
    const b = hexOf(bitmap.bytes.subarray(0, 64));
    bitmap.bytes.fill(0, 0, 64);
    return b;
  };
  try {
    const c = call("open container", () => sys.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC));
    fds.push(c);
    val("GET_API_VERSION", c, I.VFIO_GET_API_VERSION, 0n);
    for (const ext of [1n, 3n, 4n, 8n, 9n, 10n]) {
      val(`CHECK_EXTENSION ${ext}`, c, I.VFIO_CHECK_EXTENSION, ext);
    }
    io("GET_INFO before SET_IOMMU", c, I.VFIO_IOMMU_GET_INFO, encodeIommuInfoRequest(24));
    val("SET_IOMMU before a group", c, I.VFIO_SET_IOMMU, 3n);
    const g = call("open group", () => sys.open(`/dev/vfio/${options.group}`, O_RDWR | O_CLOEXEC));
    fds.push(g);
    call("open group twice", () => {
      const fd = sys.open(`/dev/vfio/${options.group}`, O_RDWR | O_CLOEXEC);
      sys.close(fd);
      return fd;
    });
    io("GROUP_GET_STATUS", g, I.VFIO_GROUP_GET_STATUS, encodeGroupStatus(), true);
    const cfd = new Uint8Array(4);
    new DataView(cfd.buffer).setInt32(0, c, true);
    io("GROUP_SET_CONTAINER", g, I.VFIO_GROUP_SET_CONTAINER, cfd);
    io("GROUP_SET_CONTAINER again", g, I.VFIO_GROUP_SET_CONTAINER, cfd);
    io("GROUP_GET_STATUS attached", g, I.VFIO_GROUP_GET_STATUS, encodeGroupStatus(), true);
    val("DIRTY_PAGES before SET_IOMMU", c, I.VFIO_IOMMU_DIRTY_PAGES, 0n);
    val("SET_IOMMU 3", c, I.VFIO_SET_IOMMU, 3n);
    val("SET_IOMMU again", c, I.VFIO_SET_IOMMU, 3n);
    const noneName = new TextEncoder().encode("0000:00:1f.7\0");
    io("GET_DEVICE_FD unknown", g, I.VFIO_GROUP_GET_DEVICE_FD, noneName);
    for (const argsz of [8, 16, 24, 115, 116]) {
      const buf = encodeIommuInfoRequest(argsz);
      const full = new Uint8Array(128);
      full.set(buf);
      io(
        `GET_INFO argsz ${argsz}`,
        c,
        I.VFIO_IOMMU_GET_INFO,
        full.subarray(0, Math.max(argsz, 24)),
        true,
      );
    }
    const map = (
      step: string,
      flags: number,
      iova: bigint,
      size: bigint,
      vaddr: bigint = mem.vaddr,
    ) => io(step, c, I.VFIO_IOMMU_MAP_DMA, encodeDmaMap({ flags, vaddr, iova, size }));
    map("MAP unaligned iova", 3, MiB + 0x800n, 0x1000n);
    map("MAP unaligned size", 3, MiB, 0x1800n);
    map("MAP no READ/WRITE", 0, MiB, 0x1000n);
    map("MAP size 0", 3, MiB, 0n);
    map("MAP MSI hole", 3, 0xfee00000n, 0x1000n);
    map("MAP beyond ranges", 3, 0x8000000000n, 0x1000n);
    map("MAP 1 MiB at 1 MiB", 3, MiB, MiB);
    map("MAP overlap", 3, MiB + 0x1000n, 0x1000n, mem.vaddr + MiB);
    map("MAP 1 MiB at 4 MiB", 3, 4n * MiB, MiB, mem.vaddr + 2n * MiB);
    const info = new Uint8Array(128);
    info.set(encodeIommuInfoRequest(116));
    io("GET_INFO after 2 maps", c, I.VFIO_IOMMU_GET_INFO, info.subarray(0, 116), true);
    const dirty = (
      step: string,
      flags: number,
      get?: { iova: bigint; size: bigint; pgsize?: bigint; bsize?: bigint; data?: bigint },
      argsz?: number,
    ) => {
      const arg = encodeDirtyPages(
        get === undefined ? { flags } : {
          flags,
          get: {
            iova: get.iova,
            size: get.size,
            bitmap: {
              pgsize: get.pgsize ?? 0x1000n,
              size: get.bsize ?? 64n,
              data: get.data ?? bitmap.vaddr,
            },
          },
        },
      );
      if (argsz !== undefined) new DataView(arg.buffer).setUint32(0, argsz, true);
      const ret = io(step, c, I.VFIO_IOMMU_DIRTY_PAGES, arg);
      if (get !== undefined) out[out.length - 1].out = bits();
      return ret;
    };
    dirty("GET before START", 4, { iova: MiB, size: MiB });
    dirty("STOP while stopped", 2);
    dirty("START", 1);
    dirty("START twice", 1);
    dirty("START|STOP", 3);
    dirty("no flag", 0);
    dirty("argsz 4", 1, undefined, 4);
    dirty("GET argsz 8", 4, undefined, 8);
    dirty("GET 1 MiB", 4, { iova: MiB, size: MiB });
    dirty("GET again", 4, { iova: MiB, size: MiB });
    dirty("GET pgsize 8192", 4, { iova: MiB, size: MiB, pgsize: 0x2000n });
    dirty("GET pgsize 2 MiB", 4, { iova: MiB, size: MiB, pgsize: 0x200000n });
    dirty("GET bitmap too small", 4, { iova: MiB, size: MiB, bsize: 8n });
    dirty("GET unaligned iova", 4, { iova: MiB + 0x800n, size: MiB });
    dirty("GET unaligned size", 4, { iova: MiB, size: MiB - 0x800n });
    dirty("GET size 0", 4, { iova: MiB, size: 0n });
    dirty("GET half a mapping", 4, { iova: MiB, size: MiB / 2n });
    dirty("GET starting inside a mapping", 4, { iova: MiB + 0x1000n, size: MiB });
    dirty("GET bitmap over max", 4, { iova: MiB, size: MiB, bsize: 0x10000008n });
    dirty("GET data NULL", 4, { iova: MiB, size: MiB, data: 0n });
    dirty("GET kernel-address data", 4, { iova: MiB, size: MiB, data: 0xffff800000000000n });
    dirty("GET past a mapping", 4, { iova: MiB, size: 2n * MiB, bsize: 64n });
    dirty("GET unmapped range", 4, { iova: 8n * MiB, size: MiB });
    dirty("GET over both mappings", 4, { iova: 0n, size: 8n * MiB, bsize: 256n });
    const unmap = (
      step: string,
      flags: number,
      iova: bigint,
      size: bigint,
      bm?: { pgsize?: bigint; bsize?: bigint },
    ) => {
      const arg = encodeDmaUnmap({
        flags,
        iova,
        size,
        ...(bm
          ? { bitmap: { pgsize: bm.pgsize ?? 0x1000n, size: bm.bsize ?? 64n, data: bitmap.vaddr } }
          : {}),
      });
      const ret = io(step, c, I.VFIO_IOMMU_UNMAP_DMA, arg, true);
      const last = out[out.length - 1];
      // The bitmap's user address (bytes 40..48) differs between runs: mask it.
      if (bm) last.out = `${last.out!.slice(0, 80)}${"xx".repeat(8)}/${bits()}`;
      return ret;
    };
    unmap("UNMAP bitmap size 0", 1, 4n * MiB, MiB, { bsize: 0n });
    unmap("UNMAP bitmap pgsize 8192", 1, 4n * MiB, MiB, { pgsize: 0x2000n });
    unmap("UNMAP bitmap unaligned iova", 1, 4n * MiB + 0x800n, MiB, {});
    unmap("UNMAP ALL|GET_DIRTY", 3, 0n, 0n, {});
    unmap("UNMAP half (v2 bisect)", 0, 4n * MiB, MiB / 2n);
    unmap("UNMAP with bitmap while tracking", 1, 4n * MiB, MiB, {});
    dirty("STOP", 2);
    dirty("STOP again", 2);
    unmap("UNMAP with bitmap after STOP", 1, MiB, MiB, {});
    const name = new TextEncoder().encode(`${options.device}\0`);
    const d = io("GET_DEVICE_FD", g, I.VFIO_GROUP_GET_DEVICE_FD, name);
    if (d >= 0) fds.push(d);
    io("UNSET_CONTAINER with a device open", g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array(0));
    if (d >= 0) {
      call("close device", () => {
        sys.close(d);
        return 0;
      });
      fds.splice(fds.indexOf(d), 1);
    }
    io(
      "UNMAP 1 MiB",
      c,
      I.VFIO_IOMMU_UNMAP_DMA,
      encodeDmaUnmap({ flags: 0, iova: MiB, size: MiB }),
      true,
    );
    io("UNSET_CONTAINER", g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array(0));
    io("UNSET_CONTAINER again", g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array(0));
    io("GET_INFO after the last group left", c, I.VFIO_IOMMU_GET_INFO, encodeIommuInfoRequest(24));
  } finally {
    // Close what is still open, newest first; a fd the kernel already let go is fine.
    for (const fd of fds.reverse()) closeQuietly(sys, fd);
  }
  return out;
}
