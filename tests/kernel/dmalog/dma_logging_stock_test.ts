// kernel-profiles: stock-6.12
// Device DMA logging on Debian's stock 6.12 kernel, whose vfio is built
// without the iova_bitmap helpers (CONFIG_IOMMUFD_DRIVER unset): the mtty
// sample (built out of tree by the harness from the source package of the
// same version) has vfio_log_ops, so PROBE, START and STOP succeed and REPORT
// answers EOPNOTSUPP. DmaLoggingDirtySource turns that into
// DirtyTrackingUnavailableError, and migrateGuest() lists the log as
// unavailable and completes through the container (type1's pinned scope).
import assert from "node:assert/strict";
import { iova } from "../../../sys/address.ts";
import { EOPNOTSUPP } from "../../../sys/errno.ts";
import { IoctlError } from "../../../sys/errors.ts";
import { DmaLoggingDirtySource } from "../../../migration/guest/dma_logging_dirty_source.ts";
import { VfioContainer } from "../../../vfio/container.ts";
import {
  reportDmaLogging,
  startDmaLogging,
  stopDmaLogging,
} from "../../../vfio/device_dma_logging.ts";
import { probeDmaLogging, readMigrationFlags } from "../../../vfio/device_migration_feature.ts";
import { DirtyTrackingUnavailableError } from "../../../vfio/errors.ts";
import { anonMemory } from "../../anon_memory.ts";
import { runMigrationScenario } from "../../scenario.ts";
import { bootProfile } from "../env.ts";

const PAGE = 0x1000n;
const BASE = 0x100000n;
const PAGES = 64n;
const MiB = 1 << 20;
const TYPES = "/sys/class/mdev_bus/mtty/mdev_supported_types";
/** VFIO_MIGRATION_STOP_COPY | P2P | PRE_COPY: what mtty offers. */
const MTTY_MIGRATION_FLAGS = 0x7;
/** Debian's stock 6.12 kernel from bookworm-backports, as `uname -r` prints it. */
const STOCK_RELEASE = /^6\.12\.\d+\+deb12-amd64$/;

/** Checks that this is the stock kernel with the out-of-tree mtty; returns `uname -r`. */
function stockKernel(): string {
  bootProfile("stock-6.12");
  const release = Deno.osRelease();
  const version = Deno.readTextFileSync("/proc/version").trim();
  assert.match(release, STOCK_RELEASE, `uname -r: ${release}, not Debian's stock 6.12`);
  assert.match(version, /Debian 6\.12\./, `uname -r ${release}: /proc/version: ${version}`);
  let taint = "";
  try {
    taint = Deno.readTextFileSync("/sys/module/mtty/taint").trim();
  } catch {
    assert.fail(`uname -r ${release}: no mtty module loaded (the harness loads it)`);
  }
  assert.match(taint, /O/, `uname -r ${release}: mtty is not the out-of-tree build (${taint})`);
  return release;
}

/** An mtty mdev instance; disposing it removes the mdev. */
function createMtty(release: string): { uuid: string; group: number } & Disposable {
  const types = [...Deno.readDirSync(TYPES)].map((e) => e.name).sort();
  const type = types.find((t) => t.endsWith("-1"));
  assert.ok(type !== undefined, `uname -r ${release}: no single-port mtty type in ${types}`);
  const uuid = crypto.randomUUID();
  Deno.writeTextFileSync(`${TYPES}/${type}/create`, uuid);
  const link = Deno.readLinkSync(`/sys/bus/mdev/devices/${uuid}/iommu_group`);
  let live = true;
  return {
    uuid,
    group: Number(link.split("/").pop()),
    [Symbol.dispose]() {
      if (!live) return;
      live = false;
      Deno.writeTextFileSync(`/sys/bus/mdev/devices/${uuid}/remove`, "1");
    },
  };
}

Deno.test("stock 6.12: the mtty mdev's DMA logging probes, STARTs and STOPs, and REPORT answers EOPNOTSUPP (vfio without the iova_bitmap helpers)", () => {
  const release = stockKernel();
  const at = `uname -r ${release}`;
  console.log(`${at}: ${Deno.readTextFileSync("/proc/version").trim()}`);
  using mdev = createMtty(release);
  using container = VfioContainer.open();
  using group = container.attachGroup(mdev.group);
  using device = group.openDevice(mdev.uuid);
  using ram = anonMemory(PAGES * PAGE);
  using _dma = container.mapDma(iova(BASE), { vaddr: ram.vaddr, size: ram.size });
  const sys = device.syscalls;
  const fd = device.unsafeFd;
  assert.equal(readMigrationFlags(sys, fd), MTTY_MIGRATION_FLAGS, `${at}: mtty's migration flags`);
  assert.equal(probeDmaLogging(sys, fd), true, `${at}: PROBE of DMA_LOGGING_START`);
  const pageSize = startDmaLogging(sys, fd, {
    pageSize: PAGE,
    ranges: [{ iova: BASE, length: ram.size }],
  });
  assert.equal(pageSize, PAGE, `${at}: the page size START chose`);
  try {
    assert.throws(
      () =>
        reportDmaLogging(sys, fd, {
          iova: BASE,
          length: ram.size,
          pageSize,
          bitmap: new Uint8Array(Number(PAGES / 8n)),
        }),
      (e: unknown) => {
        assert.ok(e instanceof IoctlError, `${at}: ${e}`);
        assert.equal(e.errno, EOPNOTSUPP, `${at}: ${e.message}`);
        assert.match(e.message, /^VFIO_DEVICE_FEATURE\(DMA_LOGGING_REPORT\) .*EOPNOTSUPP/, at);
        return true;
      },
      `${at}: REPORT on a vfio without the iova_bitmap helpers`,
    );
  } finally {
    stopDmaLogging(sys, fd);
  }
});

Deno.test("stock 6.12: DmaLoggingDirtySource falls back on REPORT's EOPNOTSUPP, and migrateGuest() completes through the container and says why the log was not used", async () => {
  const release = stockKernel();
  const at = `uname -r ${release}`;
  using mdev = createMtty(release);
  using container = VfioContainer.open();
  using group = container.attachGroup(mdev.group);
  using device = group.openDevice(mdev.uuid);
  const name = `group ${mdev.group}`;
  const fallback =
    /^device \S+ can start DMA logging but its kernel cannot report it \(DMA_LOGGING_REPORT: EOPNOTSUPP, vfio built without the iova_bitmap helpers, CONFIG_IOMMUFD_DRIVER\); using the other dirty sources for it$/;

  {
    using ram = anonMemory(PAGES * PAGE);
    using _dma = container.mapDma(iova(BASE), { vaddr: ram.vaddr, size: ram.size });
    const source = new DmaLoggingDirtySource(device, [{ gpa: 0n, size: ram.size }], {
      iovaBase: BASE,
      devices: [name],
    });
    assert.throws(() => source.start(), (e: unknown) => {
      assert.ok(e instanceof DirtyTrackingUnavailableError, `${at}: ${e}`);
      assert.match(e.reason, fallback, at);
      assert.equal(e.message, `Device-side dirty tracking unavailable: ${e.reason}`, at);
      assert.ok(e.cause instanceof IoctlError && e.cause.errno === EOPNOTSUPP, `${at}: ${e.cause}`);
      return true;
    });
    assert.equal(source.running, false, `${at}: logging stopped after the failed REPORT`);
  }

  const ramSize = 16 * MiB;
  const r = await runMigrationScenario({
    ram: ramSize,
    transport: "unix",
    vfio: { container },
    dmaLogging: { device, devices: [name] },
    workload: { pattern: "random", pagesPerSecond: 500, seed: 1 },
    limits: { downtimeLimitMs: 5_000, maxIterations: 10 },
  });
  const rows = JSON.stringify(r.report.iterations);
  assert.equal(r.report.result, "completed", `${at}: ${r.report.error} ${rows}`);
  assert.equal(r.destination.ok, true, `${at}: ${r.destination.error}`);
  assert.equal(r.destination.digest, r.report.sourceDigest, `${at}: destination = source`);
  const selection = r.report.sourceSelection!;
  assert.deepEqual(selection.regions[0].served, [
    { source: "vfio-container", scope: "precise", devices: [name] },
  ], `${at}: the container's pinned scope serves mtty`);
  assert.equal(selection.unavailable.length, 1, `${at}: ${JSON.stringify(selection.unavailable)}`);
  assert.equal(selection.unavailable[0].source, "vfio-dma-logging", at);
  assert.match(selection.unavailable[0].reason, fallback, at);
  assert.equal(r.report.dirtyScope["vfio-container"], "precise", at);
  assert.equal(r.report.dirtyScope["vfio-dma-logging"], undefined, at);
  for (const row of r.report.iterations) {
    assert.equal(row.dirtyPagesBySource["vfio-dma-logging"], undefined, `${at}: ${rows}`);
  }
  assert.ok(r.report.stopCopyPages < ramSize / 4096, `${at}: nothing resent in full`);
});
