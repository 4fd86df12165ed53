// Huge-page backings. Reserving huge pages needs root: these tests write
// /proc/sys/vm/nr_hugepages, restore the value they found, and fail (never
// skip) with a clear message when they cannot.
import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { HugePagesUnavailableError } from "./errors.ts";
import { GuestMemory } from "./guest_memory.ts";
import { CountingSyscalls, mapsLinesAt, openFdCount } from "../tests/_memory_support.ts";

const NR = "/proc/sys/vm/nr_hugepages";
const MiB = 1n << 20n;

function freeHugePages(): number {
  return Number(/HugePages_Free:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))![1]);
}

/** Runs `fn` with exactly `extra` more huge pages reserved than found, then restores. */
function withReservedHugePages(extra: number, fn: () => void): void {
  const found = Deno.readTextFileSync(NR).trim();
  const want = Number(found) - freeHugePages() + extra; // in use by others + what we need
  try {
    Deno.writeTextFileSync(NR, `${want}\n`);
  } catch (e) {
    throw new Error(
      `Cannot reserve huge pages for this test: writing ${want} to ${NR} failed (${e}). ` +
        "Run the tests as root (or reserve them beforehand) on a kernel with hugetlbfs",
    );
  }
  try {
    const got = Number(Deno.readTextFileSync(NR).trim());
    assert.equal(got, want, `${NR} reserved ${got} pages, not ${want}: memory is too fragmented`);
    fn();
  } finally {
    Deno.writeTextFileSync(NR, `${found}\n`);
    assert.equal(Deno.readTextFileSync(NR).trim(), found, `${NR} was not restored to ${found}`);
  }
}

Deno.test("GuestMemory.create() maps hugetlb and hugetlb-memfd regions", () => {
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

Deno.test("GuestMemory.create() says how to reserve huge pages and leaves nothing mapped", () => {
  withReservedHugePages(1, () => {
    for (const backing of ["hugetlb", "hugetlb-memfd"] as const) {
      const sys = new CountingSyscalls();
      const fds = openFdCount();
      const err = assert.throws(
        () =>
          GuestMemory.create([
            { gpa: g(0n), size: MiB, name: "small" },
            { gpa: g(1n << 30n), size: 8n * MiB, backing, name: "big" },
          ], { syscalls: sys, prefault: backing === "hugetlb-memfd" ? "madvise" : undefined }),
        (e: Error) => {
          assert.ok(e instanceof HugePagesUnavailableError, `${backing}: ${e}`);
          assert.equal(e.needed, 4);
          assert.match(
            e.message,
            /Cannot map region "big" \(8 MiB at GPA 0x40000000\) with 2 MiB huge pages: 4 are needed, 1 are free/,
          );
          assert.match(e.message, /\/proc\/sys\/vm\/nr_hugepages/);
          assert.match(e.message, /echo N > \/proc\/sys\/vm\/nr_hugepages/);
          return true;
        },
      );
      void err;
      assert.equal(sys.mapped.size, 0, `${backing}: something is still mapped`);
      assert.equal(openFdCount(), fds, `${backing}: an fd leaked`);
    }
  });
});
