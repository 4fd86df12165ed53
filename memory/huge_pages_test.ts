// Huge-page backings. The pool's accounting and the messages run against
// FakeKernel's modelled pool (`nrHugepages`); mapping real 2 MiB pages is a
// host-conformance test: it reserves pages in /proc/sys/vm/nr_hugepages (as
// root), restores the value it found, and says what it needs when the host
// cannot.
import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { readProcFile, writeProcFile } from "../sys/procfs.ts";
import { HugePagesUnavailableError } from "./errors.ts";
import { GuestMemory } from "./guest_memory.ts";
import { mapsLinesAt, openFdCount } from "../tests/_memory_support.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import {
  hostConformanceTest,
  kernelBuiltWith,
  ROOT,
  writable,
} from "../tests/_host_conformance.ts";

const NR = "/proc/sys/vm/nr_hugepages";
const MiB = 1n << 20n;

function hugeFree(kernel: FakeKernel): number {
  return Number(
    /HugePages_Free:\s+(\d+)/.exec(readProcFile("/proc/meminfo", { syscalls: kernel }))![1],
  );
}

for (const backing of ["hugetlb", "hugetlb-memfd"] as const) {
  Deno.test(`GuestMemory.create() of ${backing} says how to reserve huge pages (vm.nr_hugepages) and leaves nothing mapped`, () => {
    const kernel = new FakeKernel({ nrHugepages: 1 });
    assert.throws(
      () =>
        GuestMemory.create([
          { gpa: g(0n), size: MiB, name: "small" },
          { gpa: g(1n << 30n), size: 8n * MiB, backing, name: "big" },
        ], { syscalls: kernel, prefault: backing === "hugetlb-memfd" ? "madvise" : undefined }),
      (e: unknown) => {
        assert.ok(e instanceof HugePagesUnavailableError, `${backing}: ${e}`);
        assert.equal(e.needed, 4);
        assert.equal(e.free, 1);
        assert.equal(
          e.message,
          'Cannot map region "big" (8 MiB at GPA 0x40000000) with 2 MiB huge pages: 4 are ' +
            "needed, 1 are free (/proc/sys/vm/nr_hugepages is 1). Reserve them as root with " +
            "`echo N > /proc/sys/vm/nr_hugepages` (or `sysctl vm.nr_hugepages=N`), N >= 4 plus " +
            'the pages already in use, or use 4 KiB pages (backing "anonymous" or "memfd")',
        );
        return true;
      },
    );
    assert.equal(kernel.liveMappings, 0, "something is still mapped");
    assert.equal(kernel.openFds, 0, `an fd leaked: ${kernel.openFdDescriptions()}`);
    assert.equal(hugeFree(kernel), 1, "the pool is whole again");
  });
}

Deno.test("GuestMemory.create() takes huge pages from the pool and close() returns them", () => {
  const kernel = new FakeKernel({ nrHugepages: 6 });
  const mem = GuestMemory.create([
    { gpa: g(0n), size: 4n * MiB, backing: "hugetlb" },
    { gpa: g(4n * MiB), size: 4n * MiB, backing: "hugetlb-memfd", prefault: "madvise" },
  ], { syscalls: kernel });
  assert.equal(hugeFree(kernel), 2);
  assert.deepEqual(kernel.openFdDescriptions(), ["memfd ram1"]);
  const data = new Uint8Array(64).fill(5);
  mem.write(g(4n * MiB - 32n), data);
  assert.deepEqual(mem.read(g(4n * MiB - 32n), 64), data);
  // Two more pages are free; a third region of 3 would not fit.
  assert.throws(
    () =>
      GuestMemory.create([{ gpa: g(0n), size: 6n * MiB, backing: "hugetlb" }], {
        syscalls: kernel,
      }),
    (e: unknown) => e instanceof HugePagesUnavailableError && e.free === 2 && e.needed === 3,
  );
  mem.close();
  assert.equal(hugeFree(kernel), 6);
  assert.equal(kernel.openFds + kernel.liveMappings, 0);
  // A root write of vm.nr_hugepages resizes the pool.
  writeProcFile(NR, "9\n", { syscalls: kernel });
  assert.equal(readProcFile(NR, { syscalls: kernel }).trim(), "9");
  assert.equal(hugeFree(kernel), 9);
});

function freeHugePages(): number {
  return Number(/HugePages_Free:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))![1]);
}

/** Runs `fn` with exactly `extra` more huge pages reserved than found, then restores. */
function withReservedHugePages(extra: number, fn: () => void): void {
  const found = Deno.readTextFileSync(NR).trim();
  const want = Number(found) - freeHugePages() + extra; // in use by others + what we need
  Deno.writeTextFileSync(NR, `${want}\n`);
  try {
    const got = Number(Deno.readTextFileSync(NR).trim());
    assert.equal(got, want, `${NR} reserved ${got} pages, not ${want}: memory is too fragmented`);
    fn();
  } finally {
    Deno.writeTextFileSync(NR, `${found}\n`);
    assert.equal(Deno.readTextFileSync(NR).trim(), found, `${NR} was not restored to ${found}`);
  }
}

hostConformanceTest("GuestMemory.create() maps hugetlb and hugetlb-memfd regions on 2 MiB pages", [
  ROOT,
  kernelBuiltWith("CONFIG_HUGETLBFS"),
  writable(NR),
], () => {
  withReservedHugePages(4, () => {
    const fds = openFdCount();
    const mem = GuestMemory.create([
      { gpa: g(0n), size: 4n * MiB, backing: "hugetlb" },
      { gpa: g(4n * MiB), size: 4n * MiB, backing: "hugetlb-memfd" },
    ]);
    for (const r of mem.regions) {
      const smaps = Deno.readTextFileSync("/proc/self/smaps");
      const block = smaps.slice(smaps.indexOf(`${r.hostAddress.toString(16)}-`));
      assert.match(block, /KernelPageSize:\s+2048 kB/, `${r} is not on 2 MiB pages`);
    }
    assert.match(
      mapsLinesAt(mem.regions[1].hostAddress)[0],
      /memfd:ram1 \(deleted\)|hugepages|ram1/,
    );
    const data = new Uint8Array(64).fill(5);
    mem.write(g(4n * MiB - 32n), data);
    assert.deepEqual(mem.read(g(4n * MiB - 32n), 64), data);
    const addrs = mem.regions.map((r) => r.hostAddress);
    mem.close();
    for (const a of addrs) assert.deepEqual(mapsLinesAt(a), []);
    assert.equal(openFdCount(), fds);
  });
});

hostConformanceTest(
  "GuestMemory.create() with too few huge pages reserved fails as the fake's pool does",
  [
    ROOT,
    kernelBuiltWith("CONFIG_HUGETLBFS"),
    writable(NR),
  ],
  () => {
    withReservedHugePages(1, () => {
      const fds = openFdCount();
      assert.throws(
        () => GuestMemory.create([{ gpa: g(0n), size: 8n * MiB, backing: "hugetlb" }]),
        (e: unknown) => e instanceof HugePagesUnavailableError && e.needed === 4 && e.free === 1,
      );
      assert.equal(openFdCount(), fds);
    });
  },
);
