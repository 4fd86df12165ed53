// FakeKernel's calls beyond VFIO: host files, memfds, memory calls and
// userfaultfd at their real fd numbers and counted; failures injected by
// name and path; and the kernel features its options model (soft-dirty,
// PAGEMAP_SCAN, userfaultfd's permission check, the hugetlb pool).
import assert from "node:assert/strict";
import {
  EACCES,
  EBADF,
  EINVAL,
  EIO,
  ENOMEM,
  ENOSPC,
  ENOTDIR,
  ENOTTY,
  ENXIO,
  EPERM,
  ESPIPE,
} from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { hostView } from "../sys/host_memory.ts";
import {
  MAP_ANONYMOUS,
  MAP_HUGETLB,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
} from "../sys/constants.ts";
import { MADV_NORMAL, MFD_CLOEXEC, MFD_HUGETLB, SEEK_DATA, SEEK_HOLE } from "../sys/memfd.ts";
import { listDirectory, readProcFile, writeProcFile } from "../sys/procfs.ts";
import { PAGEMAP_SCAN, PagemapReader } from "../sys/pagemap.ts";
import {
  encodeUffdioApi,
  UFFD_USER_MODE_ONLY,
  UFFDIO_API,
  USERFAULTFD_IOC_NEW,
} from "../sys/userfaultfd.ts";
import { FakeKernel } from "./fake_kernel.ts";
import {
  hostConformanceTest,
  PAGEMAP_SCAN_HOST,
  USERFAULTFD_BUILT_IN,
} from "./_host_conformance.ts";

const PAGE = 4096n;
const SOFT_DIRTY = 1 << 23; // bit 55 of an entry, in its high word

function errno(n: number, syscall?: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof SyscallError, String(e));
    assert.equal(e.code, new SyscallError("x", n).code);
    if (syscall !== undefined) assert.equal(e.syscall, syscall);
    return true;
  };
}

function anon(kernel: FakeKernel, pages = 4n): bigint {
  return kernel.mmap(pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
}

Deno.test("FakeKernel.memfdCreate() hands out a real memfd at its real number, counted and described", () => {
  const kernel = new FakeKernel();
  const fd = kernel.memfdCreate("ram7", MFD_CLOEXEC);
  assert.ok(fd < 1000, "a real fd number");
  assert.match(Deno.readLinkSync(`/proc/self/fd/${fd}`), /^\/memfd:ram7/);
  assert.deepEqual(kernel.openFdDescriptions(), ["memfd ram7"]);
  kernel.ftruncate(fd, 4n * PAGE);
  const addr = kernel.mmap(4n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
  assert.equal(kernel.liveMappings, 1);
  hostView(addr + PAGE, 1)[0] = 9;
  assert.equal(kernel.lseek(fd, 0n, SEEK_DATA), PAGE);
  assert.equal(kernel.lseek(fd, PAGE, SEEK_HOLE), 2n * PAGE);
  assert.throws(() => kernel.lseek(fd, 2n * PAGE, SEEK_DATA), errno(ENXIO, "lseek"));
  const buf = new Uint8Array(1);
  assert.equal(kernel.pread(fd, buf, PAGE), 1);
  assert.equal(buf[0], 9);
  kernel.munmap(addr, 4n * PAGE);
  kernel.close(fd);
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
  assert.throws(() => kernel.close(fd), errno(EBADF));
  assert.deepEqual(
    kernel.calls.map((c) => c.syscall).slice(0, 4),
    ["memfd_create", "ftruncate", "mmap", "lseek"],
  );
});

Deno.test("FakeKernel.failNext() fails each memory call by name, before it reaches the host", () => {
  const kernel = new FakeKernel();
  const fd = kernel.memfdCreate("x", MFD_CLOEXEC);
  const addr = anon(kernel);
  const cases: [string, number, () => unknown][] = [
    ["memfd_create", ENOSPC, () => kernel.memfdCreate("y", MFD_CLOEXEC)],
    ["ftruncate", EIO, () => kernel.ftruncate(fd, PAGE)],
    ["lseek", EIO, () => kernel.lseek(fd, 0n, SEEK_DATA)],
    ["madvise", ENOMEM, () => kernel.madvise(addr, PAGE, MADV_NORMAL)],
    ["mprotect", EACCES, () => kernel.mprotect(addr, PAGE, PROT_READ)],
    ["userfaultfd", EPERM, () => kernel.userfaultfd(UFFD_USER_MODE_ONLY)],
    ["prctl", EINVAL, () => kernel.prctl(41, 1n)],
    ["getdents64", EIO, () => kernel.getdents64(fd, new Uint8Array(64))],
  ];
  for (const [name, err, call] of cases) {
    kernel.failNext(name, err);
    assert.throws(call, errno(err, name), name);
    assert.deepEqual(kernel.calls.at(-1)?.errno, err, `${name} is logged with its errno`);
  }
  assert.equal(kernel.openFds, 1, "the failed memfd_create made nothing");
  // Not failed, they reach the host: madvise of a mapped range succeeds, of an unmapped one fails.
  kernel.madvise(addr, PAGE, MADV_NORMAL);
  kernel.munmap(addr, 4n * PAGE);
  assert.throws(() => kernel.madvise(addr, PAGE, MADV_NORMAL), errno(ENOMEM, "madvise"));
  assert.throws(() => kernel.getdents64(fd, new Uint8Array(64)), errno(ENOTDIR));
  kernel.close(fd);
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

Deno.test("FakeKernel.open() opens /proc and /sys on the host, fails them by path, and denies paths", () => {
  const kernel = new FakeKernel({ deniedPaths: ["/proc/self/status"] });
  assert.match(readProcFile("/proc/meminfo", { syscalls: kernel }), /^MemTotal:/);
  assert.ok(listDirectory("/sys/kernel/mm", { syscalls: kernel }).includes("transparent_hugepage"));
  assert.throws(
    () => readProcFile("/proc/self/status", { syscalls: kernel }),
    (e: unknown) =>
      e instanceof SyscallError && e.errno === EACCES && e.path === "/proc/self/status",
  );
  kernel.failNext("read /proc/meminfo", EIO);
  assert.throws(
    () => readProcFile("/proc/meminfo", { syscalls: kernel }),
    (e: unknown) => e instanceof SyscallError && e.errno === EIO && e.path === "/proc/meminfo",
  );
  kernel.failNext("open /proc/self/pagemap", EACCES);
  assert.throws(() => new PagemapReader({ syscalls: kernel }), errno(EACCES, "open"));
  using pm = new PagemapReader({ syscalls: kernel }); // only the next one failed
  assert.deepEqual(kernel.openFdDescriptions(), ["file /proc/self/pagemap"]);
  pm.close();
  // Paths outside /proc, /sys and /dev/userfaultfd stay the fake's own.
  assert.throws(() => kernel.open("/etc/hostname", O_RDONLY), errno(2, /* ENOENT */ "open"));
  assert.equal(kernel.openFds, 0);
});

Deno.test("FakeKernel without soft-dirty: clear_refs takes 1 to 5, pagemap bit 55 stays clear", () => {
  const kernel = new FakeKernel({ softDirty: false });
  const addr = anon(kernel);
  hostView(addr, 1)[0] = 1;
  for (const v of ["1", "4", "5\n"]) {
    writeProcFile("/proc/self/clear_refs", v, { syscalls: kernel });
  }
  for (const v of ["0", "6", "soft"]) {
    assert.throws(
      () => writeProcFile("/proc/self/clear_refs", v, { syscalls: kernel }),
      (e: unknown) => e instanceof SyscallError && e.errno === EINVAL,
      v,
    );
  }
  hostView(addr + PAGE, 1)[0] = 1;
  using pm = new PagemapReader({ syscalls: kernel });
  const words = new Uint32Array(8);
  pm.read(addr, words);
  for (let p = 0; p < 4; p++) assert.equal(words[2 * p + 1] & SOFT_DIRTY, 0, `page ${p}`);
  assert.ok((words[1] >>> 31) === 1, "page 0 is present (the host's bits pass through)");
  pm.close();
  kernel.munmap(addr, 4n * PAGE);
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

hostConformanceTest(
  "FakeKernel with soft-dirty: a new mapping is soft-dirty, clear_refs 4 clears, a write sets",
  PAGEMAP_SCAN_HOST,
  () => {
    const kernel = new FakeKernel({ softDirty: true });
    const addr = anon(kernel);
    using pm = new PagemapReader({ syscalls: kernel });
    const words = new Uint32Array(8);
    const dirty = () => {
      pm.read(addr, words);
      return [0, 1, 2, 3].filter((p) => (words[2 * p + 1] & SOFT_DIRTY) !== 0);
    };
    assert.deepEqual(dirty(), [0, 1, 2, 3], "VM_SOFTDIRTY until the first clear");
    writeProcFile("/proc/self/clear_refs", "4", { syscalls: kernel });
    assert.deepEqual(dirty(), []);
    hostView(addr + 2n * PAGE, 1)[0] = 1;
    assert.deepEqual(dirty(), [2]);
    writeProcFile("/proc/self/clear_refs", "1", { syscalls: kernel }); // not soft-dirty: no change
    assert.deepEqual(dirty(), [2]);
    writeProcFile("/proc/self/clear_refs", "4", { syscalls: kernel });
    assert.deepEqual(dirty(), []);
    pm.close();
    kernel.munmap(addr, 4n * PAGE);
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  },
);

hostConformanceTest(
  "FakeKernel without PAGEMAP_SCAN answers ENOTTY; with it, the host answers",
  PAGEMAP_SCAN_HOST,
  () => {
    for (const pagemapScan of [false, true]) {
      const kernel = new FakeKernel({ pagemapScan });
      const fd = kernel.open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
      const arg = new Uint8Array(96); // struct pm_scan_arg with size 0: EINVAL from a real 6.7+
      const call = () => kernel.ioctl(fd, PAGEMAP_SCAN, arg);
      assert.throws(call, (e: unknown) =>
        e instanceof IoctlError && e.ioctl === "PAGEMAP_SCAN" &&
        e.errno === (pagemapScan ? EINVAL : ENOTTY));
      kernel.close(fd);
      assert.equal(kernel.openFds, 0);
    }
  },
);

Deno.test("FakeKernel models userfaultfd's permission check: the sysctl, UFFD_USER_MODE_ONLY, seccomp", () => {
  const kernel = new FakeKernel({ unprivilegedUserfaultfd: 0 });
  assert.equal(
    readProcFile("/proc/sys/vm/unprivileged_userfaultfd", { syscalls: kernel }).trim(),
    "0",
  );
  assert.throws(() => kernel.userfaultfd(O_CLOEXEC), errno(EPERM, "userfaultfd"));
  writeProcFile("/proc/sys/vm/unprivileged_userfaultfd", "1", { syscalls: kernel });
  assert.equal(
    readProcFile("/proc/sys/vm/unprivileged_userfaultfd", { syscalls: kernel }).trim(),
    "1",
  );
  const seccomp = new FakeKernel({ seccompDeniesUserfaultfd: true });
  assert.throws(
    () => seccomp.userfaultfd(UFFD_USER_MODE_ONLY | O_CLOEXEC),
    errno(EPERM, "userfaultfd"),
  );
  assert.equal(kernel.openFds + seccomp.openFds, 0);
});

hostConformanceTest(
  "FakeKernel.userfaultfd() and USERFAULTFD_IOC_NEW hand out host userfaultfds, counted",
  [
    USERFAULTFD_BUILT_IN,
    {
      what: "/dev/userfaultfd",
      missing: () => {
        try {
          Deno.statSync("/dev/userfaultfd");
          return undefined;
        } catch {
          return "it does not exist (Linux 6.1 or later makes it)";
        }
      },
    },
  ],
  () => {
    const kernel = new FakeKernel({ unprivilegedUserfaultfd: 0 });
    const a = kernel.userfaultfd(UFFD_USER_MODE_ONLY | O_CLOEXEC);
    const dev = kernel.open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    const b = kernel.ioctlValue(dev, USERFAULTFD_IOC_NEW, BigInt(UFFD_USER_MODE_ONLY | O_CLOEXEC));
    kernel.close(dev);
    assert.deepEqual(kernel.openFdDescriptions().sort(), [
      "userfaultfd via /dev/userfaultfd",
      "userfaultfd via userfaultfd(2)",
    ]);
    // Their ioctls go to the host; an injected failure does not.
    const arg = encodeUffdioApi(0n);
    kernel.failNext("UFFDIO_API", EINVAL);
    assert.throws(
      () => kernel.ioctl(a, UFFDIO_API, arg),
      (e: unknown) => e instanceof IoctlError && e.errno === EINVAL,
    );
    assert.equal(kernel.ioctl(a, UFFDIO_API, arg), 0);
    kernel.close(a);
    kernel.close(b);
    assert.equal(kernel.openFds, 0);
  },
);

Deno.test("FakeKernel models a hugetlb pool: meminfo, nr_hugepages, reservations and ENOMEM", () => {
  const kernel = new FakeKernel({ nrHugepages: 3 });
  const HUGE = 2n << 20n;
  const free = () =>
    Number(/HugePages_Free:\s+(\d+)/.exec(readProcFile("/proc/meminfo", { syscalls: kernel }))![1]);
  assert.equal(readProcFile("/proc/sys/vm/nr_hugepages", { syscalls: kernel }), "3\n");
  assert.match(readProcFile("/proc/meminfo", { syscalls: kernel }), /^HugePages_Total:\s+3$/m);
  const prot = PROT_READ | PROT_WRITE;
  const a = kernel.mmap(2n * HUGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0n);
  assert.equal(free(), 1);
  assert.throws(
    () => kernel.mmap(2n * HUGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0n),
    errno(ENOMEM, "mmap"),
  );
  const fd = kernel.memfdCreate("huge", MFD_CLOEXEC | MFD_HUGETLB);
  assert.throws(() => kernel.ftruncate(fd, PAGE), errno(EINVAL), "hugetlbfs takes whole pages");
  kernel.ftruncate(fd, HUGE);
  const b = kernel.mmap(HUGE, prot, MAP_SHARED, fd, 0n);
  assert.equal(free(), 0);
  hostView(b, 8).fill(1);
  kernel.munmap(a, 2n * HUGE);
  kernel.munmap(b, HUGE);
  kernel.close(fd);
  assert.equal(free(), 3);
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
});

Deno.test("FakeKernel.getuid() answers the uid option; lseek on a VFIO fd is ESPIPE", () => {
  assert.equal(new FakeKernel({ uid: 1234 }).getuid(), 1234);
  assert.equal(new FakeKernel().getuid(), Deno.uid());
  const kernel = new FakeKernel();
  const c = kernel.open("/dev/vfio/vfio", O_RDWR);
  assert.throws(() => kernel.lseek(c, 0n, 0), errno(ESPIPE, "lseek"));
  kernel.close(c);
  assert.throws(() => kernel.lseek(c, 0n, 0), errno(EBADF, "lseek"));
});
