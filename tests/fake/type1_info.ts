/**
 * `VFIO_IOMMU_GET_INFO` of the fake type1 IOMMU: the 24-byte info struct and
 * its capability chain (MIGRATION, DMA_AVAIL, IOVA_RANGE, packed back to back
 * from offset 24 as 6.1's `vfio_info_cap_add` does).
 *
 * @module
 */

import { EINVAL } from "../../sys/errno.ts";
import { VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES } from "../../vfio/constants.ts";
import { encodeIommuInfoCaps, type IommuInfoCap } from "../../vfio/uapi/iommu_info.ts";
import type { Type1Iommu } from "./type1.ts";
import { fail, u32, type UserArg } from "./user_memory.ts";

function type1Caps(iommu: Type1Iommu): IommuInfoCap[] {
  const caps: IommuInfoCap[] = [];
  const mig = iommu.config.migrationCap;
  if (mig !== null) {
    caps.push({
      kind: "migration",
      cap: {
        flags: 0,
        pgsizeBitmap: mig.pgsizeBitmap,
        maxDirtyBitmapSize: mig.maxDirtyBitmapSize,
      },
    });
  }
  caps.push({ kind: "dmaAvail", avail: iommu.dmaAvail });
  // An emulated-only container has no iova_list, hence no IOVA_RANGE cap.
  if (iommu.config.iovaRanges.length > 0 && iommu.domains > 0) {
    caps.push({ kind: "iovaRanges", ranges: iommu.config.iovaRanges });
  }
  return caps;
}

// 6.12's vfio_info_cap_add: each cap padded to 8 bytes, `next` relative to
// the info struct.
function alignedCaps(caps: IommuInfoCap[]): Uint8Array {
  const parts = caps.map((c) => {
    const raw = encodeIommuInfoCaps([c]);
    const padded = new Uint8Array(Math.ceil(raw.byteLength / 8) * 8);
    padded.set(raw);
    return padded;
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  parts.forEach((p, i) => {
    out.set(p, at);
    const next = i === parts.length - 1 ? 0 : 24 + at + p.byteLength;
    new DataView(out.buffer).setUint32(at + 4, next, true);
    at += p.byteLength;
  });
  return out;
}

/**
 * `VFIO_IOMMU_GET_INFO` (`vfio_iommu_type1_get_info`, or the iommufd compat
 * variant).
 *
 * @param iommu The IOMMU.
 * @param arg The user argument.
 * @returns 0.
 * @throws {KernelError} `EINVAL` when argsz < 16, `EFAULT` past the caller's memory.
 */
export function getInfo(iommu: Type1Iommu, arg: UserArg): number {
  const head = arg.read(0, 16);
  const argsz = u32(head, 0);
  if (argsz < 16) fail(EINVAL);
  if (iommu.config.iommufdCompat) return getInfoCompat(iommu, arg, argsz);
  // minsz grows to offsetofend(cap_offset) = 20 when the user offers it.
  const minsz = argsz >= 20 ? 20 : 16;
  const info = new Uint8Array(24);
  const v = new DataView(info.buffer);
  info.set(head);
  v.setUint32(4, VFIO_IOMMU_INFO_PGSIZES, true);
  v.setBigUint64(8, iommu.pgsizeBitmap, true);
  const caps = iommu.config.alignInfoCaps
    ? alignedCaps(type1Caps(iommu))
    : encodeIommuInfoCaps(type1Caps(iommu));
  if (caps.byteLength > 0) {
    v.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
    if (argsz < 24 + caps.byteLength) {
      v.setUint32(0, 24 + caps.byteLength, true);
    } else {
      arg.write(24, caps);
      v.setUint32(16, 24, true);
    }
  }
  arg.write(0, info.subarray(0, minsz));
  return 0;
}

// drivers/iommu/iommufd/vfio_compat.c: caps DMA_AVAIL (U32_MAX) then
// IOVA_RANGE, each padded to 8 bytes and written only when it fits; argsz
// always reports the total; min(argsz, 24) bytes are copied back.
function getInfoCompat(iommu: Type1Iommu, arg: UserArg, argsz: number): number {
  const parts = [
    encodeIommuInfoCaps([{ kind: "dmaAvail", avail: 0xffff_ffff }]),
    encodeIommuInfoCaps([{ kind: "iovaRanges", ranges: iommu.config.iovaRanges }]),
  ];
  let total = 24;
  let last = -1;
  for (const part of parts) {
    const padded = new Uint8Array(Math.ceil(part.byteLength / 8) * 8);
    padded.set(part);
    if (argsz >= total + padded.byteLength) arg.write(total, padded);
    if (last >= 0 && argsz >= total) {
      arg.write(last + 4, new Uint8Array(new Uint32Array([total]).buffer));
    }
    last = total;
    total += padded.byteLength;
  }
  const info = new Uint8Array(24);
  const v = new DataView(info.buffer);
  v.setUint32(0, total, true);
  v.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
  v.setBigUint64(8, iommu.config.pgsizeBitmap, true);
  v.setUint32(16, argsz >= total ? 24 : 0, true);
  arg.write(0, info.subarray(0, Math.min(argsz, 24)));
  return 0;
}
