// Reads and checks the stream header against the destination's own page size
// and layout. Fields that decide how to parse (magic, version, region count)
// are checked first, then the CRC, then the match with the destination.

import { crc32 } from "node:zlib";
import type { StreamBuffer } from "./_stream_buffer.ts";
import type { RamRegionLayout } from "./ram.ts";
import { StreamError } from "./error.ts";
import {
  MAX_REGIONS,
  REGION_ENTRY_BYTES,
  STREAM_HEADER_FIXED_BYTES,
  STREAM_MAGIC,
  STREAM_VERSION,
} from "./format.ts";
import { looksLikeTls } from "./_tls_hint.ts";

export async function readStreamHeader(
  buf: StreamBuffer,
  layout: readonly RamRegionLayout[],
  pageSize: number,
): Promise<void> {
  const fixed = (await buf.take(STREAM_HEADER_FIXED_BYTES, "the stream header")).slice();
  const v = new DataView(fixed.buffer);
  if (!STREAM_MAGIC.every((b, i) => fixed[i] === b)) {
    throw new StreamError(
      0,
      looksLikeTls(fixed)
        ? "Bad magic: the peer speaks TLS (a tls: source dialling this plaintext endpoint?)"
        : "Bad magic: not a DVMM-MIG migration stream",
    );
  }
  const version = v.getUint32(8, true);
  if (version !== STREAM_VERSION) {
    throw new StreamError(8, `Unsupported version ${version}, expected ${STREAM_VERSION}`);
  }
  const count = v.getUint32(16, true);
  if (count === 0 || count > MAX_REGIONS) {
    throw new StreamError(16, `Region count ${count} is not in 1 to ${MAX_REGIONS}`);
  }
  if (v.getUint32(20, true) !== 0) throw new StreamError(20, "Reserved header field is not zero");
  const table = await buf.take(count * REGION_ENTRY_BYTES + 4, "the stream header region table");
  const t = new DataView(table.buffer, table.byteOffset, table.length);
  const crc = crc32(table.subarray(0, table.length - 4), crc32(fixed));
  if (crc !== t.getUint32(table.length - 4, true)) {
    throw new StreamError(0, "Stream header checksum mismatch");
  }
  const streamPage = v.getUint32(12, true);
  if (streamPage !== pageSize) {
    throw new StreamError(
      12,
      `Page size mismatch: stream has ${streamPage}, destination has ${pageSize}`,
    );
  }
  if (count !== layout.length) {
    throw new StreamError(
      16,
      `Layout mismatch: stream has ${count} regions, destination has ${layout.length}`,
    );
  }
  for (let i = 0; i < count; i++) {
    const gpa = t.getBigUint64(i * REGION_ENTRY_BYTES, true);
    const size = t.getBigUint64(i * REGION_ENTRY_BYTES + 8, true);
    const own = layout[i];
    if (gpa !== own.gpa || size !== own.size) {
      throw new StreamError(
        STREAM_HEADER_FIXED_BYTES + i * REGION_ENTRY_BYTES,
        `Layout mismatch: region ${i} is 0x${size.toString(16)} bytes at GPA 0x${
          gpa.toString(16)
        } in the stream, 0x${own.size.toString(16)} at 0x${own.gpa.toString(16)} here`,
      );
    }
  }
}
