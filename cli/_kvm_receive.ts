// `receive --guest kvm`: the destination builds its VM over fresh guest RAM
// (memfd regions mapped as memory slots), restores RAM and vCPU state from
// the stream, resumes the guest, lets it run on (`--run-after-ms`), and
// checks that it lived through the migration: its counter continues from
// the source's last value, its checksum and its own sum of its pages still
// match, its heartbeat goes on. Any failed check fails the destination.

import { checksumAfter } from "../kvm/guest/workload.ts";
import { GuestProgram } from "../kvm/guest/program.ts";
import type { Kvm } from "../kvm/kvm.ts";
import type { GuestMemory } from "../memory/guest_memory.ts";
import type { ReceivedGuest } from "../migration/guest/destination.ts";
import { KVM_STATE_DEVICE_ID, KvmStateDevice } from "../migration/guest/kvm_state_device.ts";
import {
  bounded,
  countersOf,
  type DestinationGuestReport,
  guestLine,
  parseHeartbeat,
  TEST_GUEST_DEVICE_ID,
  TestGuestDevice,
  waitFor,
} from "./_kvm_guest.ts";
import type { Progress } from "./progress.ts";

/** Writes the destination runs after `--run-after-ms`, bounded and acknowledged. */
const CHECK_WRITES = 64;
/** Bound on each command and on the first heartbeat after the restore. */
const GUEST_TIMEOUT_MS = 30_000;

/** The destination's VM, made before the stream arrives, and the devices it restores. */
export interface KvmDestination extends Disposable {
  /** The devices for `receiveGuest()`. */
  readonly devices: { readonly id: string; loadState(bytes: Uint8Array): Promise<void> }[];
  /**
   * After the image is verified and the devices restored: resumes the guest,
   * lets it run, checks it.
   */
  resume(got: ReceivedGuest, runAfterMs: number): Promise<DestinationGuestReport>;
}

/** Makes the destination's VM over `memory` (mapped as memory slots). */
export function kvmDestination(
  kvm: Kvm,
  memory: GuestMemory,
  progress: Progress,
): KvmDestination {
  const vm = kvm.createVm();
  let slots: Disposable;
  try {
    slots = vm.addMemory(memory);
  } catch (e) {
    vm.close();
    throw e;
  }
  const cpu = new KvmStateDevice(vm);
  const info = new TestGuestDevice();
  let guest: GuestProgram | undefined;
  const close = () => {
    guest?.close();
    vm.close();
    slots[Symbol.dispose]();
  };
  return {
    devices: [cpu, info],
    async resume(got, runAfterMs) {
      const report: DestinationGuestReport = {
        kind: "kvm",
        source: info.view,
        heartbeats: [],
        verdict: "failed",
        failures: [],
      };
      const fail = (why: string) => report.failures.push(why);
      if (!got.summary.deviceStates.has(KVM_STATE_DEVICE_ID)) {
        fail("the stream carried no vCPU state (was the source `migrate --guest kvm`?)");
        return report;
      }
      if (!got.summary.deviceStates.has(TEST_GUEST_DEVICE_ID) || info.view === undefined) {
        fail("the stream carried no view of the test guest from the source");
      }
      const vcpu = vm.vcpus[0];
      const heartbeats: { n: bigint; counter: bigint }[] = [];
      guest = GuestProgram.attach(vm, vcpu, memory, {
        onLine: (line) => {
          const beat = parseHeartbeat(line);
          if (beat !== undefined) {
            heartbeats.push(beat);
            report.heartbeats.push(line);
          }
          guestLine(progress, line);
        },
      });
      const restored = guest.mailbox();
      report.atRestore = countersOf(restored);
      const src = info.view;
      if (restored.counter === 0n) fail("the restored guest's counter is 0: it would start over");
      if (src !== undefined && String(restored.counter) !== src.counter) {
        fail(`the restored counter ${restored.counter} is not the source's last ${src.counter}`);
      }
      const t0 = performance.now();
      await vm.start();
      progress.done(
        `kvm: guest resumed here at counter ${restored.counter} (the source stopped it at ${
          src?.counter ?? "?"
        }); running on for ${runAfterMs} ms`,
      );
      await new Promise((r) => setTimeout(r, runAfterMs));
      try {
        if (src !== undefined && src.heartbeatMs > 0 && heartbeats.length === 0) {
          await waitFor(
            () => heartbeats.length > 0 || vcpu.state === "stopped",
            GUEST_TIMEOUT_MS,
            "A heartbeat from the resumed guest",
          ).catch((e) => fail((e as Error).message));
        }
        // A bounded run the guest acknowledges, then its own sum of its pages.
        for (
          const [cmd, params] of [["run", { maxWrites: CHECK_WRITES }], ["verify", {}]] as const
        ) {
          const stop = await bounded(guest.command(cmd, params), GUEST_TIMEOUT_MS, `The ${cmd}`);
          if (stop !== undefined) {
            throw stop.error ?? new TypeError(`The guest stopped during ${cmd}`);
          }
        }
      } catch (e) {
        fail(`the guest did not go on: ${(e as Error).message}`);
      }
      await vm.pause();
      report.ranMs = performance.now() - t0;
      const mb = guest.mailbox();
      report.after = { ...countersOf(mb), verifySum: String(mb.verifySum) };
      if (mb.counter < restored.counter + BigInt(CHECK_WRITES)) {
        fail(`the counter went from ${restored.counter} to only ${mb.counter}`);
      }
      if (mb.boots !== restored.boots) fail(`the guest booted again (${mb.boots} boots)`);
      if (mb.checksum !== checksumAfter(guest.seed, mb.counter)) {
        fail(`the guest's checksum ${mb.checksum} is not the one ${mb.counter} writes give`);
      }
      if (mb.verifySum !== mb.pageSum) {
        fail(`the guest's sum of its pages ${mb.verifySum} is not its running sum ${mb.pageSum}`);
      }
      const ours = guest.dataPageSum();
      if (ours !== mb.pageSum) fail(`its pages sum to ${ours} here, not its ${mb.pageSum}`);
      if (src !== undefined && src.heartbeatMs > 0) {
        const first = heartbeats[0];
        if (first === undefined) fail("no heartbeat after the restore");
        else if (first.n <= BigInt(src.heartbeats) || first.counter < BigInt(src.counter)) {
          fail(
            `the first heartbeat here (${first.n}, counter ${first.counter}) does not follow the ` +
              `source's (${src.heartbeats}, counter ${src.counter})`,
          );
        }
      }
      report.verdict = report.failures.length === 0 ? "continued" : "failed";
      return report;
    },
    [Symbol.dispose]: close,
  };
}

/** The destination's lines about the guest: both sides' counters and the verdict. */
export function guestSummary(g: DestinationGuestReport): string {
  const lines = [
    `guest ${g.verdict === "continued" ? "lived through the migration" : "FAILED its checks"}: ` +
    `counter ${g.source?.counter ?? "?"} at the source's stop, ${
      g.atRestore?.counter ?? "?"
    } restored here, ${g.after?.counter ?? "?"} after ${
      g.ranMs === undefined ? "-" : `${g.ranMs.toFixed(0)} ms`
    } of running here`,
    `  checksum ${g.after?.checksum ?? "-"}, page sum ${g.after?.pageSum ?? "-"} (VERIFY ${
      g.after?.verifySum ?? "-"
    }), boots ${g.after?.boots ?? "-"}; ${g.heartbeats.length} heartbeats here, first: ${
      g.heartbeats[0] ?? "-"
    }`,
  ];
  for (const f of g.failures) lines.push(`  check failed: ${f}`);
  return lines.join("\n");
}
