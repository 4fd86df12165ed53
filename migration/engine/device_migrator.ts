/**
 * What pre-copy needs of a device whose state migrates with the RAM.
 *
 * @module
 */

/** A device that saves its state at stop-and-copy and restores it on the destination. */
export interface DeviceMigrator {
  /** A stable id, written into the stream with the state. */
  readonly id: string;
  /** Whether the device can migrate its state. */
  readonly supported: boolean;
  /** Why not, when it cannot. */
  readonly reason?: string;
  /**
   * Stops the device and returns its state (for VFIO: `STOP_COPY` and the
   * `data_fd` stream).
   */
  saveState(): Promise<Uint8Array>;
  /**
   * Optional: how many bytes of state the device would send at
   * stop-and-copy now (QEMU's `vfio_state_pending_exact()`; for VFIO,
   * `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`). The expected downtime counts it.
   */
  pendingBytes?(): number | Promise<number>;
  /** Returns the device to running after a failed migration. */
  resumeRunning(): void;
}
