// Pins the userfaultfd and PAGEMAP_SCAN ABI used by sys/userfaultfd.ts and
// sys/pagemap.ts, against bench/c/memory_layout.c compiled with the system cc
// (the installed 6.1 headers plus bench/c/uapi_compat.h for 6.7 additions).
import assert from "node:assert/strict";
import {
  PAGE_IS_WRITTEN,
  PAGE_REGION_SIZE,
  PAGEMAP_SCAN,
  PM_SCAN_ARG_SIZE,
  PM_SCAN_CHECK_WPASYNC,
  PM_SCAN_WP_MATCHING,
} from "../sys/pagemap.ts";
import {
  NR_USERFAULTFD,
  UFFD_API,
  UFFD_FEATURE_WP_ASYNC,
  UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  UFFDIO_API_SIZE,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_REGISTER_SIZE,
  UFFDIO_UNREGISTER,
  UFFDIO_WRITEPROTECT,
  UFFDIO_WRITEPROTECT_MODE_WP,
  UFFDIO_WRITEPROTECT_SIZE,
  USERFAULTFD_IOC_NEW,
} from "../sys/userfaultfd.ts";

const ours: Record<string, number> = {
  "__NR_userfaultfd": NR_USERFAULTFD,
  "UFFD_API": Number(UFFD_API),
  "UFFD_USER_MODE_ONLY": UFFD_USER_MODE_ONLY,
  "UFFD_FEATURE_WP_HUGETLBFS_SHMEM": Number(UFFD_FEATURE_WP_HUGETLBFS_SHMEM),
  "UFFD_FEATURE_WP_UNPOPULATED": Number(UFFD_FEATURE_WP_UNPOPULATED),
  "UFFD_FEATURE_WP_ASYNC": Number(UFFD_FEATURE_WP_ASYNC),
  "UFFDIO_API": Number(UFFDIO_API.code),
  "UFFDIO_REGISTER": Number(UFFDIO_REGISTER.code),
  "UFFDIO_UNREGISTER": Number(UFFDIO_UNREGISTER.code),
  "UFFDIO_WRITEPROTECT": Number(UFFDIO_WRITEPROTECT.code),
  "UFFDIO_REGISTER_MODE_WP": Number(UFFDIO_REGISTER_MODE_WP),
  "UFFDIO_WRITEPROTECT_MODE_WP": Number(UFFDIO_WRITEPROTECT_MODE_WP),
  "USERFAULTFD_IOC_NEW": Number(USERFAULTFD_IOC_NEW.code),
  "PAGEMAP_SCAN": Number(PAGEMAP_SCAN.code),
  "PAGE_IS_WRITTEN": PAGE_IS_WRITTEN,
  "PM_SCAN_WP_MATCHING": PM_SCAN_WP_MATCHING,
  "PM_SCAN_CHECK_WPASYNC": PM_SCAN_CHECK_WPASYNC,
  "sizeof(uffdio_api)": UFFDIO_API_SIZE,
  "offsetof(uffdio_api.api)": 0,
  "offsetof(uffdio_api.features)": 8,
  "offsetof(uffdio_api.ioctls)": 16,
  "sizeof(uffdio_range)": 16,
  "sizeof(uffdio_register)": UFFDIO_REGISTER_SIZE,
  "offsetof(uffdio_register.range)": 0,
  "offsetof(uffdio_register.mode)": 16,
  "offsetof(uffdio_register.ioctls)": 24,
  "sizeof(uffdio_writeprotect)": UFFDIO_WRITEPROTECT_SIZE,
  "offsetof(uffdio_writeprotect.range)": 0,
  "offsetof(uffdio_writeprotect.mode)": 16,
  "sizeof(page_region)": PAGE_REGION_SIZE,
  "offsetof(page_region.start)": 0,
  "offsetof(page_region.end)": 8,
  "offsetof(page_region.categories)": 16,
  "sizeof(pm_scan_arg)": PM_SCAN_ARG_SIZE,
  "offsetof(pm_scan_arg.size)": 0,
  "offsetof(pm_scan_arg.flags)": 8,
  "offsetof(pm_scan_arg.start)": 16,
  "offsetof(pm_scan_arg.end)": 24,
  "offsetof(pm_scan_arg.walk_end)": 32,
  "offsetof(pm_scan_arg.vec)": 40,
  "offsetof(pm_scan_arg.vec_len)": 48,
  "offsetof(pm_scan_arg.max_pages)": 56,
  "offsetof(pm_scan_arg.category_inverted)": 64,
  "offsetof(pm_scan_arg.category_mask)": 72,
  "offsetof(pm_scan_arg.category_anyof_mask)": 80,
  "offsetof(pm_scan_arg.return_mask)": 88,
};

Deno.test("userfaultfd and PAGEMAP_SCAN constants match the pinned ABI", () => {
  assert.equal(UFFDIO_API.code, 0xc018aa3fn);
  assert.equal(UFFDIO_REGISTER.code, 0xc020aa00n);
  assert.equal(UFFDIO_UNREGISTER.code, 0x8010aa01n);
  assert.equal(UFFDIO_WRITEPROTECT.code, 0xc018aa06n);
  assert.equal(PAGEMAP_SCAN.code, 0xc0606610n);
  assert.equal(PM_SCAN_ARG_SIZE, 96);
  assert.equal(PAGE_REGION_SIZE, 24);
  assert.equal(UFFD_FEATURE_WP_ASYNC, 0x8000n);
  assert.equal(NR_USERFAULTFD, 323);
});

Deno.test("userfaultfd and PAGEMAP_SCAN layouts match a C program built here", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-layout-" });
  try {
    const src = new URL("../bench/c/memory_layout.c", import.meta.url).pathname;
    const bin = `${dir}/memory_layout`;
    const cc = await new Deno.Command("cc", { args: ["-O0", "-Wall", "-Werror", "-o", bin, src] })
      .output();
    assert.equal(cc.code, 0, `cc failed: ${new TextDecoder().decode(cc.stderr)}`);
    const run = await new Deno.Command(bin).output();
    assert.equal(run.code, 0);
    const c = JSON.parse(new TextDecoder().decode(run.stdout)) as Record<string, number>;
    delete c.end;
    assert.deepEqual(ours, c);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
