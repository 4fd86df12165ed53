// The kernel harness's boot profiles and the stock 6.12 kernel's packaging,
// without booting anything.
import assert from "node:assert/strict";
import { declaredTests, PROFILES, profilesOf } from "./kernel/harness/profiles.ts";
import { GUEST_MODULES_6_12, resolveModules } from "./kernel/harness/initramfs.ts";
import { packagesOf, relocateHeadersMakefile } from "./kernel/harness/stock_612.ts";
import { HarnessError } from "./kernel/harness/exec.ts";

Deno.test("profilesOf() reads the marker line, stock-6.12 included, and refuses an unknown profile", () => {
  assert.deepEqual(profilesOf("// kernel-profiles: stock-6.12\n", "a_test.ts"), ["stock-6.12"]);
  assert.deepEqual(
    profilesOf("// kernel-profiles: stock-6.1, custom-6.12-viommu\n", "b_test.ts"),
    ["stock-6.1", "custom-6.12-viommu"],
  );
  assert.deepEqual(profilesOf("import x;\n", "c_test.ts"), ["stock-6.1"]);
  assert.throws(() => profilesOf("// kernel-profiles: stock-6.13\n", "d_test.ts"), HarnessError);
  const stock = PROFILES.find((p) => p.name === "stock-6.12")!;
  assert.equal(stock.kernel, "stock-6.12");
  assert.deepEqual(stock.modules, ["mtty"]);
  assert.equal(stock.machine.viommu, false);
  assert.equal(declaredTests('Deno.test("a", () => {});\nDeno.test("b", () => {});'), 2);
});

Deno.test("packagesOf() names the image, its headers, the common headers and kbuild of one release", () => {
  assert.deepEqual(packagesOf("6.12.95+deb12-amd64"), {
    image: "linux-image-6.12.95+deb12-amd64",
    headers: "linux-headers-6.12.95+deb12-amd64",
    common: "linux-headers-6.12.95+deb12-common",
    kbuild: "linux-kbuild-6.12.95+deb12",
  });
});

Deno.test("relocateHeadersMakefile() points the arch headers at the common headers in the cache", () => {
  const text = "include /usr/src/linux-headers-6.12.95+deb12-common/Makefile\n";
  assert.equal(
    relocateHeadersMakefile(text, "/cache/k/headers"),
    "include /cache/k/headers/usr/src/linux-headers-6.12.95+deb12-common/Makefile\n",
  );
  assert.throws(() => relocateHeadersMakefile("all:\n", "/cache"), HarnessError);
});

Deno.test("the stock 6.12 guest modules resolve in dependency order from a 6.12 modules.dep", () => {
  const k = "kernel";
  const dep = [ // lines of Debian's 6.12.95+deb12-amd64 modules.dep
    `${k}/fs/netfs/netfs.ko.xz:`,
    `${k}/fs/overlayfs/overlay.ko.xz:`,
    `${k}/fs/9p/9p.ko.xz: ${k}/net/9p/9pnet.ko.xz ${k}/fs/netfs/netfs.ko.xz`,
    `${k}/drivers/vfio/vfio.ko.xz:`,
    `${k}/drivers/vfio/vfio_iommu_type1.ko.xz: ${k}/drivers/vfio/vfio.ko.xz`,
    `${k}/drivers/vfio/pci/vfio-pci-core.ko.xz: ${k}/drivers/vfio/vfio.ko.xz ${k}/virt/lib/irqbypass.ko.xz`,
    `${k}/drivers/vfio/pci/vfio-pci.ko.xz: ${k}/drivers/vfio/pci/vfio-pci-core.ko.xz ${k}/drivers/vfio/vfio.ko.xz ${k}/virt/lib/irqbypass.ko.xz`,
    `${k}/drivers/vfio/mdev/mdev.ko.xz:`,
    `${k}/net/9p/9pnet.ko.xz: ${k}/fs/netfs/netfs.ko.xz`,
    `${k}/net/9p/9pnet_virtio.ko.xz: ${k}/net/9p/9pnet.ko.xz ${k}/fs/netfs/netfs.ko.xz`,
    `${k}/virt/lib/irqbypass.ko.xz:`,
    "",
  ].join("\n");
  const order = resolveModules(dep, GUEST_MODULES_6_12).map((p) => p.split("/").pop());
  assert.equal(order.length, 11);
  assert.ok(order.indexOf("netfs.ko.xz") < order.indexOf("9pnet.ko.xz"));
  assert.ok(order.indexOf("irqbypass.ko.xz") < order.indexOf("vfio-pci-core.ko.xz"));
  assert.ok(order.indexOf("vfio.ko.xz") < order.indexOf("vfio_iommu_type1.ko.xz"));
});
