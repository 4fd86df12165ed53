/**
 * Codecs for the VFIO cdev structs (`linux/vfio.h`, 6.12):
 * `struct vfio_device_bind_iommufd`, `vfio_device_attach_iommufd_pt`,
 * `vfio_device_detach_iommufd_pt`. These start with `argsz`; the codecs fill it.
 *
 * @module
 */

/** `sizeof(struct vfio_device_bind_iommufd)`. */
export const VFIO_DEVICE_BIND_IOMMUFD_SIZE = 16;
/** `sizeof(struct vfio_device_attach_iommufd_pt)`. */
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT_SIZE = 12;
/** `sizeof(struct vfio_device_detach_iommufd_pt)`. */
export const VFIO_DEVICE_DETACH_IOMMUFD_PT_SIZE = 8;

function sized(size: number): { buf: Uint8Array; v: DataView } {
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  v.setUint32(0, size, true);
  return { buf, v };
}

/**
 * Encodes `struct vfio_device_bind_iommufd` (flags 0).
 *
 * @param iommufd The `/dev/iommu` fd.
 * @returns The struct; the kernel writes `out_devid` at offset 12.
 *
 * @example
 * ```ts
 * import { decodeBindDevId, encodeBindIommufd } from "./vfio_cdev.ts";
 * console.log(decodeBindDevId(encodeBindIommufd(5))); // 0
 * ```
 */
export function encodeBindIommufd(iommufd: number): Uint8Array {
  const { buf, v } = sized(VFIO_DEVICE_BIND_IOMMUFD_SIZE);
  v.setInt32(8, iommufd, true);
  return buf;
}

/**
 * Reads `out_devid` from a `VFIO_DEVICE_BIND_IOMMUFD` reply.
 *
 * @param buf The reply.
 * @returns The iommufd device id.
 */
export function decodeBindDevId(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(12, true);
}

/**
 * Encodes `struct vfio_device_attach_iommufd_pt` (flags 0).
 *
 * @param ptId An IOAS or HWPT id.
 * @returns The struct; the kernel writes the attached HWPT's id back into `pt_id` (offset 8).
 *
 * @example
 * ```ts
 * import { decodeAttachPtId, encodeAttachIommufdPt } from "./vfio_cdev.ts";
 * console.log(decodeAttachPtId(encodeAttachIommufdPt(2))); // 2
 * ```
 */
export function encodeAttachIommufdPt(ptId: number): Uint8Array {
  const { buf, v } = sized(VFIO_DEVICE_ATTACH_IOMMUFD_PT_SIZE);
  v.setUint32(8, ptId, true);
  return buf;
}

/**
 * Reads `pt_id` from a `VFIO_DEVICE_ATTACH_IOMMUFD_PT` reply.
 *
 * @param buf The reply.
 * @returns The HWPT the device is attached to.
 */
export function decodeAttachPtId(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(8, true);
}

/**
 * Encodes `struct vfio_device_detach_iommufd_pt` (flags 0).
 *
 * @returns The struct.
 *
 * @example
 * ```ts
 * import { encodeDetachIommufdPt } from "./vfio_cdev.ts";
 * console.log(encodeDetachIommufdPt().byteLength); // 8
 * ```
 */
export function encodeDetachIommufdPt(): Uint8Array {
  return sized(VFIO_DEVICE_DETACH_IOMMUFD_PT_SIZE).buf;
}
