/**
 * The migration v2 rows of the faithfulness scenario, for a driver with
 * `STOP_COPY | P2P | PRE_COPY`: the real mtty sample
 * (samples/vfio-mdev/mtty.c, Linux 6.12) and `FakeMigrationDevice`, run
 * through the project's own objects (`VfioContainer`, `VfioGroup`,
 * `VfioDevice`, `VfioDeviceMigration`, `MigrationDataFd`) over either
 * boundary. Each row records the return code or errno, the device state
 * after it, and byte counts as relations (the two drivers' streams are their
 * own: mtty's is struct mtty_data, 24 bytes of header then 36 per port; the
 * fake's is length-prefixed snapshots), so the runs compare row by row.
 *
 * Differences kept on purpose, because each is mtty's own choice and the fake
 * models the UAPI as the vfio-pci variant drivers (mlx5) implement it; the
 * guest test asserts that exactly these rows differ, with both answers:
 *
 * - `read when drained`: mtty's `read()` returns 0 once its pre-copy data is
 *   read (mtty_save_read), the fake answers `ENOMSG`, the UAPI's "no data
 *   now" that mlx5 gives.
 * - `PRECOPY_INFO after a change`: mtty snapshots its ports only on entering
 *   `STOP_COPY` and always reports `dirty_bytes` 0; the fake reports the
 *   changed state as dirty.
 * - `RESUMING -> PRE_COPY, nothing written`: mtty's RESUMING -> STOP arc
 *   fails with `EINVAL` on a stream shorter than struct mtty_data, an empty
 *   one included; the fake loads nothing from an empty session and goes on
 *   (the FSM tests walk RESUMING -> STOP without a stream).
 * - `write a corrupt stream`, `RESUMING -> STOP corrupt`: mtty checks its
 *   header when the write that completes it arrives (`EFAULT`, the bytes kept)
 *   and at RESUMING -> STOP only the length, so it loads the port; the fake's
 *   first bytes are a record length, and the flipped one fails at
 *   RESUMING -> STOP with `EINVAL`.
 * - `write one byte too many`: mtty refuses a write past struct mtty_data
 *   (`ENOMEM`); the fake's stream has no fixed size.
 * - `state after close and reopen in PRE_COPY`: mtty's close_device ends the
 *   session but keeps the state (`PRE_COPY`); the fake, as vfio-pci variant
 *   drivers, is `RUNNING` on every open.
 *
 * Not run at all: `STOP_COPY -> PRE_COPY` (or `PRE_COPY_P2P`). The fake
 * answers `EINVAL` (migration_fsm.ts stops its skip loop at the ERROR
 * sentinel); 6.12.95's vfio_mig_get_next_state() has no such test and loops
 * forever inside the ioctl, with mtty's state_mutex held, so the row would
 * lose the guest.
 *
 * @module
 */

import { EINVAL, ENOMSG } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import { MAP_SHARED, PROT_READ } from "../sys/constants.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_STATE_ERROR as ERROR,
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "../vfio/constants.ts";
import { VfioContainer } from "../vfio/container.ts";
import type { VfioDevice } from "../vfio/device.ts";
import {
  DeviceStateError,
  deviceStateName,
  type MigrationDataFd,
  VfioDeviceMigration,
} from "../vfio/device_migration.ts";
import { VfioStateError } from "../vfio/errors.ts";
import { VFIO_DEVICE_FEATURE, VFIO_MIG_GET_PRECOPY_INFO } from "../vfio/ioctls.ts";
import {
  encodeDeviceFeature,
  encodeMigState,
  encodePrecopyInfoRequest,
} from "../vfio/uapi/device_feature.ts";
import { FakeKernel, FakeMigrationDevice } from "./fake_kernel.ts";
import type { StepResult } from "./faithfulness_scenario.ts";

/**
 * The rows as the real mtty driver answered them (Linux 6.12.95, the test
 * kernel of the custom-6.12-viommu boot): `[step, ret, out]`.
 */
export const MTTY_OBSERVED: readonly (readonly [string, number, string])[] = Object.freeze([
  ["probe", 0, "flags=7 supported=true state=RUNNING"],
  ["MIG_DATA_SIZE", 0, "some state=RUNNING"],
  ["PROBE MIG_DEVICE_STATE", 0, "state=RUNNING"],
  ["SET MIGRATION", -22, "state=RUNNING"],
  ["PROBE SET MIG_DATA_SIZE", -22, "state=RUNNING"],
  ["SET MIG_DEVICE_STATE short", -22, "state=RUNNING"],
  ["GET feature 63", -25, "state=RUNNING"],
  ["SET RUNNING_P2P: data_fd written back", 0, "05000000ffffffff state=RUNNING_P2P"],
  ["RUNNING_P2P -> RUNNING", 0, "no fd state=RUNNING"],
  ["RUNNING -> PRE_COPY", 0, "fd state=PRE_COPY"],
  ["PRECOPY_INFO", 0, "initial=some dirty=0 state=PRE_COPY"],
  ["PRECOPY_INFO argsz 16", -22, "state=PRE_COPY"],
  ["read 4 bytes", 4, "state=PRE_COPY"],
  ["PRECOPY_INFO after 4", 0, "initial=less by 4 dirty=0 state=PRE_COPY"],
  ["read the rest of initial_bytes", 0, "all of it state=PRE_COPY"],
  ["read when drained", 0, "state=PRE_COPY"],
  ["PRECOPY_INFO drained", 0, "initial=0 dirty=0 state=PRE_COPY"],
  ["write to the save fd", -9, "state=PRE_COPY"],
  ["pread the save fd", -29, "state=PRE_COPY"],
  ["mmap the save fd", -19, "state=PRE_COPY"],
  ["PRECOPY_INFO after a change", 0, "initial=0 dirty=0 state=PRE_COPY"],
  ["PRE_COPY -> STOP_COPY", 0, "no fd state=STOP_COPY"],
  ["PRECOPY_INFO in STOP_COPY", -22, "state=STOP_COPY"],
  ["read to the end", 0, "some state=STOP_COPY"],
  ["read at the end", 0, "state=STOP_COPY"],
  ["STOP_COPY -> ERROR", -22, "state=STOP_COPY"],
  ["STOP_COPY -> state 8", -22, "state=STOP_COPY"],
  ["STOP_COPY -> STOP", 0, "no fd state=STOP"],
  ["read after STOP", -19, "state=STOP"],
  ["SET ERROR", -22, "state=STOP"],
  ["STOP -> STOP_COPY stream is MIG_DATA_SIZE", 0, "equal state=STOP"],
  ["RUNNING -> STOP", 0, "no fd state=STOP"],
  ["STOP -> RESUMING", 0, "fd state=RESUMING"],
  ["PRECOPY_INFO on the resume fd", -25, "state=RESUMING"],
  ["read the resume fd", -9, "state=RESUMING"],
  ["RESUMING -> PRE_COPY, nothing written", -22, "state=RESUMING"],
  ["reset", 0, "state=RUNNING"],
  ["truncated: RUNNING -> STOP", 0, "no fd state=STOP"],
  ["truncated: STOP -> RESUMING", 0, "fd state=RESUMING"],
  ["write all but 1", 0, "all state=RESUMING"],
  ["RESUMING -> STOP truncated", -22, "state=RESUMING"],
  ["reset after truncated", 0, "state=RUNNING"],
  ["whole: RUNNING -> STOP", 0, "no fd state=STOP"],
  ["whole: STOP -> RESUMING", 0, "fd state=RESUMING"],
  ["write all but 1 again", 0, "all state=RESUMING"],
  ["RESUMING -> STOP, 1 byte short", -22, "state=RESUMING"],
  ["write the last byte", 1, "state=RESUMING"],
  ["RESUMING -> STOP whole", 0, "no fd state=STOP"],
  ["write after RESUMING -> STOP", -19, "state=STOP"],
  ["STOP -> RUNNING", 0, "no fd state=RUNNING"],
  ["same state", 0, "same state=RUNNING"],
  ["corrupt: RUNNING -> STOP", 0, "no fd state=STOP"],
  ["corrupt: STOP -> RESUMING", 0, "fd state=RESUMING"],
  ["write a corrupt stream", -14, "state=RESUMING"],
  ["RESUMING -> STOP corrupt", 0, "no fd state=STOP"],
  ["reset after corrupt", 0, "state=RUNNING"],
  ["too long: RUNNING -> STOP", 0, "no fd state=STOP"],
  ["too long: STOP -> RESUMING", 0, "fd state=RESUMING"],
  ["write one byte too many", -12, "state=RESUMING"],
  ["RESUMING -> STOP after the refused write", -22, "state=RESUMING"],
  ["reset after one byte too many", 0, "state=RUNNING"],
  ["reset in RESUMING: RUNNING -> STOP", 0, "no fd state=STOP"],
  ["reset in RESUMING: STOP -> RESUMING", 0, "fd state=RESUMING"],
  ["write 4 bytes", 0, "all state=RESUMING"],
  ["reset in RESUMING", 0, "state=RUNNING"],
  ["reset with the resume fd open", 0, "state=RUNNING"],
  ["write after reset", -19, "state=RUNNING"],
  ["RUNNING -> STOP -> RESUMING again", 0, "fd state=RUNNING"],
  ["reset in PRE_COPY", 0, "state=RUNNING"],
  ["read after reset", -19, "state=RUNNING"],
  ["PRECOPY_INFO after reset", -22, "state=RUNNING"],
  ["RUNNING -> PRE_COPY again", 0, "fd state=RUNNING"],
  ["STOP_COPY -> state 8 with recover ERROR", 0, "errno=22 reset=true now=RUNNING state=RUNNING"],
  ["RUNNING -> PRE_COPY before close", 0, "fd state=PRE_COPY"],
  ["read after the device closed", -19, "state=closed"],
  ["state after close and reopen in PRE_COPY", 0, "state=PRE_COPY"],
  ["reset after reopen", 0, "state=RUNNING"],
]);

/**
 * The rows where the fake differs from mtty on purpose (see the module
 * comment), with the fake's answer: `step` → `[ret, out]`.
 */
export const MTTY_KEPT_DIFFERENCES: Readonly<Record<string, readonly [number, string]>> = Object
  .freeze({
    "read when drained": [-ENOMSG, "state=PRE_COPY"],
    "PRECOPY_INFO after a change": [0, "initial=0 dirty=some state=PRE_COPY"],
    "RESUMING -> PRE_COPY, nothing written": [0, "fd state=PRE_COPY"],
    "write a corrupt stream": [0, "all state=RESUMING"],
    "RESUMING -> STOP corrupt": [-EINVAL, "state=RESUMING"],
    "write one byte too many": [0, "all state=RESUMING"],
    "state after close and reopen in PRE_COPY": [0, "state=RUNNING"],
  });

/**
 * The rows the real mtty gave, as step results.
 *
 * @returns {@linkcode MTTY_OBSERVED} as `StepResult`s.
 */
export function observedMttyRows(): StepResult[] {
  return MTTY_OBSERVED.map(([step, ret, out]) => ({ step, ret, out }));
}

/**
 * The rows the fake must give: mtty's, but for the kept differences.
 *
 * @returns The expected step results of the fake.
 */
export function expectedFakeRows(): StepResult[] {
  return observedMttyRows().map((r) => {
    const kept = MTTY_KEPT_DIFFERENCES[r.step];
    return kept === undefined ? r : { step: r.step, ret: kept[0], out: kept[1] };
  });
}

/** Where the scenario runs: two migratable devices, each in its own group. */
export interface MttyScenarioOptions {
  /** The source's group number and device name. */
  readonly source: { readonly group: number; readonly device: string };
  /** The destination's. */
  readonly destination: { readonly group: number; readonly device: string };
  /** Changes the source device's internal state, as the running device would. */
  touch(source: VfioDevice): void;
  /** Whether the destination's internal state is the source's (may change both). */
  sameState(source: VfioDevice, destination: VfioDevice): boolean;
}

function errnoOf(e: unknown): number {
  if (e instanceof DeviceStateError) return e.errno;
  if (e instanceof SyscallError || e instanceof IoctlError) return e.errno;
  throw e;
}

function hexOf(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/**
 * Runs the mtty migration rows.
 *
 * @param sys The boundary: libc (real kernel) or a fake.
 * @param options The two devices and the hooks that reach their state.
 * @returns The step results, in order.
 */
export function runMttyScenario(sys: Syscalls, options: MttyScenarioOptions): StepResult[] {
  const out: StepResult[] = [];
  using sc = VfioContainer.open({ syscalls: sys });
  using sg = sc.attachGroup(options.source.group);
  using dc = VfioContainer.open({ syscalls: sys });
  using dg = dc.attachGroup(options.destination.group);
  let sd = sg.openDevice(options.source.device);
  using dd = dg.openDevice(options.destination.device);
  try {
    let s = VfioDeviceMigration.probe(sd);
    const d = VfioDeviceMigration.probe(dd);
    const stateOf = (m: VfioDeviceMigration) => {
      try {
        return deviceStateName(m.deviceState);
      } catch (e) {
        if (e instanceof VfioStateError) return "closed";
        return `-${errnoOf(e)}`;
      }
    };
    const row = (step: string, m: VfioDeviceMigration, fn: () => number | string) => {
      let ret = 0;
      let detail = "";
      try {
        const r = fn();
        if (typeof r === "number") ret = r;
        else detail = r;
      } catch (e) {
        ret = -errnoOf(e);
      }
      out.push({ step, ret, out: `${detail}${detail ? " " : ""}state=${stateOf(m)}` });
    };
    const arc = (
      step: string,
      m: VfioDeviceMigration,
      to: number,
      keep?: (f: MigrationDataFd) => void,
    ) =>
      row(step, m, () => {
        const f = m.setState(to);
        if (f === undefined) return "no fd";
        if (keep) keep(f);
        else f.close();
        return "fd";
      });
    const info = (f: MigrationDataFd) => {
      const i = f.precopyInfo();
      return [i.initialBytes, i.dirtyBytes] as const;
    };
    const some = (n: bigint | number) => (n > 0 ? "some" : "0");

    row("probe", s, () => `flags=${s.flags.toString(16)} supported=${s.supported}`);
    row("MIG_DATA_SIZE", s, () => some(s.stopCopySize() ?? 0n));
    // The vfio core's checks of VFIO_DEVICE_FEATURE (vfio_check_feature).
    const feature = (step: string, flags: number, payload: Uint8Array, back = false) =>
      row(step, s, () => {
        const arg = encodeDeviceFeature(flags, payload);
        const ret = sys.ioctl(sd.unsafeFd, VFIO_DEVICE_FEATURE, arg);
        return back ? hexOf(arg.subarray(8)) : ret;
      });
    const [PROBE, GET, SET] = [
      VFIO_DEVICE_FEATURE_PROBE,
      VFIO_DEVICE_FEATURE_GET,
      VFIO_DEVICE_FEATURE_SET,
    ];
    feature(
      "PROBE MIG_DEVICE_STATE",
      PROBE | GET | SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
      new Uint8Array(8),
    );
    feature("SET MIGRATION", SET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(8));
    feature(
      "PROBE SET MIG_DATA_SIZE",
      PROBE | SET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
      new Uint8Array(8),
    );
    feature(
      "SET MIG_DEVICE_STATE short",
      SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
      new Uint8Array(4),
    );
    feature("GET feature 63", GET | 63, new Uint8Array(8));
    feature(
      "SET RUNNING_P2P: data_fd written back",
      SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
      encodeMigState(RUNNING_P2P, 7),
      true,
    );
    arc("RUNNING_P2P -> RUNNING", s, RUNNING);

    // PRE_COPY, drained, changed, then STOP_COPY.
    let pre: MigrationDataFd | undefined;
    arc("RUNNING -> PRE_COPY", s, PRE_COPY, (f) => (pre = f));
    if (pre === undefined) {
      throw new TypeError("Cannot run the mtty rows: PRE_COPY gave no data fd");
    }
    const save: MigrationDataFd = pre;
    let initial = 0n;
    let streamed: Uint8Array = new Uint8Array(0);
    try {
      row("PRECOPY_INFO", s, () => {
        const [i, dirty] = info(save);
        initial = i;
        return `initial=${some(i)} dirty=${some(dirty)}`;
      });
      row("PRECOPY_INFO argsz 16", s, () => {
        const buf = encodePrecopyInfoRequest();
        new DataView(buf.buffer).setUint32(0, 16, true);
        return sys.ioctl(save.unsafeFd, VFIO_MIG_GET_PRECOPY_INFO, buf);
      });
      row("read 4 bytes", s, () => {
        const b = new Uint8Array(4);
        const n = sys.read(save.unsafeFd, b);
        streamed = concat(streamed, b.subarray(0, n));
        return n;
      });
      row("PRECOPY_INFO after 4", s, () => {
        const [i, dirty] = info(save);
        return `initial=${i === initial - 4n ? "less by 4" : i} dirty=${some(dirty)}`;
      });
      row("read the rest of initial_bytes", s, () => {
        const b = new Uint8Array(Number(initial) + 64);
        const n = sys.read(save.unsafeFd, b);
        streamed = concat(streamed, b.subarray(0, n));
        return n === Number(initial) - 4 ? "all of it" : `${n}`;
      });
      row("read when drained", s, () => sys.read(save.unsafeFd, new Uint8Array(64)));
      row("PRECOPY_INFO drained", s, () => {
        const [i, dirty] = info(save);
        return `initial=${some(i)} dirty=${some(dirty)}`;
      });
      row("write to the save fd", s, () => sys.write(save.unsafeFd, new Uint8Array(1)));
      row("pread the save fd", s, () => sys.pread(save.unsafeFd, new Uint8Array(1), 0n));
      row("mmap the save fd", s, () => {
        const addr = sys.mmap(4096n, PROT_READ, MAP_SHARED, save.unsafeFd, 0n);
        sys.munmap(addr, 4096n);
        return "mapped";
      });
      options.touch(sd);
      row("PRECOPY_INFO after a change", s, () => {
        const [i, dirty] = info(save);
        return `initial=${some(i)} dirty=${some(dirty)}`;
      });
      arc("PRE_COPY -> STOP_COPY", s, STOP_COPY);
      row("PRECOPY_INFO in STOP_COPY", s, () => info(save).length);
      row("read to the end", s, () => {
        const rest = save.readAll();
        streamed = concat(streamed, rest);
        return some(rest.byteLength);
      });
      row("read at the end", s, () => sys.read(save.unsafeFd, new Uint8Array(64)));
      arc("STOP_COPY -> ERROR", s, ERROR);
      arc("STOP_COPY -> state 8", s, 8);
      arc("STOP_COPY -> STOP", s, STOP);
      row("read after STOP", s, () => sys.read(save.unsafeFd, new Uint8Array(64)));
    } finally {
      save.close();
    }
    arc("SET ERROR", s, ERROR);
    row("STOP -> STOP_COPY stream is MIG_DATA_SIZE", s, () => {
      const size = s.stopCopySize();
      const f = s.setState(STOP_COPY)!;
      try {
        const n = f.readAll().byteLength;
        return BigInt(n) === size ? "equal" : `${n} of ${size}`;
      } finally {
        f.close();
        s.setState(STOP);
      }
    });

    // RESUMING: the resume fd, an empty and a truncated stream, then the whole one.
    arc("RUNNING -> STOP", d, STOP);
    let resume: MigrationDataFd | undefined;
    arc("STOP -> RESUMING", d, RESUMING, (f) => (resume = f));
    if (resume === undefined) {
      throw new TypeError("Cannot run the mtty rows: RESUMING gave no data fd");
    }
    const res: MigrationDataFd = resume;
    try {
      row("PRECOPY_INFO on the resume fd", d, () => info(res).length);
      row("read the resume fd", d, () => sys.read(res.unsafeFd, new Uint8Array(1)));
      arc("RESUMING -> PRE_COPY, nothing written", d, PRE_COPY);
    } finally {
      res.close();
    }
    row("reset", d, () => (dd.reset(), 0));
    const load = (
      label: string,
      bytes: Uint8Array,
      writeStep: string,
      after: (f: MigrationDataFd) => void,
    ) => {
      arc(`${label}: RUNNING -> STOP`, d, STOP);
      let f: MigrationDataFd | undefined;
      arc(`${label}: STOP -> RESUMING`, d, RESUMING, (x) => (f = x));
      if (f === undefined) return;
      const file: MigrationDataFd = f;
      try {
        row(writeStep, d, () => {
          const n = sys.write(file.unsafeFd, bytes);
          return n === bytes.byteLength ? "all" : `${n}`;
        });
        after(file);
      } finally {
        file.close();
      }
    };
    load("truncated", streamed.subarray(0, streamed.byteLength - 1), "write all but 1", () => {
      arc("RESUMING -> STOP truncated", d, STOP);
    });
    row("reset after truncated", d, () => (dd.reset(), 0));
    load("whole", streamed.subarray(0, streamed.byteLength - 1), "write all but 1 again", (f) => {
      arc("RESUMING -> STOP, 1 byte short", d, STOP);
      row("write the last byte", d, () => sys.write(f.unsafeFd, streamed.subarray(-1)));
      arc("RESUMING -> STOP whole", d, STOP);
      row("write after RESUMING -> STOP", d, () => sys.write(f.unsafeFd, new Uint8Array(1)));
    });
    arc("STOP -> RUNNING", d, RUNNING);
    row("same state", d, () => (options.sameState(sd, dd) ? "same" : "differs"));

    // Corrupt and oversized streams.
    const corrupt = streamed.slice();
    corrupt[0] ^= 0xff;
    load("corrupt", corrupt, "write a corrupt stream", () => {
      arc("RESUMING -> STOP corrupt", d, STOP);
    });
    row("reset after corrupt", d, () => (dd.reset(), 0));
    const over = concat(streamed, new Uint8Array(1));
    load("too long", over, "write one byte too many", () => {
      arc("RESUMING -> STOP after the refused write", d, STOP);
    });
    row("reset after one byte too many", d, () => (dd.reset(), 0));

    // Reset in RESUMING and in PRE_COPY; the ERROR recovery.
    load("reset in RESUMING", streamed.subarray(0, 4), "write 4 bytes", () => {
      row("reset in RESUMING", d, () => (dd.reset(), 0));
    });
    arc("RUNNING -> STOP -> RESUMING again", d, RESUMING, (f) => {
      row("reset with the resume fd open", d, () => (dd.reset(), 0));
      row("write after reset", d, () => sys.write(f.unsafeFd, new Uint8Array(1)));
      f.close();
    });
    arc("RUNNING -> PRE_COPY again", s, PRE_COPY, (f) => {
      row("reset in PRE_COPY", s, () => (sd.reset(), 0));
      row("read after reset", s, () => sys.read(f.unsafeFd, new Uint8Array(64)));
      row("PRECOPY_INFO after reset", s, () => info(f).length);
      f.close();
    });
    row("STOP_COPY -> state 8 with recover ERROR", s, () => {
      s.setState(STOP);
      s.setState(STOP_COPY)?.close();
      try {
        s.setState(8, { recover: ERROR });
        return "no error";
      } catch (e) {
        if (!(e instanceof DeviceStateError)) throw e;
        return `errno=${e.errno} reset=${e.reset} now=${deviceStateName(e.state)}`;
      }
    });

    // Close the device in PRE_COPY and open it again.
    let open: MigrationDataFd | undefined;
    arc("RUNNING -> PRE_COPY before close", s, PRE_COPY, (f) => (open = f));
    sd.close();
    if (open !== undefined) {
      const f: MigrationDataFd = open;
      row("read after the device closed", s, () => sys.read(f.unsafeFd, new Uint8Array(64)));
      f.close();
    }
    sd = sg.openDevice(options.source.device);
    s = VfioDeviceMigration.probe(sd);
    row("state after close and reopen in PRE_COPY", s, () => 0);
    row("reset after reopen", s, () => (sd.reset(), 0));
  } finally {
    sd.close();
  }
  return out;
}

/** The fake side of the scenario: `FakeKernel` with two `FakeMigrationDevice`s. */
export interface FakeMttyWorld {
  /** The fake kernel. */
  readonly kernel: FakeKernel;
  /** The scenario's devices and hooks over it. */
  readonly options: MttyScenarioOptions;
}

/**
 * Builds the fake side: two groups of one device each, with mtty's migration
 * flags; `touch` writes a new state into the source driver, `sameState`
 * compares the drivers' states.
 *
 * @param where The group numbers and device names (the real mdevs', in the guest).
 * @returns The kernel and the scenario options.
 */
export function fakeMttyWorld(
  where: Pick<MttyScenarioOptions, "source" | "destination">,
): FakeMttyWorld {
  const flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
  const port = new Uint8Array(36);
  port[33] = 16;
  const src = new FakeMigrationDevice({ flags, state: port });
  const dst = new FakeMigrationDevice({ flags, state: port });
  const kernel = new FakeKernel({
    groups: [
      { id: where.source.group, devices: [{ name: where.source.device, features: src }] },
      { id: where.destination.group, devices: [{ name: where.destination.device, features: dst }] },
    ],
  });
  let touches = 0;
  return {
    kernel,
    options: {
      ...where,
      touch() {
        const next = src.state;
        next[8 + touches] = 0x41 + touches;
        touches++;
        src.writeState(next);
      },
      sameState() {
        return src.state.join() === dst.state.join();
      },
    },
  };
}
