// Migration v2 on the real 6.1 kernel: QEMU's edu bound to vfio-pci. vfio-pci
// has no mig_ops, so every migration feature answers ENOTTY and the probe
// reports the device as unsupported.
import assert from "node:assert/strict";
import { ENOTTY } from "../../sys/errno.ts";
import { IoctlError } from "../../sys/errors.ts";
import { VfioContainer } from "../../vfio/container.ts";
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE,
} from "../../vfio/constants.ts";
import { NO_MIGRATION_REASON, VfioDeviceMigration } from "../../vfio/device_migration.ts";
import { VfioStateError } from "../../vfio/errors.ts";
import { VFIO_DEVICE_FEATURE } from "../../vfio/ioctls.ts";
import { encodeDeviceFeature } from "../../vfio/uapi/device_feature.ts";
import { groupAndDevice } from "./_group.ts";

Deno.test("VfioDeviceMigration.probe() reports edu on vfio-pci as unsupported (ENOTTY)", async () => {
  const { group, device } = groupAndDevice();
  using container = VfioContainer.open();
  using g = container.attachGroup(group);
  using dev = g.openDevice(device);
  const m = VfioDeviceMigration.probe(dev);
  assert.equal(m.supported, false);
  assert.equal(m.reason, NO_MIGRATION_REASON);
  assert.equal(m.flags, 0);
  assert.equal(m.id, device);
  await assert.rejects(m.saveState(), VfioStateError);
  m.resumeRunning(); // nothing to resume
});

Deno.test("VFIO_DEVICE_FEATURE answers ENOTTY for every migration feature on vfio-pci", () => {
  const { group, device } = groupAndDevice();
  using container = VfioContainer.open();
  using g = container.attachGroup(group);
  using dev = g.openDevice(device);
  const sys = dev.syscalls;
  for (
    const flags of [
      VFIO_DEVICE_FEATURE_MIGRATION | VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET,
      VFIO_DEVICE_FEATURE_MIGRATION | VFIO_DEVICE_FEATURE_GET,
      VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | VFIO_DEVICE_FEATURE_GET,
      // 6.1 has no MIG_DATA_SIZE: vfio-pci's own feature handler answers ENOTTY.
      VFIO_DEVICE_FEATURE_MIG_DATA_SIZE | VFIO_DEVICE_FEATURE_GET,
    ]
  ) {
    assert.throws(
      () =>
        sys.ioctl(dev.unsafeFd, VFIO_DEVICE_FEATURE, encodeDeviceFeature(flags, new Uint8Array(8))),
      (e: unknown) => e instanceof IoctlError && e.errno === ENOTTY,
      `flags 0x${flags.toString(16)}`,
    );
  }
});
