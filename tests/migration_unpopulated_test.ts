// Never-written guest RAM migrates as zero without the source reading it:
// on memfd, reading would allocate every page.
import assert from "node:assert/strict";
import { GuestMemory } from "../memory/guest_memory.ts";
import { receiveGuest } from "../migration/guest/destination.ts";
import { listenEndpoint } from "../migration/transport/open.ts";
import { migrateGuest } from "../migration/guest/source.ts";
import { guestAddress as g } from "../sys/address.ts";
import { fileHoles } from "../sys/memfd.ts";
import { fillSeeded } from "./_random.ts";

const MiB = 1 << 20;
const SIZE = 64 * MiB;

for (const backing of ["memfd", "anonymous"] as const) {
  Deno.test(`migrateGuest() sends never-written ${backing} RAM as zero${backing === "memfd" ? " without allocating it" : ""}`, async () => {
    using source = GuestMemory.create([{ gpa: g(0n), size: BigInt(SIZE), backing }]);
    // 1 MiB of data every 8 MiB; the other 56 MiB are never written.
    for (let off = 0; off < SIZE; off += 8 * MiB) {
      fillSeeded(source.view(g(BigInt(off)), 65536), off);
      source.view(g(BigInt(off)), MiB).fill(7, 65536);
    }
    const holes = source.unpopulatedRanges(g(0n), SIZE);
    const holeBytes = holes.reduce((n, [, len]) => n + len, 0);
    assert.equal(holeBytes, 56 * MiB);
    const memfdHoles = () =>
      backing === "memfd"
        ? fileHoles(source.regions[0].unsafeFd, { start: 0n, end: BigInt(SIZE) })
        : [];
    const before = memfdHoles();

    using destination = GuestMemory.create([{ gpa: g(0n), size: BigInt(SIZE) }], {
      prefault: true,
    });
    const listener = listenEndpoint("tcp:127.0.0.1:0");
    const ep = listener.endpoint;
    const received = receiveGuest({ memory: destination, from: listener, zeroed: true });
    const report = await migrateGuest({
      memory: source,
      to: `tcp:127.0.0.1:${ep.transport === "tcp" ? ep.port : 0}`,
    });
    const got = await received;
    assert.equal(report.result, "completed", report.error);
    assert.equal(got.digest, report.sourceDigest, "the destination holds the source's bytes");
    assert.equal(report.iterations[0].zeroPages, (56 * MiB) / 4096, "holes went as zero pages");
    assert.ok(report.totalBytes < 9 * MiB, `${report.totalBytes} bytes on the wire`);
    if (backing === "memfd") {
      // Neither the bulk pass nor the digest read (and so allocated) the holes.
      assert.deepEqual(source.unpopulatedRanges(g(0n), SIZE), holes);
      assert.deepEqual(memfdHoles(), before);
    }
    // Anonymous holes: write-protecting them for dirty tracking maps the
    // shared zero page, so afterwards they read as zero without a fault.
  });
}
