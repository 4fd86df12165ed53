// Raw-level tests of FakeKernel: structs encoded with the codecs, ioctls
// issued directly, return values and errnos asserted against the kernel's
// VFIO type1 rules and the behaviour observed on the real 6.1 kernel.

import assert from "node:assert/strict";
import {
  EACCES,
  EBADF,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  ENODEV,
  ENOENT,
  ENOSPC,
  ENOTTY,
  EPERM,
} from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { hostView } from "../sys/host_memory.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import * as C from "../vfio/constants.ts";
import * as I from "../vfio/ioctls.ts";
import { encodeDeviceFeature } from "../vfio/uapi/device_feature.ts";
import {
  decodeDeviceInfo,
  decodeIrqInfo,
  decodeRegionInfo,
  encodeDeviceInfoRequest,
  encodeIrqInfoRequest,
  encodeRegionInfoRequest,
} from "../vfio/uapi/device_info.ts";
import { encodeDirtyPages } from "../vfio/uapi/dirty_pages.ts";
import { decodeDmaUnmap, encodeDmaMap, encodeDmaUnmap } from "../vfio/uapi/dma.ts";
import { decodeGroupStatus, encodeGroupStatus } from "../vfio/uapi/group_status.ts";
import { decodeIommuInfo, encodeIommuInfoRequest, readArgsz } from "../vfio/uapi/iommu_info.ts";
import { FakeKernel, type FakeKernelOptions } from "./fake_kernel.ts";

const MiB = 1n << 20n;
const PAGE = 4096n;
const RW = C.VFIO_DMA_MAP_FLAG_READ | C.VFIO_DMA_MAP_FLAG_WRITE;
const DEV = "0000:00:03.0";

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SyscallError, `expected a SyscallError, got ${err}`);
    return err.errno;
  }
  assert.fail("expected the call to fail");
}

function int32(v: number): Uint8Array {
  return new Uint8Array(new Int32Array([v]).buffer);
}

function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

/** A kernel with container + group 26 attached and the IOMMU set. */
function setup(options: FakeKernelOptions = {}, type = C.VFIO_TYPE1v2_IOMMU) {
  const k = new FakeKernel(options);
  const c = k.open("/dev/vfio/vfio", 2);
  const g = k.open("/dev/vfio/26", 2);
  k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(c));
  k.ioctlValue(c, I.VFIO_SET_IOMMU, BigInt(type));
  return { k, c, g };
}

function anon(k: FakeKernel, size: bigint): bigint {
  return k.mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
}

function map(k: FakeKernel, c: number, iova: bigint, size: bigint, vaddr: bigint, flags = RW) {
  return k.ioctl(c, I.VFIO_IOMMU_MAP_DMA, encodeDmaMap({ flags, vaddr, iova, size }));
}

function getBitmap(
  k: FakeKernel,
  c: number,
  iova: bigint,
  size: bigint,
  data: bigint,
  bytes: bigint,
  pgsize = PAGE,
) {
  const req = encodeDirtyPages({
    flags: C.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
    get: { iova, size, bitmap: { pgsize, size: bytes, data } },
  });
  return k.ioctl(c, I.VFIO_IOMMU_DIRTY_PAGES, req);
}

function dirty(k: FakeKernel, c: number, flags: number) {
  return k.ioctl(c, I.VFIO_IOMMU_DIRTY_PAGES, encodeDirtyPages({ flags }));
}

function countBits(b: Uint8Array): number {
  let n = 0;
  for (const x of b) for (let v = x; v; v &= v - 1) n++;
  return n;
}

function teardown(k: FakeKernel, ...fds: number[]) {
  for (const fd of fds) k.close(fd);
  assert.equal(k.openFds, 0);
  assert.equal(k.liveMappings, 0);
  assert.equal(k.dmaMappings, 0);
}

Deno.test("FakeKernel.open() opens containers and groups like the kernel", () => {
  const k = new FakeKernel({ deniedPaths: ["/dev/vfio/26"] });
  const c = k.open("/dev/vfio/vfio", 2);
  assert.ok(c >= 1000);
  assert.equal(errnoOf(() => k.open("/dev/vfio/26", 2)), EACCES);
  assert.equal(errnoOf(() => k.open("/dev/vfio/27", 2)), ENOENT);
  assert.equal(errnoOf(() => k.open("/dev/kvm", 2)), ENOENT);
  const k2 = new FakeKernel();
  const g = k2.open("/dev/vfio/26", 2);
  assert.equal(errnoOf(() => k2.open("/dev/vfio/26", 2)), EBUSY);
  assert.deepEqual(k2.openFdDescriptions(), ["group 26"]);
  assert.equal(errnoOf(() => k2.close(g + 1)), EBADF);
  teardown(k, c);
  teardown(k2, g);
});

Deno.test("FakeKernel.ioctl() answers the container ioctls as 6.1 does", () => {
  const k = new FakeKernel();
  const c = k.open("/dev/vfio/vfio", 2);
  assert.equal(k.ioctlValue(c, I.VFIO_GET_API_VERSION, 0n), 0);
  const ext = (n: number) => k.ioctlValue(c, I.VFIO_CHECK_EXTENSION, BigInt(n));
  assert.deepEqual(
    [
      C.VFIO_TYPE1_IOMMU,
      C.VFIO_TYPE1v2_IOMMU,
      6,
      C.VFIO_UNMAP_ALL,
      C.VFIO_UPDATE_VADDR,
      C.VFIO_NOIOMMU_IOMMU,
    ]
      .map(ext),
    [1, 1, 1, 1, 0, 0],
  );
  // No group yet: SET_IOMMU is EINVAL; any backend ioctl is EINVAL too.
  assert.equal(errnoOf(() => k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n)), EINVAL);
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_GET_INFO, encodeIommuInfoRequest())), EINVAL);
  assert.equal(errnoOf(() => k.ioctlValue(c, { name: "UNKNOWN", code: 0x3b7fn }, 0n)), EINVAL);
  const g = k.open("/dev/vfio/26", 2);
  k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(c));
  assert.equal(errnoOf(() => k.ioctlValue(c, I.VFIO_SET_IOMMU, 2n)), ENODEV); // no driver claims SPAPR
  assert.equal(errnoOf(() => k.ioctlValue(c, I.VFIO_SET_IOMMU, 9n)), EINVAL); // type1 open() refuses
  assert.equal(k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n), 0);
  assert.equal(errnoOf(() => k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n)), EINVAL);
  assert.equal(errnoOf(() => k.ioctlValue(c, { name: "UNKNOWN", code: 0x3b7fn }, 0n)), ENOTTY);
  const overridden = new FakeKernel({ extensions: { [C.VFIO_UPDATE_VADDR]: 1 } });
  const c2 = overridden.open("/dev/vfio/vfio", 2);
  assert.equal(overridden.ioctlValue(c2, I.VFIO_CHECK_EXTENSION, BigInt(C.VFIO_UPDATE_VADDR)), 1);
  teardown(k, g, c);
  teardown(overridden, c2);
});

Deno.test("FakeKernel.ioctl() runs the group state machine", () => {
  const k = new FakeKernel({ groups: [{ id: 26 }, { id: 27, viable: false }] });
  const c = k.open("/dev/vfio/vfio", 2);
  const g = k.open("/dev/vfio/26", 2);
  const status = (fd: number) => {
    const s = encodeGroupStatus();
    k.ioctl(fd, I.VFIO_GROUP_GET_STATUS, s);
    return decodeGroupStatus(s).flags;
  };
  assert.equal(status(g), C.VFIO_GROUP_FLAGS_VIABLE);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array())), EINVAL);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(4242))), EBADF);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(g))), EINVAL);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV))), EINVAL);
  k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(c));
  assert.equal(status(g), C.VFIO_GROUP_FLAGS_VIABLE | C.VFIO_GROUP_FLAGS_CONTAINER_SET);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(c))), EINVAL);
  // Container set but no IOMMU: GET_DEVICE_FD still EINVAL; unknown names ENODEV first.
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV))), EINVAL);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr("nope"))), ENODEV);
  const g27 = k.open("/dev/vfio/27", 2);
  assert.equal(status(g27), 0);
  assert.equal(errnoOf(() => k.ioctl(g27, I.VFIO_GROUP_SET_CONTAINER, int32(c))), EPERM);
  assert.equal(
    errnoOf(() => k.ioctl(g, I.VFIO_DEVICE_GET_INFO, encodeDeviceInfoRequest())),
    ENOTTY,
  );
  teardown(k, g27, g, c);
});

Deno.test("FakeKernel.ioctl() refuses UNSET_CONTAINER while a device fd is open", () => {
  const { k, c, g } = setup();
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  assert.ok(d >= 1000);
  assert.deepEqual(k.openFdDescriptions(), [`container ${c}`, "group 26", `device ${DEV}`]);
  assert.equal(errnoOf(() => k.ioctl(g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array())), EBUSY);
  // The device fd holds the group file: closing the group fd keeps it open.
  k.close(g);
  assert.equal(errnoOf(() => k.open("/dev/vfio/26", 2)), EBUSY);
  k.close(d);
  const g2 = k.open("/dev/vfio/26", 2);
  const s = encodeGroupStatus();
  k.ioctl(g2, I.VFIO_GROUP_GET_STATUS, s);
  assert.equal(decodeGroupStatus(s).flags, C.VFIO_GROUP_FLAGS_VIABLE);
  teardown(k, g2, c);
});

Deno.test("FakeKernel.ioctl() lays out VFIO_IOMMU_GET_INFO as observed", () => {
  const { k, c, g } = setup();
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_GET_INFO, encodeIommuInfoRequest(8))), EINVAL);
  for (const argsz of [16, 24]) {
    const buf = encodeIommuInfoRequest(argsz);
    buf.fill(0xaa, 20); // tail padding: never written
    k.ioctl(c, I.VFIO_IOMMU_GET_INFO, buf);
    const v = new DataView(buf.buffer);
    assert.equal(readArgsz(buf), 116);
    assert.equal(v.getUint32(4, true), C.VFIO_IOMMU_INFO_PGSIZES | C.VFIO_IOMMU_INFO_CAPS);
    assert.equal(v.getBigUint64(8, true), 0x40201000n);
    if (argsz === 24) assert.equal(v.getUint32(16, true), 0);
    assert.deepEqual([...buf.subarray(20)], [0xaa, 0xaa, 0xaa, 0xaa]);
  }
  const buf = encodeIommuInfoRequest(116);
  k.ioctl(c, I.VFIO_IOMMU_GET_INFO, buf);
  const v = new DataView(buf.buffer);
  assert.equal(v.getUint32(16, true), 24);
  assert.deepEqual([v.getUint16(24, true), v.getUint32(28, true)], [
    C.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
    56,
  ]);
  assert.deepEqual([v.getUint16(56, true), v.getUint32(60, true)], [
    C.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
    68,
  ]);
  assert.deepEqual([v.getUint16(68, true), v.getUint32(72, true)], [
    C.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    0,
  ]);
  const info = decodeIommuInfo(buf);
  assert.deepEqual(info.migration, {
    flags: 0,
    pgsizeBitmap: 0x1000n,
    maxDirtyBitmapSize: 0x10000000n,
  });
  assert.equal(info.dmaAvail, 65535);
  assert.deepEqual(info.iovaRanges, [{ start: 0n, end: 0xfedfffffn }, {
    start: 0xfef00000n,
    end: 0x7fffffffffn,
  }]);
  const mem = anon(k, MiB);
  map(k, c, 0n, MiB, mem);
  const again = encodeIommuInfoRequest(116);
  k.ioctl(c, I.VFIO_IOMMU_GET_INFO, again);
  assert.equal(decodeIommuInfo(again).dmaAvail, 65534);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() applies every VFIO_IOMMU_MAP_DMA rule", () => {
  const { k, c, g } = setup({ dmaEntryLimit: 2 });
  const mem = anon(k, 4n * MiB);
  const bad = (m: Uint8Array) => errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_MAP_DMA, m));
  const req = (o: Partial<{ flags: number; vaddr: bigint; iova: bigint; size: bigint }>) =>
    encodeDmaMap({ flags: RW, vaddr: mem, iova: 0x100000n, size: MiB, ...o });
  const short = req({});
  new DataView(short.buffer).setUint32(0, 31, true);
  assert.equal(bad(short), EINVAL);
  assert.equal(bad(req({ flags: RW | 0x8 })), EINVAL);
  assert.equal(bad(req({ flags: C.VFIO_DMA_MAP_FLAG_VADDR })), EINVAL); // UPDATE_VADDR disabled
  assert.equal(bad(req({ flags: 0 })), EINVAL);
  assert.equal(bad(req({ size: 0n })), EINVAL);
  assert.equal(bad(req({ iova: 0x100800n })), EINVAL);
  assert.equal(bad(req({ size: MiB + 0x800n })), EINVAL);
  assert.equal(bad(req({ vaddr: mem + 0x800n })), EINVAL);
  assert.equal(bad(req({ iova: 0xffff_ffff_ffff_f000n, size: 0x2000n })), EINVAL); // wrap
  assert.equal(bad(req({ iova: 0xfee00000n, size: PAGE })), EINVAL); // MSI hole
  assert.equal(bad(req({ iova: 0x80_0000_0000n, size: PAGE })), EINVAL); // beyond the ranges
  assert.equal(bad(req({ vaddr: 0n })), EFAULT);
  assert.equal(bad(req({ vaddr: 0x7fff_0000_0000n })), EFAULT); // not mapped here
  assert.equal(map(k, c, 0x100000n, MiB, mem), 0);
  assert.equal(bad(req({ iova: 0x180000n })), EEXIST);
  assert.equal(map(k, c, 0x200000n, MiB, mem + MiB, C.VFIO_DMA_MAP_FLAG_READ), 0);
  assert.equal(bad(req({ iova: 0x400000n })), ENOSPC);
  assert.equal(k.dmaMappings, 2);
  k.munmap(mem, 4n * MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() applies the VFIO_IOMMU_UNMAP_DMA rules", () => {
  const { k, c, g } = setup();
  const mem = anon(k, 4n * MiB);
  map(k, c, 0x100000n, MiB, mem);
  map(k, c, 0x200000n, MiB, mem + MiB);
  const unmap = (iova: bigint, size: bigint, flags = 0) => {
    const u = encodeDmaUnmap({ flags, iova, size });
    k.ioctl(c, I.VFIO_IOMMU_UNMAP_DMA, u);
    return decodeDmaUnmap(u).size;
  };
  const short = encodeDmaUnmap({ flags: 0, iova: 0n, size: PAGE });
  new DataView(short.buffer).setUint32(0, 23, true);
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_UNMAP_DMA, short)), EINVAL);
  assert.equal(errnoOf(() => unmap(0x100000n, PAGE, 0x8)), EINVAL);
  assert.equal(errnoOf(() => unmap(0x100800n, PAGE)), EINVAL);
  assert.equal(errnoOf(() => unmap(0x100000n, 0n)), EINVAL);
  assert.equal(errnoOf(() => unmap(0x100000n, 0x800n)), EINVAL);
  assert.equal(errnoOf(() => unmap(0x180000n, MiB)), EINVAL); // bisects the first mapping
  assert.equal(errnoOf(() => unmap(0x100000n, MiB / 2n)), EINVAL);
  assert.equal(errnoOf(() => unmap(PAGE, 0n, C.VFIO_DMA_UNMAP_FLAG_ALL)), EINVAL);
  assert.equal(unmap(0x800000n, MiB), 0n); // nothing there
  assert.equal(unmap(0x100000n, 2n * MiB), 2n * MiB);
  assert.equal(k.dmaMappings, 0);
  map(k, c, 0x100000n, MiB, mem);
  map(k, c, 0x300000n, MiB, mem + MiB);
  assert.equal(unmap(0n, 0n, C.VFIO_DMA_UNMAP_FLAG_ALL), 2n * MiB);
  k.munmap(mem, 4n * MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() keeps type1 v1 unmap semantics", () => {
  const { k, c, g } = setup({}, C.VFIO_TYPE1_IOMMU);
  const mem = anon(k, MiB);
  map(k, c, 0x100000n, MiB, mem);
  const u = encodeDmaUnmap({ flags: 0, iova: 0x180000n, size: PAGE });
  k.ioctl(c, I.VFIO_IOMMU_UNMAP_DMA, u);
  assert.equal(decodeDmaUnmap(u).size, 0n); // offset into a mapping: success, nothing unmapped
  const whole = encodeDmaUnmap({ flags: 0, iova: 0x100000n, size: PAGE });
  k.ioctl(c, I.VFIO_IOMMU_UNMAP_DMA, whole);
  assert.equal(decodeDmaUnmap(whole).size, MiB); // covering the first iova unmaps it all
  assert.equal(errnoOf(() => dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)), EACCES);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() applies every VFIO_IOMMU_DIRTY_PAGES rule", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  const bm = anon(k, PAGE);
  const view = hostView(bm, 4096);
  map(k, c, 0x100000n, MiB, mem);
  const bad = errnoOf;
  const F = C;
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 32n)), EINVAL); // before START
  const four = encodeDirtyPages({ flags: F.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  new DataView(four.buffer).setUint32(0, 4, true);
  assert.equal(bad(() => k.ioctl(c, I.VFIO_IOMMU_DIRTY_PAGES, four)), EINVAL);
  assert.equal(bad(() => dirty(k, c, 0x8)), EINVAL);
  assert.equal(bad(() => dirty(k, c, 0)), EINVAL);
  assert.equal(
    bad(() =>
      dirty(k, c, F.VFIO_IOMMU_DIRTY_PAGES_FLAG_START | F.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)
    ),
    EINVAL,
  );
  assert.equal(
    bad(() =>
      dirty(k, c, F.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP | F.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)
    ),
    EINVAL,
  );
  assert.equal(dirty(k, c, F.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP), 0); // stop while stopped
  assert.equal(dirty(k, c, F.VFIO_IOMMU_DIRTY_PAGES_FLAG_START), 0);
  assert.equal(dirty(k, c, F.VFIO_IOMMU_DIRTY_PAGES_FLAG_START), 0); // idempotent
  const getOnly = encodeDirtyPages({ flags: F.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP });
  assert.equal(bad(() => k.ioctl(c, I.VFIO_IOMMU_DIRTY_PAGES, getOnly)), EINVAL); // argsz 8
  assert.equal(bad(() => getBitmap(k, c, 0xffff_ffff_ffff_f000n, 0x2000n, bm, 8n)), EINVAL); // wrap
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, 0xffff_8000_0000_0000n, 32n)), EINVAL); // kernel address
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 32n, 8192n)), EINVAL);
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 32n, 2n * MiB)), EINVAL);
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 16n)), EINVAL); // too small
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 0n)), EINVAL);
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 0x10000008n)), EINVAL); // > max
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, 0n, bm, 8n)), EINVAL);
  assert.equal(bad(() => getBitmap(k, c, 0x100800n, MiB, bm, 32n)), EINVAL);
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB / 2n, bm, 32n)), EINVAL); // ends inside
  assert.equal(bad(() => getBitmap(k, c, 0x180000n, MiB, bm, 32n)), EINVAL); // starts inside
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, 0n, 32n)), EFAULT);
  view.fill(0);
  assert.equal(getBitmap(k, c, 0x400000n, MiB, bm, 32n), 0); // nothing mapped: untouched
  view.fill(0x5a, 0, 32);
  getBitmap(k, c, 0x400000n, MiB, bm, 32n);
  assert.deepEqual([...view.subarray(0, 32)], new Array(32).fill(0x5a));
  view.fill(0);
  assert.equal(getBitmap(k, c, 0x100000n, 2n * MiB, bm, 64n), 0); // runs past the mapping
  assert.equal(countBits(view.subarray(0, 32)), 256);
  assert.equal(countBits(view.subarray(32, 64)), 0);
  assert.equal(dirty(k, c, F.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP), 0);
  assert.equal(bad(() => getBitmap(k, c, 0x100000n, MiB, bm, 32n)), EINVAL);
  k.munmap(bm, PAGE);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() reports every mapped page dirty in the all-mapped scope", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  const bm = anon(k, PAGE);
  const view = hostView(bm, 32);
  map(k, c, 0x100000n, MiB, mem);
  dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  assert.equal(k.dirtyScope(c), "all-mapped");
  for (let i = 0; i < 2; i++) {
    view.fill(0);
    getBitmap(k, c, 0x100000n, MiB, bm, 32n);
    assert.equal(countBits(view), 256);
  }
  k.munmap(bm, PAGE);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.pin() narrows the dirty scope to pinned pages", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  const bm = anon(k, PAGE);
  const view = hostView(bm, 32);
  map(k, c, 0x100000n, MiB, mem);
  dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  assert.throws(() => k.pin(26, 0x900000n, PAGE), RangeError);
  assert.throws(() => k.pin(99, 0x100000n, PAGE), TypeError);
  k.pin(26, 0x100000n + 2n * PAGE, 2n * PAGE);
  assert.equal(k.dirtyScope(c), "precise");
  const read = () => {
    view.fill(0);
    getBitmap(k, c, 0x100000n, MiB, bm, 32n);
    return view[0];
  };
  assert.equal(read(), 0b1100);
  k.unpin(26, 0x100000n + 3n * PAGE, PAGE);
  assert.equal(read(), 0b1100); // an unpinned page stays dirty until the next read
  assert.equal(read(), 0b0100); // re-seeded with the pages still pinned
  assert.equal(read(), 0b0100); // pinned pages stay dirty
  k.munmap(bm, PAGE);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() places bits with the kernel's OR semantics", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  const bm = anon(k, PAGE);
  const words = new BigUint64Array(hostView(bm, 16).buffer);
  // Two mappings: pages 0-1 and pages 3-4 relative to the request iova.
  map(k, c, 0x100000n, 2n * PAGE, mem);
  map(k, c, 0x100000n + 3n * PAGE, 2n * PAGE, mem + 3n * PAGE);
  dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  words[0] = 0n;
  getBitmap(k, c, 0x100000n, 5n * PAGE, bm, 8n);
  assert.equal(words[0], 0b11011n);
  // The second mapping is not word aligned: its word is read back and ORed.
  words[0] = 1n << 40n;
  getBitmap(k, c, 0x100000n, 5n * PAGE, bm, 8n);
  // The first mapping is word aligned (shift 0): its word is overwritten, then
  // the second mapping ORs into it, so the stale bit 40 is gone.
  assert.equal(words[0], 0b11011n);
  words[0] = 1n << 40n;
  getBitmap(k, c, 0x100000n + 3n * PAGE, 2n * PAGE, bm, 8n);
  assert.equal(words[0], 0b11n); // shift 0: overwritten
  k.munmap(bm, PAGE);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() ORs into the user's word when a mapping starts mid-word", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  const bm = anon(k, PAGE);
  const words = new BigUint64Array(hostView(bm, 16).buffer);
  map(k, c, 0x100000n + PAGE, 2n * PAGE, mem);
  dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  words[0] = (1n << 40n) | 1n; // bits the user left set
  getBitmap(k, c, 0x100000n, 3n * PAGE, bm, 8n);
  assert.equal(words[0], (1n << 40n) | 0b111n);
  k.munmap(bm, PAGE);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.ioctl() returns the dirty bitmap with UNMAP_DMA", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  const bm = anon(k, PAGE);
  const view = hostView(bm, 32);
  map(k, c, 0x100000n, MiB, mem);
  const unmap = (
    o: {
      iova?: bigint;
      size?: bigint;
      flags?: number;
      pgsize?: bigint;
      bytes?: bigint;
      data?: bigint;
    },
  ) => {
    const u = encodeDmaUnmap({
      flags: o.flags ?? C.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
      iova: o.iova ?? 0x100000n,
      size: o.size ?? MiB,
      bitmap: { pgsize: o.pgsize ?? PAGE, size: o.bytes ?? 32n, data: o.data ?? bm },
    });
    k.ioctl(c, I.VFIO_IOMMU_UNMAP_DMA, u);
    return decodeDmaUnmap(u).size;
  };
  assert.equal(errnoOf(() => unmap({})), EINVAL); // not tracking
  dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  const both = C.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | C.VFIO_DMA_UNMAP_FLAG_ALL;
  assert.equal(errnoOf(() => unmap({ flags: both })), EINVAL);
  const short = encodeDmaUnmap({
    flags: C.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
    iova: 0x100000n,
    size: MiB,
  });
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_UNMAP_DMA, short)), EINVAL); // argsz 24
  assert.equal(errnoOf(() => unmap({ bytes: 0n })), EINVAL);
  assert.equal(errnoOf(() => unmap({ bytes: 16n })), EINVAL);
  assert.equal(errnoOf(() => unmap({ pgsize: 8192n })), EINVAL);
  assert.equal(errnoOf(() => unmap({ iova: 0x100800n })), EINVAL);
  assert.equal(errnoOf(() => unmap({ data: 0x0000_8000_0000_0000n })), EINVAL);
  assert.equal(errnoOf(() => unmap({ size: MiB / 2n })), EINVAL); // bisects
  assert.equal(errnoOf(() => unmap({ data: 0n })), EFAULT);
  assert.equal(k.dmaMappings, 1); // the EFAULT left the mapping (the first copy failed)
  view.fill(0);
  assert.equal(unmap({}), MiB);
  assert.equal(countBits(view), 256);
  assert.equal(k.dmaMappings, 0);
  k.munmap(bm, PAGE);
  k.munmap(mem, MiB);
  teardown(k, g, c);
});

Deno.test("FakeKernel.close() releases the IOMMU when the last group leaves", () => {
  const { k, c, g } = setup();
  const mem = anon(k, MiB);
  map(k, c, 0x100000n, MiB, mem);
  dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  k.ioctl(g, I.VFIO_GROUP_UNSET_CONTAINER, new Uint8Array());
  assert.equal(k.dmaMappings, 0);
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_GET_INFO, encodeIommuInfoRequest())), EINVAL);
  k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(c));
  k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n);
  map(k, c, 0x100000n, MiB, mem);
  k.close(g); // closing the group fd detaches it too
  assert.equal(k.dmaMappings, 0);
  k.munmap(mem, MiB);
  teardown(k, c);
});

Deno.test("FakeKernel() models the iommufd compat container and old kernels", () => {
  const { k, c, g } = setup({ iommufdCompat: true });
  assert.equal(errnoOf(() => dirty(k, c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)), ENOTTY);
  const buf = encodeIommuInfoRequest(128);
  k.ioctl(c, I.VFIO_IOMMU_GET_INFO, buf);
  const info = decodeIommuInfo(buf);
  assert.equal(info.migration, undefined);
  assert.equal(info.dmaAvail, 0xffff_ffff);
  assert.equal(info.iovaRanges.length, 2);
  teardown(k, g, c);
  const old = setup({ migrationCap: null });
  assert.equal(errnoOf(() => dirty(old.k, old.c, C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)), ENOTTY);
  teardown(old.k, old.g, old.c);
});

Deno.test("FakeKernel.ioctl() dispatches 0x3b75 by fd type, not by name", () => {
  const { k, c, g } = setup();
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  // DIRTY_PAGES' number on the device fd is DEVICE_FEATURE: edu has no migration.
  const probe = encodeDeviceFeature(
    C.VFIO_DEVICE_FEATURE_PROBE | C.VFIO_DEVICE_FEATURE_MIGRATION,
    new Uint8Array(8),
  );
  assert.equal(errnoOf(() => k.ioctl(d, I.VFIO_IOMMU_DIRTY_PAGES, probe)), ENOTTY);
  const both = encodeDeviceFeature(
    C.VFIO_DEVICE_FEATURE_GET | C.VFIO_DEVICE_FEATURE_SET | 1,
    new Uint8Array(8),
  );
  assert.equal(errnoOf(() => k.ioctl(d, I.VFIO_DEVICE_FEATURE, both)), EINVAL);
  assert.equal(
    errnoOf(() =>
      k.ioctl(d, I.VFIO_DEVICE_FEATURE, encodeDeviceFeature(1 << 20, new Uint8Array()))
    ),
    EINVAL,
  );
  // ...and DEVICE_FEATURE's number on the container is DIRTY_PAGES.
  assert.equal(
    k.ioctl(
      c,
      I.VFIO_DEVICE_FEATURE,
      encodeDirtyPages({ flags: C.VFIO_IOMMU_DIRTY_PAGES_FLAG_START }),
    ),
    0,
  );
  const err = assert.throws(
    () => k.ioctl(d, I.VFIO_IOMMU_DIRTY_PAGES, probe),
    IoctlError,
  ) as unknown;
  void err;
  teardown(k, d, g, c);
});

Deno.test("FakeKernel.ioctl() describes an edu device", () => {
  const { k, c, g } = setup();
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  const di = encodeDeviceInfoRequest();
  k.ioctl(d, I.VFIO_DEVICE_GET_INFO, di);
  assert.deepEqual(decodeDeviceInfo(di), {
    flags: C.VFIO_DEVICE_FLAGS_PCI | C.VFIO_DEVICE_FLAGS_RESET,
    numRegions: 9,
    numIrqs: 5,
    capOffset: 0,
  });
  const region = (i: number) => {
    const r = encodeRegionInfoRequest(i);
    k.ioctl(d, I.VFIO_DEVICE_GET_REGION_INFO, r);
    return decodeRegionInfo(r);
  };
  const bar0 = region(0);
  assert.equal(bar0.size, MiB);
  assert.equal(bar0.offset, 0n);
  assert.equal(
    bar0.flags,
    C.VFIO_REGION_INFO_FLAG_READ | C.VFIO_REGION_INFO_FLAG_WRITE | C.VFIO_REGION_INFO_FLAG_MMAP,
  );
  const cfg = region(7);
  assert.deepEqual([cfg.size, cfg.offset, cfg.flags], [256n, 0x70000000000n, 3]);
  assert.deepEqual([region(1).size, region(1).flags], [0n, 0]);
  assert.equal(errnoOf(() => region(9)), EINVAL);
  const irq = (i: number) => {
    const r = encodeIrqInfoRequest(i);
    k.ioctl(d, I.VFIO_DEVICE_GET_IRQ_INFO, r);
    return decodeIrqInfo(r);
  };
  assert.deepEqual(irq(0), { flags: 7, index: 0, count: 1 });
  assert.deepEqual(irq(1), { flags: 9, index: 1, count: 1 });
  assert.equal(errnoOf(() => irq(5)), EINVAL);
  teardown(k, d, g, c);
});

Deno.test("FakeKernel.pread() and pwrite() reach the edu registers and config space", () => {
  const { k, c, g } = setup();
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  const cfg = 0x70000000000n;
  const b4 = new Uint8Array(4);
  const v = new DataView(b4.buffer);
  k.pread(d, b4, cfg);
  assert.deepEqual([v.getUint16(0, true), v.getUint16(2, true)], [0x1234, 0x11e8]);
  k.pread(d, b4, 0n);
  assert.equal(v.getUint32(0, true), 0x010000ed);
  v.setUint32(0, 0x12345678, true);
  k.pwrite(d, b4, 4n);
  k.pread(d, b4, 4n);
  assert.equal(v.getUint32(0, true), ~0x12345678 >>> 0);
  // BAR0 through mmap sees the same bytes.
  const bar = k.mmap(MiB, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0n);
  const mv = new DataView(hostView(bar, 8).buffer);
  assert.equal(mv.getUint32(0, true), 0x010000ed);
  assert.equal(mv.getUint32(4, true), ~0x12345678 >>> 0);
  assert.equal(errnoOf(() => k.mmap(MiB, PROT_READ, MAP_PRIVATE, d, 0n)), EINVAL);
  assert.equal(errnoOf(() => k.mmap(4096n, PROT_READ, MAP_SHARED, d, cfg)), EINVAL);
  assert.equal(errnoOf(() => k.pread(d, b4, MiB)), EINVAL);
  assert.equal(errnoOf(() => k.pread(d, b4, 9n << 40n)), EINVAL);
  assert.equal(errnoOf(() => k.pread(d, b4, 1n << 40n)), EINVAL); // BAR1 is empty
  // Command register: writable, cleared by reset.
  const cmd = new Uint8Array([0x06, 0x00]);
  k.pwrite(d, cmd, cfg + 4n);
  const got = new Uint8Array(2);
  k.pread(d, got, cfg + 4n);
  assert.deepEqual([...got], [6, 0]);
  k.ioctl(d, I.VFIO_DEVICE_RESET, new Uint8Array());
  k.pread(d, got, cfg + 4n);
  assert.deepEqual([...got], [0, 0]);
  k.munmap(bar, MiB);
  teardown(k, d, g, c);
});

Deno.test("FakeKernel.pwrite() runs edu DMA through the IOMMU mappings", () => {
  const { k, c, g } = setup();
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  const mem = anon(k, 2n * PAGE);
  const ram = hostView(mem, 8192);
  map(k, c, 0x10000n, 2n * PAGE, mem);
  k.pwrite(d, new Uint8Array([0x06, 0x00]), 0x70000000004n); // memory + bus master
  const reg = (at: bigint, val: bigint) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, val, true);
    k.pwrite(d, b, at);
  };
  ram.set([1, 2, 3, 4], 0);
  reg(0x80n, 0x10000n); // RAM -> device
  reg(0x88n, 0x40000n);
  reg(0x90n, 4n);
  reg(0x98n, 1n);
  reg(0x80n, 0x40000n); // device -> RAM
  reg(0x88n, 0x11000n);
  reg(0x98n, 3n);
  assert.deepEqual([...ram.subarray(4096, 4100)], [1, 2, 3, 4]);
  reg(0x88n, 0x90000n); // not mapped: the IOMMU blocks it
  reg(0x98n, 3n);
  k.pwrite(d, new Uint8Array([0x02, 0x00]), 0x70000000004n); // bus master off
  reg(0x88n, 0x10008n);
  reg(0x98n, 3n);
  assert.deepEqual([...ram.subarray(8, 12)], [0, 0, 0, 0]);
  k.munmap(mem, 2n * PAGE);
  teardown(k, d, g, c);
});

Deno.test("FakeKernel.failNext() injects errnos without side effects", () => {
  const k = new FakeKernel().failNext("open", EACCES).failNext("VFIO_SET_IOMMU", EPERM, {
    times: 2,
  });
  assert.equal(errnoOf(() => k.open("/dev/vfio/vfio", 2)), EACCES);
  assert.equal(k.openFds, 0);
  const c = k.open("/dev/vfio/vfio", 2);
  const g = k.open("/dev/vfio/26", 2);
  k.ioctl(g, I.VFIO_GROUP_SET_CONTAINER, int32(c));
  assert.throws(() => k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n), IoctlError);
  assert.equal(errnoOf(() => k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n)), EPERM);
  assert.equal(k.ioctlValue(c, I.VFIO_SET_IOMMU, 3n), 0); // nothing was set by the failures
  k.failNext("mmap", ENOSPC).failNext("close", EBADF);
  assert.equal(errnoOf(() => anon(k, PAGE)), ENOSPC);
  assert.equal(k.liveMappings, 0);
  assert.equal(errnoOf(() => k.close(g)), EBADF);
  assert.equal(k.openFds, 2);
  assert.throws(() => k.failNext("open", EACCES, { times: 0 }), RangeError);
  const failed = k.calls.filter((call) => call.errno !== undefined);
  assert.deepEqual(failed.map((call) => [call.syscall, call.name, call.errno]), [
    ["open", "/dev/vfio/vfio", EACCES],
    ["ioctl", "VFIO_SET_IOMMU", EPERM],
    ["ioctl", "VFIO_SET_IOMMU", EPERM],
    ["mmap", undefined, ENOSPC],
    ["close", undefined, EBADF],
  ]);
  k.clearCalls();
  assert.equal(k.calls.length, 0);
  teardown(k, g, c);
  assert.deepEqual(k.calls.map((call) => [call.syscall, call.fd]), [["close", g], ["close", c]]);
});

Deno.test("FakeKernel.ioctlValue() reads structs from real memory", () => {
  const { k, c, g } = setup();
  const mem = anon(k, PAGE);
  const view = hostView(mem, 4096);
  view.set(encodeIommuInfoRequest(116));
  k.ioctlValue(c, I.VFIO_IOMMU_GET_INFO, mem);
  assert.equal(decodeIommuInfo(view.slice(0, 116)).dmaAvail, 65535);
  assert.equal(errnoOf(() => k.ioctlValue(c, I.VFIO_IOMMU_GET_INFO, 0n)), EFAULT);
  k.munmap(mem, PAGE);
  teardown(k, g, c);
});

Deno.test("FakeKernel accounting returns to zero after a full session", () => {
  const { k, c, g } = setup();
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  const mem = anon(k, MiB);
  const bar = k.mmap(MiB, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0n);
  map(k, c, 0n, MiB, mem);
  assert.deepEqual([k.openFds, k.liveMappings, k.dmaMappings], [3, 2, 1]);
  k.munmap(bar, MiB);
  k.close(d);
  k.close(g);
  k.close(c);
  k.munmap(mem, MiB);
  assert.deepEqual([k.openFds, k.liveMappings, k.dmaMappings], [0, 0, 0]);
});

Deno.test("FakeKernel() hands VFIO_DEVICE_FEATURE to a device's feature handler", () => {
  const seen: number[] = [];
  const { k, c, g } = setup({
    groups: [{
      id: 26,
      devices: [{ name: DEV, features: { feature: (_d, flags) => (seen.push(flags), 0) } }],
    }],
  });
  const d = k.ioctl(g, I.VFIO_GROUP_GET_DEVICE_FD, cstr(DEV));
  const flags = C.VFIO_DEVICE_FEATURE_PROBE | C.VFIO_DEVICE_FEATURE_MIGRATION;
  assert.equal(k.ioctl(d, I.VFIO_DEVICE_FEATURE, encodeDeviceFeature(flags, new Uint8Array(8))), 0);
  assert.deepEqual(seen, [flags]);
  teardown(k, d, g, c);
});

Deno.test("FakeKernel.ioctl() faults on struct access past the caller's buffer", () => {
  const { k, c, g } = setup();
  const small = new Uint8Array(24);
  new DataView(small.buffer).setUint32(0, 116, true); // argsz claims more than there is
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_GET_INFO, small)), EFAULT);
  assert.equal(errnoOf(() => k.ioctl(c, I.VFIO_IOMMU_MAP_DMA, new Uint8Array(16))), EFAULT);
  teardown(k, g, c);
});
