/**
 * The parallel-channel hello: the first bytes a source writes on each extra
 * connection of a migration (`channels` > 1), and the nonce answer the
 * destination gives on the main connection that lets those connections in.
 * See `STREAM.md`, "Parallel channels".
 *
 * Nonce answer (28 bytes): magic `DVMC` (4), version u32 (`1`), nonce (16
 * bytes), CRC-32 of bytes [0, 24).
 *
 * Hello (48 bytes, little-endian): magic `DVMM-CHN` (8), version u32 (`1`),
 * channel index u32 (0 to count - 1), channel count u32 (2 to 64), page size
 * u32, nonce (16 bytes), reserved u32 (`0`), CRC-32 of bytes [0, 44).
 *
 * @module
 */

import { crc32 } from "node:zlib";

/** The first 8 bytes of every channel hello: `DVMM-CHN`. */
export const CHANNEL_MAGIC: Uint8Array = new TextEncoder().encode("DVMM-CHN");
/** The hello version this module writes and reads. */
export const CHANNEL_HELLO_VERSION = 1;
/** Bytes of a channel hello. */
export const CHANNEL_HELLO_BYTES = 48;
/** Bytes of the per-migration nonce. */
export const CHANNEL_NONCE_BYTES = 16;
/** Most parallel channels a migration may have. */
export const MAX_CHANNELS = 64;

/** The first 4 bytes of the destination's nonce answer: `DVMC`. */
export const CHANNEL_NONCE_MAGIC: Uint8Array = new TextEncoder().encode("DVMC");
/** Bytes of the nonce answer. */
export const CHANNEL_NONCE_ANSWER_BYTES = 28;

/**
 * Encodes the destination's nonce answer, written on the main connection
 * once it accepted the stream header.
 *
 * @param nonce The 16-byte nonce.
 * @returns The 28 bytes.
 * @throws {RangeError} If the nonce is not 16 bytes.
 *
 * @example
 * ```ts
 * import { decodeChannelNonce, encodeChannelNonce } from "./channel_hello.ts";
 * const nonce = new Uint8Array(16).fill(9);
 * console.log(decodeChannelNonce(encodeChannelNonce(nonce))[0]); // 9
 * ```
 */
export function encodeChannelNonce(nonce: Uint8Array): Uint8Array {
  if (nonce.length !== CHANNEL_NONCE_BYTES) {
    throw new RangeError(`Cannot encode a channel nonce of ${nonce.length} bytes`);
  }
  const out = new Uint8Array(CHANNEL_NONCE_ANSWER_BYTES);
  const v = new DataView(out.buffer);
  out.set(CHANNEL_NONCE_MAGIC, 0);
  v.setUint32(4, CHANNEL_HELLO_VERSION, true);
  out.set(nonce, 8);
  v.setUint32(24, crc32(out.subarray(0, 24)), true);
  return out;
}

/**
 * Decodes and checks the destination's nonce answer.
 *
 * @param bytes The 28 bytes read from the main connection.
 * @returns The nonce.
 * @throws {RangeError} Naming the field at fault.
 *
 * @example
 * ```ts
 * import { decodeChannelNonce } from "./channel_hello.ts";
 * try {
 *   decodeChannelNonce(new Uint8Array(28));
 * } catch (e) {
 *   console.log((e as Error).message); // Channel nonce answer has a bad magic
 * }
 * ```
 */
export function decodeChannelNonce(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== CHANNEL_NONCE_ANSWER_BYTES) {
    throw new RangeError(`Channel nonce answer has ${bytes.length} bytes, expected 28`);
  }
  if (!CHANNEL_NONCE_MAGIC.every((b, i) => bytes[i] === b)) {
    throw new RangeError("Channel nonce answer has a bad magic");
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = v.getUint32(4, true);
  if (version !== CHANNEL_HELLO_VERSION) {
    throw new RangeError(`Channel nonce answer has unsupported version ${version}`);
  }
  if (v.getUint32(24, true) !== crc32(bytes.subarray(0, 24))) {
    throw new RangeError("Channel nonce answer checksum mismatch");
  }
  return bytes.slice(8, 24);
}

/** What a channel hello says. */
export interface ChannelHello {
  /** This connection's channel, 0 to `count` - 1. */
  readonly index: number;
  /** How many parallel channels the migration has (2 to 64). */
  readonly count: number;
  /** The page size of the stream. */
  readonly pageSize: number;
  /** The nonce the destination gave on the main connection. */
  readonly nonce: Uint8Array;
}

/**
 * Checks a channel count: an integer from 1 (no extra connection) to
 * {@linkcode MAX_CHANNELS}.
 *
 * @param channels The count.
 * @param what Who asks, for the message (`migrate`, `--channels`).
 * @returns The count.
 * @throws {RangeError} If the count is out of range.
 *
 * @example
 * ```ts
 * import { checkChannelCount } from "./channel_hello.ts";
 * console.log(checkChannelCount(4, "--channels")); // 4
 * ```
 */
export function checkChannelCount(channels: number, what: string): number {
  if (!Number.isInteger(channels) || channels < 1 || channels > MAX_CHANNELS) {
    throw new RangeError(
      `Cannot use ${channels} channels for ${what}: expected an integer 1 to ${MAX_CHANNELS}`,
    );
  }
  return channels;
}

/**
 * Encodes a channel hello.
 *
 * @param hello Index, count, page size and nonce.
 * @returns The 48 bytes.
 * @throws {RangeError} If a field is out of range.
 *
 * @example
 * ```ts
 * import { decodeChannelHello, encodeChannelHello } from "./channel_hello.ts";
 * const nonce = new Uint8Array(16).fill(7);
 * const bytes = encodeChannelHello({ index: 1, count: 2, pageSize: 4096, nonce });
 * console.log(decodeChannelHello(bytes).index); // 1
 * ```
 */
export function encodeChannelHello(hello: ChannelHello): Uint8Array {
  const { index, count, pageSize, nonce } = hello;
  if (count < 2 || count > MAX_CHANNELS || !Number.isInteger(count)) {
    throw new RangeError(`Cannot encode a channel hello: count ${count} is not in 2 to 64`);
  }
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new RangeError(`Cannot encode a channel hello: index ${index} is not below ${count}`);
  }
  if (nonce.length !== CHANNEL_NONCE_BYTES) {
    throw new RangeError(`Cannot encode a channel hello: nonce has ${nonce.length} bytes`);
  }
  const out = new Uint8Array(CHANNEL_HELLO_BYTES);
  const v = new DataView(out.buffer);
  out.set(CHANNEL_MAGIC, 0);
  v.setUint32(8, CHANNEL_HELLO_VERSION, true);
  v.setUint32(12, index, true);
  v.setUint32(16, count, true);
  v.setUint32(20, pageSize, true);
  out.set(nonce, 24);
  v.setUint32(44, crc32(out.subarray(0, 44)), true);
  return out;
}

/**
 * Decodes and checks a channel hello's own consistency (magic, version,
 * reserved field, CRC, index below count); the caller checks it against
 * its own migration.
 *
 * @param bytes The 48 bytes the peer sent.
 * @returns The hello.
 * @throws {RangeError} Naming the first field at fault.
 *
 * @example
 * ```ts
 * import { decodeChannelHello } from "./channel_hello.ts";
 * try {
 *   decodeChannelHello(new Uint8Array(48));
 * } catch (e) {
 *   console.log((e as Error).message); // Channel hello has a bad magic
 * }
 * ```
 */
export function decodeChannelHello(bytes: Uint8Array): ChannelHello {
  if (bytes.length !== CHANNEL_HELLO_BYTES) {
    throw new RangeError(`Channel hello has ${bytes.length} bytes, expected 48`);
  }
  if (!CHANNEL_MAGIC.every((b, i) => bytes[i] === b)) {
    throw new RangeError("Channel hello has a bad magic");
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = v.getUint32(8, true);
  if (version !== CHANNEL_HELLO_VERSION) {
    throw new RangeError(`Channel hello has unsupported version ${version}`);
  }
  if (v.getUint32(40, true) !== 0) {
    throw new RangeError("Channel hello has a non-zero reserved field");
  }
  if (v.getUint32(44, true) !== crc32(bytes.subarray(0, 44))) {
    throw new RangeError("Channel hello checksum mismatch");
  }
  const index = v.getUint32(12, true);
  const count = v.getUint32(16, true);
  if (count < 2 || count > MAX_CHANNELS) {
    throw new RangeError(`Channel hello count ${count} is not in 2 to ${MAX_CHANNELS}`);
  }
  if (index >= count) throw new RangeError(`Channel hello index ${index} is not below ${count}`);
  return { index, count, pageSize: v.getUint32(20, true), nonce: bytes.slice(24, 40) };
}
