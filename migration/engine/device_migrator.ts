/**
 * What pre-copy needs of a device whose state migrates with the RAM.
 *
 * @module
 */

/**
 * What `VFIO_MIG_GET_PRECOPY_INFO` says of a device in `PRE_COPY`: the
 * initial bytes still to read (stop-and-copy should not start before they
 * are) and an estimate of the bytes the state has grown by since.
 */
export interface DevicePrecopyInfo {
  /** Initial pre-copy bytes not yet read. */
  initialBytes: number;
  /** Further bytes the device state has grown by (an estimate). */
  dirtyBytes: number;
}

/**
 * A device that saves its state at stop-and-copy and restores it on the
 * destination; with the optional pre-copy members (all of them, and
 * `precopy` true) it also sends state while the guest runs, as QEMU's
 * `vfio_save_iterate` does.
 */
export interface DeviceMigrator {
  /** A stable id, written into the stream with the state. */
  readonly id: string;
  /** Whether the device can migrate its state. */
  readonly supported: boolean;
  /** Why not, when it cannot. */
  readonly reason?: string;
  /**
   * Stops the device and returns its state (for VFIO: `STOP_COPY` and the
   * `data_fd` stream). From `PRE_COPY` it goes to `STOP_COPY` directly and
   * returns the rest of the pre-copy stream, what `readPrecopy` did not read.
   */
  saveState(): Promise<Uint8Array>;
  /** Optional: the device offers `PRE_COPY` (`VFIO_MIGRATION_PRE_COPY`). */
  readonly precopy?: boolean;
  /** Optional: `RUNNING` → `PRE_COPY`; the device keeps the data fd it opens. */
  startPrecopy?(): void | Promise<void>;
  /** Optional: `VFIO_MIG_GET_PRECOPY_INFO` in `PRE_COPY`. */
  precopyInfo?(): DevicePrecopyInfo | Promise<DevicePrecopyInfo>;
  /**
   * Optional: one read of at most `maxBytes` of the `PRE_COPY` data fd;
   * empty when the device has nothing now (`ENOMSG`, or `read()` gave 0).
   */
  readPrecopy?(maxBytes: number): Uint8Array | Promise<Uint8Array>;
  /**
   * Optional: how many bytes of state the device would send at
   * stop-and-copy now (QEMU's `vfio_state_pending_exact()`; for VFIO,
   * `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`). The expected downtime counts it.
   */
  pendingBytes?(): number | Promise<number>;
  /**
   * Returns the device to running after a failed migration (from
   * `PRE_COPY` too, which closes its data fd).
   */
  resumeRunning(): void;
}

/**
 * A destination's device: its state arrives from the stream by id. Without
 * the optional members the chunks are collected and handed to `loadState`
 * once RAM is verified; with `beginResume`, `loadChunk` and `finishResume`
 * each chunk (pre-copy data first, then the stop-and-copy rest) is written
 * into the device in `RESUMING` as it arrives, as QEMU's `vfio_load_state`
 * does, and `finishResume` runs it once RAM is verified.
 */
export interface DeviceRestorer {
  /** The id the source's device writes its state under. */
  readonly id: string;
  /** Loads a whole state and runs the device. */
  loadState(bytes: Uint8Array): Promise<void>;
  /** Optional: `STOP` → `RESUMING`, at the device's first chunk. */
  beginResume?(): void | Promise<void>;
  /** Optional: writes the next chunk into the `RESUMING` data fd. */
  loadChunk?(bytes: Uint8Array): void | Promise<void>;
  /** Optional: `RESUMING` → `STOP` → `RUNNING`, once RAM is verified. */
  finishResume?(): void | Promise<void>;
  /**
   * Optional: the stream failed after `beginResume`: leave no partial state
   * running (for VFIO, a device reset).
   */
  abortResume?(): void | Promise<void>;
}
