// `migrate --guest kvm`: boots the test guest on KVM in the source's guest
// RAM (memfd regions mapped as memory slots), lets it run its workload, and
// migrates it running: KVM's dirty log (or ring) and the VMM's own writes
// drive pre-copy, stop-and-copy pauses the vCPUs and sends their state, and
// auto-converge throttles the vCPUs.

import { KvmDirtyLog } from "../kvm/dirty_log.ts";
import { KvmDirtyRing } from "../kvm/dirty_ring.ts";
import { buildGuestImage } from "../kvm/guest/build.ts";
import type { GuestPattern } from "../kvm/guest/layout.ts";
import { GuestProgram } from "../kvm/guest/program.ts";
import type { Kvm } from "../kvm/kvm.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";
import type { ConvergenceLimits } from "../migration/engine/convergence.ts";
import type { DeviceMigrator } from "../migration/engine/device_migrator.ts";
import { MigrationFailure } from "../migration/engine/precopy.ts";
import type { MigrationReport } from "../migration/engine/report.ts";
import type { MigrationEvent } from "../migration/engine/status.ts";
import { KvmGuestDirtySource } from "../migration/guest/kvm_dirty_source.ts";
import { KvmStateDevice } from "../migration/guest/kvm_state_device.ts";
import { KvmWorkload } from "../migration/guest/kvm_workload.ts";
import { migrateGuest, type MigrateGuestOptions } from "../migration/guest/source.ts";
import { VmmWriteSource } from "../migration/guest/vmm_write_source.ts";
import type { VfioContainer } from "../vfio/container.ts";
import { peakRssBytes } from "../sys/procfs.ts";
import {
  bounded,
  countersOf,
  guestLine,
  parseHeartbeat,
  type SourceGuestReport,
  TestGuestDevice,
  waitFor,
} from "./_kvm_guest.ts";
import type { Progress } from "./progress.ts";
import type { ReportFile } from "./report_file.ts";

/** Per-vCPU dirty ring with `--kvm-dirty ring`: 16384 entries. */
const RING_BYTES = 1 << 18;
const BOOT_TIMEOUT_MS = 30_000;

/** What `runMigrate` parsed, for the KVM guest. */
export interface KvmMigrateOptions {
  memory: GuestMemory;
  to: string;
  /** A `tls:` destination's credentials. */
  tls: MigrateGuestOptions["tls"];
  pattern: GuestPattern;
  /** Bytes per second the guest writes (0: as fast as it can). */
  rate: number;
  seed: number;
  /** The data pages already hold a fill. */
  filled: boolean;
  heartbeatMs: number;
  /** How long the guest runs before the migration starts, ms. */
  runBeforeMs: number;
  dirtyLog: "bitmap" | "ring";
  limits: ConvergenceLimits;
  maxBandwidth?: number;
  compress: "zstd" | "auto" | "none";
  /** Parallel channels for RAM (1: the main connection only). */
  channels: number;
  peerTimeoutMs: number;
  signal: AbortSignal;
  vfio?: { container: VfioContainer };
  devices: DeviceMigrator[];
  imprecise: "allow" | "refuse";
  progress: Progress;
  reportFile?: ReportFile;
  onEvent: (e: MigrationEvent) => void;
  summarize: (r: MigrationReport) => string;
}

/** Runs the KVM source; returns the exit status (0 when the destination verified the image). */
export async function migrateKvmGuest(kvm: Kvm, o: KvmMigrateOptions): Promise<number> {
  const { memory, progress } = o;
  const image = await buildGuestImage();
  using vm = kvm.createVm(o.dirtyLog === "ring" ? { dirtyRingBytes: RING_BYTES } : {});
  using _slots = vm.addMemory(memory);
  const vcpu = vm.createVcpu();
  let heartbeatLines = 0;
  let lastHeartbeat: string | undefined;
  using guest = GuestProgram.install(vm, vcpu, memory, {
    image,
    seed: o.seed,
    filledData: o.filled,
    onLine: (line) => {
      if (parseHeartbeat(line) !== undefined) {
        heartbeatLines++;
        lastHeartbeat = line;
      }
      guestLine(progress, line);
    },
  });
  await vcpu.start();
  try {
    const boot = await bounded(guest.command("idle"), BOOT_TIMEOUT_MS, "The test guest's boot");
    if (boot !== undefined) {
      throw boot.error ?? new TypeError("The test guest stopped while it booted");
    }
    const pagesPerSecond = Math.round(o.rate / 4096);
    void guest.command("run", {
      pattern: o.pattern,
      pagesPerSecond,
      heartbeatMs: o.heartbeatMs,
      maxWrites: 0,
    });
    await waitFor(() => guest.mailbox().counter > 0n, BOOT_TIMEOUT_MS, "The guest's first write");
    progress.done(
      `kvm: test guest running on ${vm.vcpus.length} vCPU (seed ${guest.seed}): ${o.pattern} writes ` +
        `over ${guest.dataPages} data pages at ${
          pagesPerSecond === 0 ? "full speed" : `${pagesPerSecond} pages/s`
        }, heartbeat every ${o.heartbeatMs} ms; dirty pages from KVM's dirty ${o.dirtyLog}`,
    );
    if (o.runBeforeMs > 0) await new Promise((r) => setTimeout(r, o.runBeforeMs));
    using kvmDirty = o.dirtyLog === "ring" ? new KvmDirtyRing(vm) : new KvmDirtyLog(vm);
    using workload = new KvmWorkload(vm);
    const info = new TestGuestDevice(guest, {
      heartbeatMs: o.heartbeatMs,
      lastHeartbeat: () => lastHeartbeat,
    });
    let report: MigrationReport;
    let code = 0;
    try {
      report = await migrateGuest({
        memory,
        to: o.to,
        tls: o.tls,
        workload,
        guestSources: [
          new KvmGuestDirtySource(kvmDirty, vm, memory.regions),
          new VmmWriteSource(memory),
        ],
        vfio: o.vfio,
        devices: [...o.devices, new KvmStateDevice(vm), info],
        limits: o.limits,
        maxBandwidth: o.maxBandwidth,
        compress: o.compress,
        channels: o.channels,
        peerTimeoutMs: o.peerTimeoutMs,
        signal: o.signal,
        imprecise: o.imprecise,
        onEvent: o.onEvent,
      });
    } catch (e) {
      if (!(e instanceof MigrationFailure)) throw e;
      report = e.report;
      code = 1;
    }
    // Paused after a completed migration (the destination owns the guest);
    // running on after a failed one, until this process stops it.
    await vm.pause();
    const guestReport: SourceGuestReport = {
      kind: "kvm",
      dirtyLog: o.dirtyLog,
      atStop: info.view,
      atEnd: countersOf(guest.mailbox()),
      throttle: workload.stats,
      heartbeatLines,
    };
    report.peakRssBytes = peakRssBytes();
    const at = info.view;
    progress.done(
      [
        o.summarize(report),
        at === undefined
          ? `  guest: not stopped for migration; counter ${guestReport.atEnd.counter} when let go`
          : `  guest: counter ${at.counter} and heartbeat ${at.heartbeats} at the stop point; ` +
            `checksum ${at.checksumOk ? "as its counter implies" : "WRONG"}${
              workload.stats.periods > 0
                ? `; throttled ${workload.stats.periods} periods (${
                  workload.stats.sleptMs.toFixed(0)
                } ms)`
                : ""
            }`,
      ].join("\n"),
    );
    o.reportFile?.write(JSON.stringify({ ...report, guest: guestReport }, null, 2) + "\n");
    return code;
  } finally {
    await vm.stop();
  }
}
