// kernel-profiles: custom-6.12
// The iommufd / VFIO cdev layout facts the codecs use, compared with the
// headers of the 6.12 source tree the test kernel was built from (the
// harness names it in DENO_VMM_LINUX_SRC), compiled with cc. This host's
// installed linux-libc-dev predates iommufd.
import assert from "node:assert/strict";
import { IOMMUFD_LAYOUT, layoutProgram } from "../../../vfio/iommufd/uapi/_layout.ts";
import { IOMMU_TEST_CMD, IOMMU_TEST_CMD_SIZE } from "./_selftest.ts";
import { KernelEnvError } from "../env.ts";

const SELFTEST_FACTS: Record<string, number> = {
  "sizeof iommu_test_cmd": IOMMU_TEST_CMD_SIZE,
  "offsetof iommu_test_cmd.mock_domain.out_stdev_id": 16,
  "offsetof iommu_test_cmd.mock_domain.out_hwpt_id": 20,
  "offsetof iommu_test_cmd.mock_domain.out_idev_id": 24,
  "offsetof iommu_test_cmd.mock_domain_flags.dev_flags": 28,
  "offsetof iommu_test_cmd.mock_domain_replace.pt_id": 16,
  "offsetof iommu_test_cmd.dirty.iova": 24,
  "offsetof iommu_test_cmd.dirty.length": 32,
  "offsetof iommu_test_cmd.dirty.page_size": 40,
  "offsetof iommu_test_cmd.dirty.uptr": 48,
  "offsetof iommu_test_cmd.dirty.out_nr_dirty": 56,
  "ioctl IOMMU_TEST_CMD": Number(IOMMU_TEST_CMD.code),
  "const IOMMU_TEST_OP_MOCK_DOMAIN": 2,
  "const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE": 10,
  "const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS": 12,
  "const IOMMU_TEST_OP_DIRTY": 13,
  "const MOCK_APERTURE_START": 1 << 24,
  "const MOCK_FLAGS_DEVICE_NO_DIRTY": 1,
  "const IOMMU_HW_INFO_TYPE_SELFTEST": 0xfeedbeef,
};

Deno.test("iommufd and VFIO cdev layouts match the 6.12 tree's headers compiled with cc", async () => {
  const src = Deno.env.get("DENO_VMM_LINUX_SRC");
  if (!src) {
    throw new KernelEnvError(
      "DENO_VMM_LINUX_SRC is not set: run this test with `deno task test:kernel`",
    );
  }
  const dir = await Deno.makeTempDir();
  try {
    // The tree's uapi headers first, the system's for everything else (asm/*).
    await Deno.mkdir(`${dir}/linux`);
    await Deno.copyFile(`${src}/include/uapi/linux/iommufd.h`, `${dir}/linux/iommufd.h`);
    await Deno.copyFile(`${src}/include/uapi/linux/vfio.h`, `${dir}/linux/vfio.h`);
    await Deno.copyFile(`${src}/drivers/iommu/iommufd/iommufd_test.h`, `${dir}/iommufd_test.h`);
    const facts = { ...IOMMUFD_LAYOUT, ...SELFTEST_FACTS };
    const program = layoutProgram(facts, [
      "#include <linux/iommufd.h>",
      "#include <linux/vfio.h>",
      '#include "iommufd_test.h"',
    ]);
    await Deno.writeTextFile(`${dir}/layout.c`, program);
    const cc = await new Deno.Command("cc", {
      // The tree's raw uapi headers still say __user (headers_install strips it).
      args: ["-D__user=", "-I", dir, "-o", `${dir}/layout`, `${dir}/layout.c`],
      stderr: "piped",
    }).output();
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(`${dir}/layout`, { stdout: "piped" }).output();
    const seen: Record<string, number> = {};
    for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
      const at = line.lastIndexOf(" ");
      seen[line.slice(0, at)] = Number(line.slice(at + 1));
    }
    assert.deepEqual(seen, facts);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
