// kernel-profiles: custom-6.12 custom-6.12-viommu
// What each 6.12 boot profile gives the tests: the test kernel, /dev/iommu,
// and (with the emulated VT-d) edu on vfio-pci, its cdev, and the pintest parent.
import assert from "node:assert/strict";
import { bootProfile } from "../env.ts";

Deno.test("the 6.12 test kernel boots with iommufd and the profile's machine", () => {
  const profile = bootProfile();
  assert.match(Deno.readTextFileSync("/proc/version"), /^Linux version 6\.12\./);
  assert.ok(Deno.statSync("/dev/iommu").isCharDevice, "/dev/iommu");
  assert.ok(Deno.statSync("/dev/vfio/vfio").isCharDevice, "/dev/vfio/vfio (the type1 container)");
  const dmar = [...Deno.readDirSync("/sys/class/iommu")].some((e) => e.name.startsWith("dmar"));
  assert.equal(dmar, profile === "custom-6.12-viommu", "VT-d (dmar) only in the -viommu profile");
  if (profile === "custom-6.12-viommu") {
    const cdevs = [...Deno.readDirSync("/dev/vfio/devices")].map((e) => e.name);
    assert.ok(cdevs.length >= 1, `VFIO cdevs: ${cdevs}`);
    assert.ok(Deno.statSync("/sys/class/mdev_bus/pintest").isDirectory, "the pintest parent");
  }
  assert.ok(Deno.statSync("/sys/class/mdev_bus/mtty").isDirectory, "the built-in mtty sample");
});
