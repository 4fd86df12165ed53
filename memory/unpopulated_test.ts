import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { fileHoles } from "../sys/memfd.ts";
import { digestMemory, pageCrcs } from "./digest.ts";
import { GuestMemory } from "./guest_memory.ts";
import { EIO } from "../sys/errno.ts";
import { SyscallError } from "../sys/errors.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import type { MemoryBacking } from "./_backing.ts";

const PAGE = 4096;
const MiB = 1 << 20;
const BASE = 0x4000_0000n;

// 1 MiB region: pages 3, 10, 11, 12 and 255 written, the rest never touched.
function sparse(backing: MemoryBacking): GuestMemory {
  const m = GuestMemory.create([{ gpa: g(BASE), size: BigInt(MiB), backing }]);
  for (const p of [3, 10, 11, 12, 255]) m.view(g(BASE + BigInt(p * PAGE)), PAGE).fill(p);
  return m;
}

const EXPECTED: [number, number][] = [
  [0, 3 * PAGE],
  [4 * PAGE, 6 * PAGE],
  [13 * PAGE, 242 * PAGE],
];

for (const backing of ["memfd", "anonymous"] as MemoryBacking[]) {
  Deno.test(`GuestMemory.unpopulatedRanges() finds never-written ${backing} pages`, () => {
    using m = sparse(backing);
    assert.deepEqual(m.unpopulatedRanges(g(BASE), MiB), EXPECTED);
    // A sub-range answers relative to its start.
    assert.deepEqual(m.unpopulatedRanges(g(BASE + BigInt(8 * PAGE)), 8 * PAGE), [
      [0, 2 * PAGE],
      [5 * PAGE, 3 * PAGE],
    ]);
    // Writing a page populates it.
    m.view(g(BASE + BigInt(100 * PAGE)), 1)[0] = 1;
    assert.deepEqual(m.unpopulatedRanges(g(BASE), MiB).slice(2), [
      [13 * PAGE, 87 * PAGE],
      [101 * PAGE, 154 * PAGE],
    ]);
    assert.throws(() => m.unpopulatedRanges(g(BASE + 1n), PAGE), RangeError);
    assert.throws(() => m.unpopulatedRanges(g(BASE), MiB + PAGE), RangeError);
  });
}

Deno.test("GuestMemory.unpopulatedRanges() is empty where the kernel cannot tell", () => {
  using m = sparse("memfd");
  using attached = GuestMemory.attach(m.describe()); // no fd in an attached memory
  assert.deepEqual(attached.unpopulatedRanges(g(BASE), MiB), []);
});

Deno.test("digestMemory() hashes holes as zero without allocating them", () => {
  using m = sparse("memfd");
  const fd = m.regions[0].unsafeFd;
  const holesBefore = fileHoles(fd, { start: 0n, end: BigInt(MiB) });
  const d = digestMemory(m);
  const sha = digestMemory(m, { algorithm: "sha256" });
  assert.deepEqual(
    fileHoles(fd, { start: 0n, end: BigInt(MiB) }),
    holesBefore,
    "the digest allocated nothing",
  );
  // The same bytes, fully populated, digest the same.
  using full = GuestMemory.create([{ gpa: g(BASE), size: BigInt(MiB) }], { prefault: true });
  full.view(g(BASE), MiB).set(m.read(g(BASE), MiB));
  assert.deepEqual(full.unpopulatedRanges(g(BASE), MiB), []);
  assert.equal(digestMemory(full).hex, d.hex);
  assert.equal(digestMemory(full, { algorithm: "sha256" }).hex, sha.hex);
  assert.deepEqual(d.pageCrcs![0], pageCrcs(full.view(g(BASE), MiB)));
});

Deno.test("fileHoles() stops after `limit` holes", () => {
  using m = GuestMemory.create([{ gpa: g(BASE), size: BigInt(MiB), backing: "memfd" }]);
  for (let p = 1; p < 256; p += 2) m.view(g(BASE + BigInt(p * PAGE)), 1)[0] = 1; // odd pages
  const fd = m.regions[0].unsafeFd;
  assert.equal(fileHoles(fd, { start: 0n, end: BigInt(MiB) }).length, 128);
  assert.deepEqual(fileHoles(fd, { start: 0n, end: BigInt(MiB) }, { limit: 3 }), [
    [0n, 4096n],
    [8192n, 12288n],
    [16384n, 20480n],
  ]);
});

Deno.test("GuestMemory.unpopulatedRanges() asks FakeKernel, and a failed lseek or pagemap read leaves nothing open", () => {
  for (const backing of ["memfd", "anonymous"] as MemoryBacking[]) {
    const kernel = new FakeKernel();
    {
      using m = GuestMemory.create([{ gpa: g(BASE), size: BigInt(MiB), backing }], {
        syscalls: kernel,
      });
      m.view(g(BASE + BigInt(3 * PAGE)), PAGE).fill(3);
      kernel.clearCalls();
      assert.deepEqual(m.unpopulatedRanges(g(BASE), MiB), [[0, 3 * PAGE], [4 * PAGE, 252 * PAGE]]);
      const asked = backing === "memfd" ? "lseek" : "pread";
      assert.ok(kernel.calls.some((c) => c.syscall === asked), `${backing}: asked with ${asked}`);
      kernel.failNext(backing === "memfd" ? "lseek" : "pread /proc/self/pagemap", EIO);
      assert.throws(
        () => m.unpopulatedRanges(g(BASE), MiB),
        (e: unknown) => e instanceof SyscallError && e.errno === EIO,
      );
      assert.equal(kernel.openFds, backing === "memfd" ? 1 : 0, kernel.openFdDescriptions().join());
    }
    assert.equal(kernel.openFds + kernel.liveMappings, 0);
  }
});
