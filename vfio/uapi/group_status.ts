/**
 * Codec for `struct vfio_group_status`.
 *
 * @module
 */

/** `sizeof(struct vfio_group_status)`. */
export const GROUP_STATUS_SIZE = 8;

/**
 * Encodes a `VFIO_GROUP_GET_STATUS` request.
 *
 * @returns 8 bytes with `argsz` set.
 *
 * @example
 * ```ts
 * import { encodeGroupStatus } from "./group_status.ts";
 * console.log(encodeGroupStatus().byteLength); // 8
 * ```
 */
export function encodeGroupStatus(): Uint8Array {
  const buf = new Uint8Array(GROUP_STATUS_SIZE);
  new DataView(buf.buffer).setUint32(0, GROUP_STATUS_SIZE, true);
  return buf;
}

/**
 * Decodes a `VFIO_GROUP_GET_STATUS` reply.
 *
 * @param buf The reply.
 * @returns `argsz` and `flags` (`VFIO_GROUP_FLAGS_*`).
 *
 * @example
 * ```ts
 * import { decodeGroupStatus, encodeGroupStatus } from "./group_status.ts";
 * console.log(decodeGroupStatus(encodeGroupStatus()).flags); // 0
 * ```
 */
export function decodeGroupStatus(buf: Uint8Array): { argsz: number; flags: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return { argsz: v.getUint32(0, true), flags: v.getUint32(4, true) };
}
