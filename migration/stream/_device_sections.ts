// The device sections of a stream on the destination: device state (stop-and-
// copy), device pre-copy data and the initial-data-sent marker. Every one is
// checked against the destination's devices and the device-state limits
// before its payload is read, and takes effect only once its checksum holds.

import { crc32 } from "node:zlib";
import type { StreamBuffer } from "./_stream_buffer.ts";
import type { ReceiveOptions, ReceiveSummary } from "./receive_types.ts";
import { peerText } from "./peer_text.ts";
import {
  DEFAULT_DEVICE_STATE_BYTES,
  DEFAULT_DEVICE_STATE_CHUNKS,
  DEFAULT_DEVICE_STATE_CHUNKS_PER_DEVICE,
  DEVICE_CHUNK_OVERHEAD_BYTES,
  MAX_DEVICE_ID_BYTES,
  MAX_DEVICE_PRECOPY_BYTES,
  SectionType,
} from "./format.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A device section read and checksummed, not yet applied. */
export interface DeviceSection {
  readonly type: number;
  readonly id: string;
  readonly bytes: Uint8Array;
  readonly crc: number;
}

export class DeviceSections {
  #buf: StreamBuffer;
  #summary: ReceiveSummary;
  #options: ReceiveOptions;
  #fail: (reason: string) => never;
  #devices: ReadonlySet<string>;
  #streamed: ReadonlySet<string>;
  #limits: { bytes: number; chunks: number; chunksPerDevice: number };
  #bytes = 0;
  #chunks = 0;
  #perDevice = new Map<string, number>();
  // Devices that announced pre-copy, and whether their initial data is sent.
  #precopy = new Map<string, boolean>();
  #announcing = true;
  #acked = false;

  constructor(
    buf: StreamBuffer,
    summary: ReceiveSummary,
    options: ReceiveOptions,
    fail: (reason: string) => never,
  ) {
    this.#buf = buf;
    this.#summary = summary;
    this.#options = options;
    this.#fail = fail;
    this.#devices = new Set(options.devices ?? []);
    this.#streamed = new Set(options.streamDevices ?? []);
    this.#limits = {
      bytes: options.maxDeviceStateBytes ?? DEFAULT_DEVICE_STATE_BYTES,
      chunks: options.maxDeviceStateChunks ?? DEFAULT_DEVICE_STATE_CHUNKS,
      chunksPerDevice: options.maxDeviceStateChunksPerDevice ??
        DEFAULT_DEVICE_STATE_CHUNKS_PER_DEVICE,
    };
  }

  /** An iteration marker: no device may announce pre-copy from now on. */
  closeAnnouncements(): void {
    this.#announcing = false;
  }

  /** Reads one device section's id and payload, checking it first. */
  async read(type: number, idLength: bigint, length: bigint, seed: number): Promise<DeviceSection> {
    const name = type === SectionType.DEVICE_STATE
      ? "Device state"
      : type === SectionType.DEVICE_PRECOPY
      ? "Device pre-copy"
      : "Initial-data-sent";
    if (idLength === 0n || idLength > BigInt(MAX_DEVICE_ID_BYTES) || idLength > length) {
      this.#fail(`Device id length ${idLength} is not in 1 to ${MAX_DEVICE_ID_BYTES}`);
    }
    if (type === SectionType.DEVICE_INIT_DATA_SENT && length !== idLength) {
      this.#fail(`${name} section has length ${length}, expected its id length ${idLength}`);
    }
    if (type === SectionType.DEVICE_PRECOPY && length > BigInt(MAX_DEVICE_PRECOPY_BYTES)) {
      this.#fail(
        `${name} section of ${length} bytes exceeds the ${MAX_DEVICE_PRECOPY_BYTES}-byte section limit`,
      );
    }
    // Every chunk counts against the limit with its id and a fixed overhead,
    // so a flood of empty states is bounded like a large one.
    const limits = this.#limits;
    const counted = type !== SectionType.DEVICE_INIT_DATA_SENT;
    const cost = length + BigInt(DEVICE_CHUNK_OVERHEAD_BYTES);
    if (counted && cost > BigInt(limits.bytes - this.#bytes)) {
      this.#fail(
        `${name} section of ${length} bytes exceeds the remaining device-state limit of ${
          Math.max(0, limits.bytes - this.#bytes - DEVICE_CHUNK_OVERHEAD_BYTES)
        } bytes (${limits.bytes} in all)`,
      );
    }
    if (counted && this.#chunks >= limits.chunks) {
      this.#fail(`More than ${limits.chunks} device-state sections`);
    }
    const idBytes = (await this.#buf.take(Number(idLength), "a device id")).slice();
    let crc = crc32(idBytes, seed);
    let id = "";
    try {
      id = utf8.decode(idBytes);
    } catch {
      this.#fail("Device id is not valid UTF-8");
    }
    if (!this.#devices.has(id)) {
      this.#fail(
        `${type === SectionType.DEVICE_STATE ? "Device state" : `${name} section`} for device "${
          peerText(id)
        }", which this destination does not have${
          this.#devices.size === 0
            ? " (it restores no devices)"
            : ` (it has ${[...this.#devices].map((d) => peerText(d)).join(", ")})`
        }`,
      );
    }
    const sent = this.#perDevice.get(id) ?? 0;
    if (counted && sent >= limits.chunksPerDevice) {
      this.#fail(
        `More than ${limits.chunksPerDevice} device-state sections for device "${peerText(id)}"`,
      );
    }
    const initialSent = this.#precopy.get(id);
    if (type === SectionType.DEVICE_PRECOPY && initialSent === undefined && !this.#announcing) {
      this.#fail(
        `Device pre-copy section for device "${
          peerText(id)
        }" after the first iteration or marker (a device announces pre-copy before them)`,
      );
    }
    if (type === SectionType.DEVICE_INIT_DATA_SENT) {
      if (initialSent === undefined) {
        this.#fail(
          `Initial-data-sent marker for device "${peerText(id)}", which sent no pre-copy data`,
        );
      }
      if (initialSent) this.#fail(`Second initial-data-sent marker for device "${peerText(id)}"`);
    }
    const bytes = new Uint8Array(Number(length - idLength));
    await this.#buf.readInto(bytes, `a ${name.toLowerCase()} section`, (c) => crc = crc32(c, crc));
    if (counted) {
      this.#bytes += Number(cost);
      this.#chunks++;
      this.#perDevice.set(id, sent + 1);
    }
    return { type, id, bytes, crc };
  }

  /** Applies a section whose checksum held. */
  async apply(section: DeviceSection): Promise<void> {
    const { type, id, bytes } = section;
    const s = this.#summary;
    if (type === SectionType.DEVICE_INIT_DATA_SENT) {
      this.#announcing = false;
      this.#precopy.set(id, true);
      s.sections.deviceInitialSent++;
      if (!this.#acked && [...this.#precopy.values()].every((v) => v)) {
        this.#acked = true;
        await this.#options.onSwitchoverReady?.();
      }
      return;
    }
    if (type === SectionType.DEVICE_PRECOPY) {
      if (!this.#precopy.has(id)) this.#precopy.set(id, false);
      s.sections.devicePrecopy++;
    } else s.sections.deviceState++;
    if (this.#streamed.has(id)) {
      await this.#options.onDeviceChunk?.(id, bytes);
      return;
    }
    const chunks = s.deviceStates.get(id);
    if (chunks === undefined) s.deviceStates.set(id, [bytes]);
    else chunks.push(bytes);
  }

  /** At COMPLETE: every device that announced pre-copy sent its initial data. */
  checkComplete(): void {
    for (const [id, sent] of this.#precopy) {
      if (!sent) {
        this.#fail(
          `COMPLETE before device "${peerText(id)}" sent its initial-data-sent marker`,
        );
      }
    }
  }
}
