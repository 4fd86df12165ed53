// Conformance checks every DirtyTracker must pass, shared by the host tests
// and the in-guest tests (tests/kernel/memory_*_test.ts).

import assert from "node:assert/strict";
import { guestAddress as g } from "../sys/address.ts";
import { createDirtyTracker } from "./auto_tracker.ts";
import { DirtyBitmap } from "./dirty_bitmap.ts";
import type { DirtyTrackerKind } from "./dirty_tracker.ts";
import { GuestMemory } from "./guest_memory.ts";
import type { SoftwareDirtyLog } from "./software_dirty_log.ts";
import { WorkerWriter, type WritePattern } from "./worker_writer.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { missing, orInto, randomWrites, type WriteKind } from "../tests/_memory_support.ts";

const MiB = 1n << 20n;

/** Three regions: two adjacent (anonymous, memfd), one after a hole. */
export function trackerTestMemory(syscalls?: Syscalls): GuestMemory {
  return GuestMemory.create([
    { gpa: g(0n), size: 8n * MiB, name: "anon" },
    { gpa: g(8n * MiB), size: 8n * MiB, name: "shared", backing: "memfd" },
    { gpa: g(64n * MiB), size: 4n * MiB, name: "after-hole" },
  ], syscalls === undefined ? {} : { syscalls });
}

function describe(bms: DirtyBitmap[]): string {
  return bms.map((b, i) => `${i}: ${b.count()} pages`).join(", ");
}

/**
 * Random API writes from this thread, harvested round by round. Exact
 * trackers must report exactly the written pages; others a superset.
 */
export function checkRandomWrites(
  kind: DirtyTrackerKind,
  options: {
    exact: boolean;
    seed: number;
    kinds: WriteKind[];
    falsePositiveBlock?: number;
    syscalls?: Syscalls;
  },
): void {
  using mem = trackerTestMemory(options.syscalls);
  // Touch some memory before tracking starts: it must not be reported.
  mem.fill(g(0n), { length: 1 << 20, value: 1 });
  using tracker = createDirtyTracker(mem, kind);
  tracker.start();
  const first = tracker.harvest();
  if (options.exact) {
    assert.ok(first.every((b) => b.isEmpty()), `fresh harvest: ${describe(first)}`);
  }
  for (let round = 0; round < 4; round++) {
    const expected = randomWrites(mem, {
      seed: options.seed + round,
      count: 40,
      kinds: options.kinds,
    });
    // Reads are not writes.
    for (let i = 0; i < 50; i++) mem.readU32(g(BigInt(i) * 0x3000n));
    const got = tracker.harvest();
    assert.deepEqual(missing(expected, got), [], `round ${round}: pages written but not reported`);
    if (options.falsePositiveBlock !== undefined) {
      // Extra pages are allowed only inside a block (such as a 2 MiB THP)
      // that holds a written page.
      const block = options.falsePositiveBlock;
      for (let r = 0; r < got.length; r++) {
        const stray = got[r].pageIndexes().filter((p) => {
          if (expected[r].test(p)) return false;
          const first = p - (p % block);
          for (let q = first; q < Math.min(first + block, expected[r].pages); q++) {
            if (expected[r].test(q)) return false;
          }
          return true;
        });
        assert.deepEqual(stray, [], `round ${round} region ${r}: pages reported but never written`);
      }
    }
    if (options.exact) {
      for (let r = 0; r < got.length; r++) {
        assert.deepEqual(
          got[r].pageIndexes(),
          expected[r].pageIndexes(),
          `round ${round} region ${r}`,
        );
      }
    }
  }
  const last = tracker.harvest();
  if (options.exact) assert.ok(last.every((b) => b.isEmpty()), `quiet harvest: ${describe(last)}`);
  tracker.stop();
  assert.equal(tracker.active, false);
}

/** Polls until `cond` holds; fails naming `what` after a bound. */
async function waitFor(cond: () => boolean, what: () => string): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`Gave up after 60 s waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * A Worker writes one region (and this thread writes others) while this
 * thread harvests; the union of harvests must contain every page written.
 * Trackers that are not `concurrentSafe` get the writer paused across each
 * harvest, as their documentation requires.
 */
export async function checkWorkerWrites(
  kind: DirtyTrackerKind,
  options: {
    pattern: WritePattern;
    seed: number;
    span?: "word" | "page";
    region?: number;
    syscalls?: Syscalls;
  },
): Promise<void> {
  using mem = trackerTestMemory(options.syscalls);
  using tracker = createDirtyTracker(mem, kind);
  tracker.start();
  const softwareLog = kind === "software" ? tracker as SoftwareDirtyLog : undefined;
  const region = options.region ?? 1;
  await using writer = await WorkerWriter.start(mem, {
    region,
    pattern: options.pattern,
    seed: options.seed,
    span: options.span,
    pagesPerSecond: 20_000,
    softwareLog,
  });
  const union = mem.regions.map((r) => new DirtyBitmap(r.pages));
  const mainExpected = mem.regions.map((r) => new DirtyBitmap(r.pages));
  const harvest = async () => {
    if (!tracker.concurrentSafe) await writer.pause();
    orInto(union, tracker.harvest());
    if (!tracker.concurrentSafe) await writer.resume();
  };
  for (let round = 0; round < 12; round++) {
    const target = writer.writes + 64;
    await waitFor(
      () => writer.writes >= target || writer.state === "stopped",
      () => `the writer to reach ${target} writes (at ${writer.writes}, ${writer.state})`,
    );
    if (round === 4) writer.throttle(0);
    if (round === 6) {
      await writer.pause();
      await writer.resume();
    }
    if (round === 8) writer.throttle(5_000);
    // This thread writes the other regions meanwhile.
    const exp = randomWrites(mem, {
      seed: options.seed * 100 + round,
      count: 8,
      kinds: ["byte", "page"],
    });
    exp[region].clearAll(); // only count the worker in its region
    orInto(mainExpected, exp);
    await harvest();
  }
  await writer.stop();
  orInto(union, tracker.harvest());
  const written = writer.written();
  assert.ok(written.count() > 0, "the worker wrote nothing");
  const expected = mem.regions.map((r) => new DirtyBitmap(r.pages));
  orInto(expected, mainExpected);
  expected[region].orMerge(written);
  assert.deepEqual(missing(expected, union), [], "pages written but never harvested");
}
