// A live migration of guest RAM mapped into the real type1 container, with the
// edu device DMA-writing pages during pre-copy (run by `deno task test:kernel`).
import assert from "node:assert/strict";
import { runMigrationScenario } from "../scenario.ts";
import type { Workload } from "../../migration/engine/workload.ts";
import { VfioContainer } from "../../vfio/container.ts";
import type { RegionMapping } from "../../vfio/region_mapping.ts";
import { EDU, groupAndDevice, waitDma } from "./_group.ts";

const MiB = 1 << 20;
const RAM = 16 * MiB; // IOVA = GPA stays below edu's 28-bit DMA mask
// TCG moves tens of MB/s: the limit leaves room for the full resend (a
// correctness test, not a speed test).
const LIMITS = { downtimeLimitMs: 10_000, maxIterations: 10 };
const PATTERN_PAGE = 0x10000n; // GPA/IOVA of the page whose bytes seed the device buffer

/**
 * The edu device as a workload: every few milliseconds it DMAs its buffer
 * into another guest page, through the IOMMU, behind the CPU's back.
 */
class EduDmaWorkload implements Workload {
  transfers = 0;
  readonly targets = new Set<bigint>();
  #regs: RegionMapping;
  #timer: ReturnType<typeof setInterval> | undefined;
  #seed = 12345;

  constructor(regs: RegionMapping) {
    this.#regs = regs;
  }

  #dma(src: bigint, dst: bigint, toRam: boolean): void {
    this.#regs.writeU64(EDU.DMA_SRC, src);
    this.#regs.writeU64(EDU.DMA_DST, dst);
    this.#regs.writeU64(EDU.DMA_COUNT, 2048n);
    this.#regs.writeU32(EDU.DMA_CMD, EDU.CMD_START | (toRam ? EDU.CMD_TO_RAM : 0));
    waitDma(() => this.#regs.readU32(EDU.DMA_CMD));
  }

  start(): void {
    this.#dma(PATTERN_PAGE, EDU.DMA_BUFFER, false); // RAM -> device buffer
    this.resume();
  }

  // edu finishes a transfer from a QEMU timer (about 100 ms of virtual time),
  // so each tick only starts the next DMA once the previous one is done.
  #busy = false;
  #tick = () => {
    if (this.#regs.readU32(EDU.DMA_CMD) & EDU.CMD_START) return;
    if (this.#busy) this.transfers++;
    this.#seed = (Math.imul(this.#seed, 1103515245) + 12345) >>> 0;
    const page = BigInt(this.#seed % (RAM / 4096 - 32) + 32);
    this.#regs.writeU64(EDU.DMA_SRC, EDU.DMA_BUFFER);
    this.#regs.writeU64(EDU.DMA_DST, page * 4096n);
    this.#regs.writeU64(EDU.DMA_COUNT, 2048n);
    this.#regs.writeU32(EDU.DMA_CMD, EDU.CMD_START | EDU.CMD_TO_RAM); // device buffer -> a guest page
    this.targets.add(page);
    this.#busy = true;
  };

  async pause(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    // Let the transfer in flight land before the final harvest (edu takes
    // microseconds; a device that never finishes fails the test).
    const end = performance.now() + 10_000;
    while (this.#regs.readU32(EDU.DMA_CMD) & EDU.CMD_START) {
      if (performance.now() > end) assert.fail("edu DMA did not finish within 10 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.#busy) this.transfers++;
    this.#busy = false;
  }

  resume(): void {
    this.#timer ??= setInterval(this.#tick, 10);
  }

  setThrottle(): void {}
}

Deno.test("migrateGuest() with edu DMA during pre-copy: all-mapped detected, policy applied, digests equal", async () => {
  const { group, device } = groupAndDevice();
  using container = VfioContainer.open();
  using g = container.attachGroup(group);
  using dev = g.openDevice(device);
  dev.writeConfig(0x04, 2, dev.readConfig(0x04, 2) | 0x6); // memory decode + bus master
  using regs = dev.mmapRegion(0);

  // Without the explicit choice, the imprecise scope is refused before anything is sent.
  const refused = await runMigrationScenario({
    ram: RAM,
    transport: "unix",
    vfio: { container },
    limits: LIMITS,
  });
  assert.equal(refused.report.result, "failed");
  assert.match(refused.report.error!, /all-mapped scope/);
  assert.equal(refused.destination.ok, false);
  assert.equal(refused.sourceDigestAfter, refused.sourceDigestBefore);

  const edu = new EduDmaWorkload(regs);
  const r = await runMigrationScenario({
    ram: RAM,
    transport: "unix",
    fill: (v) => {
      for (let i = 0; i < v.length; i += 4096) v[i] = (i >>> 12) & 0xff;
      v.fill(0xa5, Number(PATTERN_PAGE), Number(PATTERN_PAGE) + 4096);
    },
    vfio: { container },
    limits: LIMITS,
    imprecise: "allow",
    workloads: [edu],
    beforeMigrate: () => edu.start(),
  });
  await edu.pause();
  assert.equal(
    r.report.result,
    "completed",
    `${r.report.error} ${JSON.stringify(r.report.iterations)}`,
  );
  assert.equal(r.report.dirtyScope["vfio-container"], "all-mapped");
  assert.match(r.report.policy.applied, /imprecise device dirty allowed: 16\.0 MiB/);
  assert.ok(r.report.stopCopyPages >= RAM / 4096, "all mapped RAM resent at stop-and-copy");
  assert.ok(edu.transfers > 0, "edu wrote guest pages by DMA during pre-copy");
  assert.notEqual(r.sourceDigestAfter, r.sourceDigestBefore, "the DMA changed the source RAM");
  assert.equal(r.destination.ok, true, r.destination.error);
  assert.equal(
    r.destination.digest,
    r.report.sourceDigest,
    "destination = source at the stop point",
  );
  assert.equal(container.mappings.length, 0, "the scenario unmapped the RAM");
});
