// The kernel's iommufd selftest interface (drivers/iommu/iommufd/iommufd_test.h,
// 6.12, CONFIG_IOMMUFD_TEST): IOMMU_TEST_CMD on the /dev/iommu fd creates mock
// devices on a mock IOMMU (the only IOMMU with dirty tracking under TCG) and
// plays their DMA writes (IOMMU_TEST_OP_DIRTY). Test-only: the tests use it to
// stand in for a device, and the project's public iommufd API for the rest.
import { iommufdIo } from "../../../vfio/iommufd/ioctls.ts";
import type { Iommufd } from "../../../vfio/iommufd/iommufd.ts";

/** `IOMMU_TEST_CMD = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)`. */
export const IOMMU_TEST_CMD = iommufdIo("IOMMU_TEST_CMD", 0x80 + 32);
/** `sizeof(struct iommu_test_cmd)`. */
export const IOMMU_TEST_CMD_SIZE = 72;
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
export const IOMMU_TEST_OP_DIRTY = 13;
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
/** `MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2`: the page size IOMMU_TEST_OP_DIRTY indexes by. */
export const MOCK_IO_PAGE_SIZE = 2048n;

function cmd(op: number, id: number): { buf: Uint8Array; v: DataView } {
  const buf = new Uint8Array(IOMMU_TEST_CMD_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, IOMMU_TEST_CMD_SIZE, true);
  v.setUint32(4, op, true);
  v.setUint32(8, id, true);
  return { buf, v };
}

/** A mock device bound to the iommufd and attached to a page table. */
export interface MockDevice extends Disposable {
  /** The selftest device object (`out_stdev_id`); destroying it unbinds the device. */
  readonly stdevId: number;
  /** The HWPT it is attached to (`out_hwpt_id`). */
  readonly hwptId: number;
  /** The device's iommufd id (`out_idev_id`), as for a bound VFIO device. */
  readonly devId: number;
  /** Re-attaches it to another IOAS or HWPT (`IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`). */
  replace(ptId: number): void;
}

/**
 * Creates a mock device attached to `ptId` (an IOAS or HWPT):
 * `IOMMU_TEST_OP_MOCK_DOMAIN`, or `_FLAGS` with device flags.
 */
export function mockDevice(iommufd: Iommufd, ptId: number, devFlags = 0): MockDevice {
  const op = devFlags === 0 ? IOMMU_TEST_OP_MOCK_DOMAIN : IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS;
  const { buf, v } = cmd(op, ptId);
  if (devFlags !== 0) v.setUint32(28, devFlags, true);
  iommufd.syscalls.ioctl(iommufd.unsafeFd, IOMMU_TEST_CMD, buf);
  const stdevId = v.getUint32(16, true);
  let live = true;
  return {
    stdevId,
    hwptId: v.getUint32(20, true),
    devId: v.getUint32(24, true),
    replace(pt: number) {
      const r = cmd(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdevId);
      r.v.setUint32(16, pt, true);
      iommufd.syscalls.ioctl(iommufd.unsafeFd, IOMMU_TEST_CMD, r.buf);
    },
    [Symbol.dispose]() {
      if (!live || iommufd.closed) return;
      live = false;
      iommufd.destroy(stdevId);
    },
  };
}

/**
 * Plays the mock device's DMA writes (`IOMMU_TEST_OP_DIRTY`): bit i of
 * `bitmap` dirties the 2 KiB mock page at `iova + i * 2048`. Dirty tracking
 * must be enabled on the HWPT. `bitmap` must not move: pass mmap'd memory.
 *
 * @returns `out_nr_dirty`: how many of those pages were mapped and got dirtied.
 */
export function mockDmaWrite(
  iommufd: Iommufd,
  hwptId: number,
  range: { iova: bigint; length: bigint; bitmap: bigint },
): number {
  const { buf, v } = cmd(IOMMU_TEST_OP_DIRTY, hwptId);
  v.setBigUint64(24, range.iova, true);
  v.setBigUint64(32, range.length, true);
  v.setBigUint64(40, MOCK_IO_PAGE_SIZE, true);
  v.setBigUint64(48, range.bitmap, true);
  iommufd.syscalls.ioctl(iommufd.unsafeFd, IOMMU_TEST_CMD, buf);
  return Number(v.getBigUint64(56, true));
}
