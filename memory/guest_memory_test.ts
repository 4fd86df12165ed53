import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { EACCES, EIO, ENOMEM, ENOSPC } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { GuestMemory } from "./guest_memory.ts";
import { CountingSyscalls, mapsLinesAt } from "../tests/_memory_support.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import { hostConformanceTest, linuxAtLeast } from "../tests/_host_conformance.ts";
import type { MemoryBacking } from "./_backing.ts";

const MiB = 1n << 20n;

function assertReleased(kernel: FakeKernel, what: string): void {
  assert.equal(kernel.openFds, 0, `${what}: fds ${kernel.openFdDescriptions()}`);
  assert.equal(kernel.liveMappings, 0, `${what}: mappings`);
}

function twoAdjacentAndOne(sys?: Syscalls): GuestMemory {
  return GuestMemory.create([
    { gpa: g(0n), size: MiB, name: "low" },
    { gpa: g(MiB), size: MiB, name: "mid", backing: "memfd" },
    { gpa: g(4n * MiB), size: MiB, name: "high" },
  ], { syscalls: sys });
}

for (const backing of ["anonymous", "memfd"] as MemoryBacking[]) {
  Deno.test(`GuestMemory.create() maps ${backing} regions that read back what was written`, () => {
    const kernel = new FakeKernel();
    using mem = GuestMemory.create([{ gpa: g(0x1000_0000n), size: 4n * MiB, backing }], {
      syscalls: kernel,
    });
    const r = mem.regions[0];
    assert.equal(r.backing, backing);
    assert.equal(r.unsafeFd >= 0, backing === "memfd");
    assert.deepEqual(kernel.openFdDescriptions(), backing === "memfd" ? ["memfd ram0"] : []);
    assert.equal(kernel.liveMappings, 1);
    const maps = mapsLinesAt(r.hostAddress);
    assert.equal(maps.length, 1);
    if (backing === "memfd") assert.match(maps[0], /memfd:ram0/);
    mem.writeU8(g(0x1000_0000n), 0xab);
    mem.writeU16(g(0x1000_0010n), 0xbeef);
    mem.writeU32(g(0x1000_0020n), 0xdeadbeef);
    mem.writeU64(g(0x1000_0030n), 0x0123_4567_89ab_cdefn);
    assert.equal(mem.readU8(g(0x1000_0000n)), 0xab);
    assert.equal(mem.readU16(g(0x1000_0010n)), 0xbeef);
    assert.equal(mem.readU32(g(0x1000_0020n)), 0xdeadbeef);
    assert.equal(mem.readU64(g(0x1000_0030n)), 0x0123_4567_89ab_cdefn);
    assert.deepEqual([...mem.read(g(0x1000_0010n), 2)], [0xef, 0xbe]);
    mem.close();
    assertReleased(kernel, backing);
  });
}

hostConformanceTest(
  "GuestMemory.create() prefaults with MAP_POPULATE and with MADV_POPULATE_WRITE",
  [
    linuxAtLeast(5, 14, "MADV_POPULATE_WRITE"),
  ],
  () => {
    for (const prefault of ["populate", "madvise"] as const) {
      using mem = GuestMemory.create([{ gpa: g(0n), size: 2n * MiB, backing: "memfd", prefault }]);
      // Every page is resident: RSS of the mapping is its size.
      const smaps = Deno.readTextFileSync("/proc/self/smaps");
      const start = mem.regions[0].hostAddress.toString(16);
      const block = smaps.slice(smaps.indexOf(`${start}-`));
      const rss = Number(/Rss:\s+(\d+) kB/.exec(block)![1]);
      assert.equal(rss, 2048, `prefault ${prefault}`);
    }
  },
);

Deno.test("GuestMemory.create() sorts regions and rejects overlap and misalignment", () => {
  using mem = GuestMemory.create([{ gpa: g(MiB), size: MiB }, { gpa: g(0n), size: MiB }]);
  assert.deepEqual(mem.regions.map((r) => r.gpa), [0n, MiB]);
  assert.throws(
    () => GuestMemory.create([{ gpa: g(0n), size: 2n * MiB }, { gpa: g(MiB), size: MiB }]),
    (e: Error) => e instanceof RangeError && /overlaps region "ram0"/.test(e.message),
  );
  assert.throws(() => GuestMemory.create([{ gpa: g(0x800n), size: MiB }]), RangeError);
  assert.throws(() => GuestMemory.create([{ gpa: g(0n), size: 100n }]), RangeError);
  assert.throws(() => GuestMemory.create([]), RangeError);
  assert.throws(
    () => GuestMemory.create([{ gpa: g(0n), size: MiB, backing: "hugetlb" }]),
    /not a positive multiple of 0x200000/,
  );
});

Deno.test("GuestMemory.write() crosses two adjacent regions", () => {
  using mem = twoAdjacentAndOne();
  const data = new Uint8Array(8192).map((_, i) => i & 0xff);
  mem.write(g(MiB - 4096n), data);
  assert.deepEqual(mem.read(g(MiB - 4096n), 8192), data);
  assert.deepEqual(mem.view(g(MiB), 4096), data.subarray(4096));
  mem.writeU64(g(MiB - 4n), 0x1122_3344_5566_7788n);
  assert.equal(mem.readU64(g(MiB - 4n)), 0x1122_3344_5566_7788n);
  assert.equal(mem.readU32(g(MiB)), 0x1122_3344);
  mem.fill(g(MiB - 2n), { length: 4, value: 7 });
  assert.deepEqual([...mem.read(g(MiB - 2n), 4)], [7, 7, 7, 7]);
});

Deno.test("GuestMemory.read() rejects a hole", () => {
  using mem = twoAdjacentAndOne();
  assert.throws(() => mem.read(g(3n * MiB), 4), (e: Error) => {
    assert.ok(e instanceof RangeError);
    assert.match(
      e.message,
      /^Cannot read 4 bytes at GPA 0x300000: it lies in the hole between region 1 "mid" \[0x100000, 0x200000\) and region 2 "high" \[0x400000, 0x500000\)$/,
    );
    return true;
  });
  assert.throws(() => mem.readU32(g(2n * MiB)), /GPA 0x200000: it lies in the hole/);
  assert.throws(() => mem.readU8(g(0x10_0000_0000n)), /beyond the last region, region 2 "high"/);
});

Deno.test("GuestMemory.read() rejects a range that crosses into a hole", () => {
  using mem = twoAdjacentAndOne();
  assert.throws(
    () => mem.read(g(2n * MiB - 2n), 4),
    /^RangeError: Cannot read 4 bytes at GPA 0x1ffffe: the range \[0x1ffffe, 0x200002\) crosses the end of region 1 "mid" \[0x100000, 0x200000\) into a hole$/,
  );
  assert.throws(() => mem.readU64(g(5n * MiB - 4n)), /crosses the end of region 2 "high"/);
});

Deno.test("GuestMemory.write() rejects a hole and writes nothing", () => {
  using mem = twoAdjacentAndOne();
  const before = mem.read(g(2n * MiB - 16n), 16);
  assert.throws(
    () => mem.write(g(2n * MiB - 16n), new Uint8Array(32).fill(9)),
    /Cannot write 32 bytes at GPA 0x1ffff0: .* crosses the end of region 1 "mid"/,
  );
  assert.deepEqual(mem.read(g(2n * MiB - 16n), 16), before);
  assert.throws(() => mem.writeU16(g(5n * MiB - 1n), 1), /crosses the end of region 2/);
  assert.throws(
    () => mem.writeU32(g(3n * MiB), 1),
    /Cannot write 4 bytes at GPA 0x300000: it lies in the hole/,
  );
  assert.throws(() => mem.writeU64(g(3n * MiB), 1n), RangeError);
  assert.throws(() => mem.writeU8(g(3n * MiB), 1), RangeError);
  assert.throws(() => mem.fill(g(3n * MiB), { length: 1 }), /Cannot fill/);
});

Deno.test("GuestMemory.read() rejects a GPA below the first region", () => {
  using mem = GuestMemory.create([{ gpa: g(MiB), size: MiB, name: "only" }]);
  assert.throws(
    () => mem.read(g(0n), 1),
    /GPA 0x0: it lies below the first region, region 0 "only"/,
  );
});

Deno.test("GuestMemory.view() is zero-copy within a region and rejects spans and holes", () => {
  using mem = twoAdjacentAndOne();
  const v = mem.view(g(0x1000n), 16);
  v[3] = 0x42;
  assert.equal(mem.readU8(g(0x1003n)), 0x42);
  assert.throws(() => mem.view(g(MiB - 8n), 16), /spans region 0 "low" .* and region 1 "mid"/);
  assert.throws(
    () => mem.view(g(3n * MiB), 16),
    /Cannot view 16 bytes at GPA 0x300000: it lies in the hole/,
  );
  assert.throws(() => mem.view(g(5n * MiB - 8n), 16), /crosses the end of region 2/);
});

Deno.test("GuestMemory.translate() gives the host address of a GPA", () => {
  using mem = twoAdjacentAndOne();
  const mid = mem.regions[1];
  assert.equal(mem.translate(g(MiB + 0x234n)), mid.hostAddress + 0x234n);
  assert.equal(mem.translate(g(MiB), Number(MiB)), mid.hostAddress);
  assert.throws(() => mem.translate(g(MiB - 1n), 2), /not contiguous in host memory/);
  assert.throws(
    () => mem.translate(g(3n * MiB)),
    /Cannot translate 1 bytes at GPA 0x300000: it lies in the hole/,
  );
  assert.equal(mem.findRegion(g(4n * MiB + 5n))?.name, "high");
  assert.equal(mem.findRegion(g(3n * MiB)), undefined);
});

Deno.test("GuestMemory.close() leaves nothing mapped and is idempotent", () => {
  const kernel = new FakeKernel();
  const mem = twoAdjacentAndOne(kernel);
  const addrs = mem.regions.map((r) => r.hostAddress);
  assert.equal(kernel.liveMappings, 3);
  assert.equal(kernel.openFds, 1, "the memfd");
  for (const a of addrs) assert.equal(mapsLinesAt(a).length, 1);
  kernel.clearCalls();
  mem.close();
  mem.close();
  assert.deepEqual(kernel.calls.map((c) => c.syscall), ["munmap", "munmap", "close", "munmap"]);
  for (const a of addrs) assert.deepEqual(mapsLinesAt(a), []);
  assertReleased(kernel, "closed");
  assert.equal(mem.regions.length, 0);
  assert.throws(() => mem.readU8(g(0n)), /Cannot read at GPA 0x0: the guest memory is closed/);
});

Deno.test("GuestMemory.close() tries every release and throws the first failure", () => {
  const kernel = new FakeKernel();
  const mem = twoAdjacentAndOne(kernel);
  kernel.failNext("close", EIO);
  assert.throws(() => mem.close(), (e: unknown) => e instanceof SyscallError && e.errno === EIO);
  assert.equal(mem.closed, true);
  assertReleased(kernel, "after a failed close(2), which releases the fd anyway");
});

Deno.test("GuestMemory.create() unmaps earlier regions when a later mmap fails", () => {
  const kernel = new FakeKernel();
  const sys = new CountingSyscalls(kernel);
  sys.failMmapAt = 2;
  assert.throws(() => twoAdjacentAndOne(sys), /mmap failed: ENOMEM/);
  assert.equal(sys.mmaps, 3);
  assert.equal(sys.munmaps, 2);
  assertReleased(kernel, "third mmap failed");
});

for (
  const [call, errno, backing, prefault] of [
    ["memfd_create", ENOSPC, "memfd", undefined],
    ["ftruncate", ENOSPC, "memfd", undefined],
    ["mmap", ENOMEM, "memfd", undefined],
    ["madvise", ENOMEM, "memfd", "madvise"],
    ["madvise", ENOMEM, "anonymous", "madvise"],
  ] as const
) {
  Deno.test(`GuestMemory.create() of ${backing} leaves nothing behind when ${call} fails`, () => {
    const kernel = new FakeKernel().failNext(call, errno);
    assert.throws(
      () =>
        GuestMemory.create([
          { gpa: g(0n), size: MiB, name: "first" },
          { gpa: g(MiB), size: MiB, name: "second", backing, prefault },
        ], { syscalls: kernel }),
      (e: unknown) => {
        // ENOMEM from mmap is reported as the RangeError naming the limits.
        const cause = e instanceof RangeError ? e.cause : e;
        assert.ok(cause instanceof SyscallError, String(e));
        assert.equal(cause.syscall, call);
        assert.equal(cause.errno, errno);
        return true;
      },
    );
    assert.ok(kernel.calls.some((c) => c.syscall === call && c.errno === errno), "it was called");
    assertReleased(kernel, call);
  });
}

Deno.test("GuestMemory.create() names the limits when mmap fails with ENOMEM", () => {
  const kernel = new FakeKernel().failNext("mmap", ENOMEM);
  assert.throws(
    () => GuestMemory.create([{ gpa: g(0n), size: MiB }], { syscalls: kernel }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message ===
        'Cannot map region "ram0" (1 MiB at GPA 0x0): mmap failed: ENOMEM (12): the kernel ' +
          "refused that much memory or address space (x86_64 processes have 128 TiB; see " +
          "vm.overcommit_memory and ulimit -v)",
  );
  assertReleased(kernel, "ENOMEM");
});

Deno.test("GuestMemory.attach() opens the same RAM without owning it, through its own syscalls", () => {
  const kernel = new FakeKernel();
  using mem = twoAdjacentAndOne(kernel);
  const other = new FakeKernel();
  const attached = GuestMemory.attach(structuredClone(mem.describe()), { syscalls: other });
  assert.equal(attached.syscalls, other);
  attached.writeU32(g(MiB + 8n), 0xcafe);
  assert.equal(mem.readU32(g(MiB + 8n)), 0xcafe);
  // Its pagemap reads go through the syscalls it was given.
  attached.unpopulatedRanges(g(0n), Number(MiB));
  assert.ok(other.calls.some((c) => c.syscall === "open" && c.name === "/proc/self/pagemap"));
  assert.equal(other.openFds, 0);
  attached.close();
  assert.deepEqual(other.calls.filter((c) => c.syscall === "munmap"), [], "it owns nothing");
  assert.equal(mapsLinesAt(mem.regions[1].hostAddress).length, 1);
  assert.equal(mem.readU32(g(MiB + 8n)), 0xcafe);
  // Refused, its reads fail with the kernel's errno and leave nothing open.
  const denied = new FakeKernel({ deniedPaths: ["/proc/self/pagemap"] });
  using refused = GuestMemory.attach(mem.describe(), { syscalls: denied });
  assert.throws(
    () => refused.unpopulatedRanges(g(0n), Number(MiB)),
    (e: unknown) => e instanceof SyscallError && e.errno === EACCES,
  );
  assert.equal(denied.openFds, 0);
});

Deno.test("GuestMemory.observeWrites() sees API writes and views, not reads", () => {
  using mem = twoAdjacentAndOne();
  const seen: [number, number, number][] = [];
  using _obs = mem.observeWrites((r, o, n) => seen.push([r, o, n]));
  mem.write(g(MiB - 2n), new Uint8Array(4));
  mem.readU32(g(0n));
  mem.readView(g(0n), 8);
  mem.writeU16(g(4n * MiB), 1);
  mem.view(g(0x2000n), 8);
  assert.deepEqual(seen, [[0, Number(MiB) - 2, 2], [1, 0, 2], [2, 0, 2], [0, 0x2000, 8]]);
});

Deno.test("GuestMemory.create() refuses to prefault more than the host can back, in one line", () => {
  assert.throws(
    () => GuestMemory.create([{ gpa: g(0n), size: 1n << 40n }], { prefault: true }),
    (e: Error) =>
      e instanceof RangeError &&
      /^Cannot back the guest RAM to prefault \(1 TiB\): this machine can populate [\d.]+ [KMGT]iB now \((MemAvailable in \/proc\/meminfo|\/sys\/fs\/cgroup.*memory\.max)\)/
        .test(e.message),
  );
});

Deno.test("GuestMemory.create() names the limits when the kernel refuses 200 TiB with ENOMEM", () => {
  // 200 TiB is beyond x86_64's 128 TiB of user address space.
  assert.throws(
    () => GuestMemory.create([{ gpa: g(0n), size: 200n << 40n }]),
    (e: Error) =>
      e instanceof RangeError &&
      e.message.startsWith(
        'Cannot map region "ram0" (204800 GiB at GPA 0x0): mmap failed: ENOMEM (12): ',
      ) &&
      e.message.includes("128 TiB"),
  );
});
