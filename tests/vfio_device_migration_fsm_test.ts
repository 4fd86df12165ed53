// The migration v2 FSM through VfioDeviceMigration.setState() and raw
// VFIO_DEVICE_FEATURE calls: every arc linux/vfio.h defines, the multi-step
// paths vfio_mig_get_next_state() takes, vfio_check_feature's rules, and a
// sample of illegal targets.
import assert from "node:assert/strict";
import { EINVAL, ENOTTY } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_STATE_ERROR as ERROR,
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
  VFIO_MIGRATION_P2P as P2P,
  VFIO_MIGRATION_PRE_COPY as PRECOPY,
  VFIO_MIGRATION_STOP_COPY,
} from "../vfio/constants.ts";
import {
  DeviceStateError,
  deviceStateName,
  VfioDeviceMigration,
} from "../vfio/device_migration.ts";
import { VfioStateError } from "../vfio/errors.ts";
import { VFIO_DEVICE_FEATURE } from "../vfio/ioctls.ts";
import { encodeDeviceFeature, encodeMigState } from "../vfio/uapi/device_feature.ts";
import { FakeMigrationDevice } from "./fake_kernel.ts";
import { assertFds, migrationKernel, Opened, SRC } from "./_migration_world.ts";

const BASE = VFIO_MIGRATION_STOP_COPY;
const ALL = BASE | P2P | PRECOPY;
// The arcs that start a session and return a data_fd.
const OPENS = new Set([
  `${STOP}>${STOP_COPY}`,
  `${RUNNING}>${PRE_COPY}`,
  `${RUNNING_P2P}>${PRE_COPY_P2P}`,
  `${STOP}>${RESUMING}`,
]);

// The arcs linux/vfio.h requires of a driver, per feature set.
const ARCS: [number, [number, number][]][] = [
  [BASE, [
    [RESUMING, STOP],
    [STOP, RESUMING],
    [STOP, STOP_COPY],
    [STOP_COPY, STOP],
    [RUNNING, STOP],
    [STOP, RUNNING],
  ]],
  [BASE | P2P, [
    [RESUMING, STOP],
    [STOP, RESUMING],
    [STOP, STOP_COPY],
    [STOP_COPY, STOP],
    [RUNNING, RUNNING_P2P],
    [RUNNING_P2P, RUNNING],
    [RUNNING_P2P, STOP],
    [STOP, RUNNING_P2P],
  ]],
  [BASE | PRECOPY, [
    [RESUMING, STOP],
    [STOP, RESUMING],
    [STOP, STOP_COPY],
    [STOP_COPY, STOP],
    [RUNNING, STOP],
    [STOP, RUNNING],
    [RUNNING, PRE_COPY],
    [PRE_COPY, RUNNING],
    [PRE_COPY, STOP_COPY],
  ]],
  [ALL, [
    [RESUMING, STOP],
    [STOP, RESUMING],
    [STOP, STOP_COPY],
    [STOP_COPY, STOP],
    [RUNNING, RUNNING_P2P],
    [RUNNING_P2P, RUNNING],
    [RUNNING_P2P, STOP],
    [STOP, RUNNING_P2P],
    [PRE_COPY, RUNNING],
    [PRE_COPY, PRE_COPY_P2P],
    [PRE_COPY_P2P, PRE_COPY],
    [PRE_COPY_P2P, RUNNING_P2P],
    [PRE_COPY_P2P, STOP_COPY],
    [RUNNING, PRE_COPY],
    [RUNNING_P2P, PRE_COPY_P2P],
  ]],
];

// The combination transitions listed in vfio_mig_get_next_state() with every feature.
const PATHS: number[][] = [
  [PRE_COPY, PRE_COPY_P2P, STOP_COPY],
  [PRE_COPY, RUNNING, RUNNING_P2P],
  [PRE_COPY, RUNNING, RUNNING_P2P, STOP],
  [PRE_COPY, RUNNING, RUNNING_P2P, STOP, RESUMING],
  [PRE_COPY_P2P, RUNNING_P2P, RUNNING],
  [PRE_COPY_P2P, RUNNING_P2P, STOP],
  [PRE_COPY_P2P, RUNNING_P2P, STOP, RESUMING],
  [RESUMING, STOP, RUNNING_P2P],
  [RESUMING, STOP, RUNNING_P2P, PRE_COPY_P2P],
  [RESUMING, STOP, RUNNING_P2P, RUNNING],
  [RESUMING, STOP, RUNNING_P2P, RUNNING, PRE_COPY],
  [RESUMING, STOP, STOP_COPY],
  [RUNNING, RUNNING_P2P, PRE_COPY_P2P],
  [RUNNING, RUNNING_P2P, STOP],
  [RUNNING, RUNNING_P2P, STOP, RESUMING],
  [RUNNING, RUNNING_P2P, STOP, STOP_COPY],
  [RUNNING_P2P, RUNNING, PRE_COPY],
  [RUNNING_P2P, STOP, RESUMING],
  [RUNNING_P2P, STOP, STOP_COPY],
  [STOP, RUNNING_P2P, PRE_COPY_P2P],
  [STOP, RUNNING_P2P, RUNNING],
  [STOP, RUNNING_P2P, RUNNING, PRE_COPY],
  [STOP_COPY, STOP, RESUMING],
  [STOP_COPY, STOP, RUNNING_P2P],
  [STOP_COPY, STOP, RUNNING_P2P, RUNNING],
];

function names(states: readonly number[]): string {
  return states.map(deviceStateName).join(" -> ");
}

// Runs `fn` with a fresh device in `from` (reached from RUNNING after a reset).
function from(
  flags: number,
  start: number,
  fn: (m: VfioDeviceMigration, fake: FakeMigrationDevice) => void,
): void {
  const fake = new FakeMigrationDevice({ flags, state: new Uint8Array([1, 2, 3]) });
  const kernel = migrationKernel(fake);
  {
    using o = new Opened(kernel, 26, SRC);
    const base = kernel.openFds;
    const m = VfioDeviceMigration.probe(o.device);
    m.setState(start)?.close();
    assert.equal(m.deviceState, start);
    fn(m, fake);
    assertFds(kernel, base);
  }
  assertFds(kernel, 0);
}

Deno.test("VfioDeviceMigration.setState() takes every arc linux/vfio.h defines, as one driver step", () => {
  for (const [flags, arcs] of ARCS) {
    for (const [a, b] of arcs) {
      from(flags, a, (m, fake) => {
        const before = fake.arcs.length;
        const data = m.setState(b);
        const what = `flags ${flags}: ${names([a, b])}`;
        assert.deepEqual(fake.arcs.slice(before), [[a, b]], what);
        assert.equal(data !== undefined, OPENS.has(`${a}>${b}`), `${what}: data fd`);
        data?.close();
        assert.equal(m.deviceState, b, what);
      });
    }
  }
});

Deno.test("VfioDeviceMigration.setState() walks the kernel's multi-step paths", () => {
  for (const path of PATHS) {
    from(ALL, path[0], (m, fake) => {
      const before = fake.arcs.length;
      const data = m.setState(path.at(-1)!);
      const taken = [path[0], ...fake.arcs.slice(before).map(([, to]) => to)];
      assert.equal(names(taken), names(path));
      assert.equal(data !== undefined, OPENS.has(`${path.at(-2)}>${path.at(-1)}`), names(path));
      data?.close();
    });
  }
  // Without P2P the kernel skips RUNNING_P2P: PRE_COPY -> RUNNING -> STOP.
  from(BASE | PRECOPY, PRE_COPY, (m, fake) => {
    m.setState(STOP);
    assert.deepEqual(fake.arcs.slice(-2), [[PRE_COPY, RUNNING], [RUNNING, STOP]]);
  });
});

Deno.test("VfioDeviceMigration.setState() gets EINVAL for targets the FSM does not allow", () => {
  const cases: [number, number, number][] = [
    [BASE, RUNNING, RUNNING_P2P],
    [BASE, RUNNING, PRE_COPY],
    [BASE | P2P, RUNNING, PRE_COPY_P2P],
    [BASE | PRECOPY, RUNNING, RUNNING_P2P],
    [BASE, RUNNING, ERROR],
    [BASE, STOP, 8],
    [BASE, STOP, 0xffff_ffff],
  ];
  for (const [flags, a, b] of cases) {
    from(flags, a, (m, fake) => {
      const before = fake.arcs.length;
      assert.throws(
        () => m.setState(b),
        (e: unknown) =>
          e instanceof DeviceStateError && e.errno === EINVAL && e.state === a && !e.reset,
        `flags ${flags}: ${names([a, b])}`,
      );
      assert.equal(fake.arcs.length, before, "no arc taken");
    });
  }
});

Deno.test("VfioDeviceMigration.setState() refuses STOP_COPY -> PRE_COPY without asking the kernel (6.12 spins on it)", () => {
  // vfio_from_fsm_table[STOP_COPY][PRE_COPY*] is ERROR, and 6.12.95's skip
  // loop never leaves ERROR: the ioctl would not return (seen on mtty).
  const cases: [number, number][] = [
    [BASE | PRECOPY, PRE_COPY],
    [ALL, PRE_COPY_P2P],
    [ALL, PRE_COPY],
  ];
  for (const [flags, target] of cases) {
    from(flags, STOP_COPY, (m, fake) => {
      const kernel = m.device.syscalls;
      const ioctl = kernel.ioctl.bind(kernel);
      let calls = 0;
      kernel.ioctl = (...args: Parameters<typeof ioctl>) => {
        calls++;
        return ioctl(...args);
      };
      const before = fake.arcs.length;
      try {
        assert.throws(
          () => m.setState(target),
          (e: unknown) =>
            e instanceof VfioStateError && /from STOP_COPY to PRE_COPY/.test(e.message) &&
            /go through STOP/.test(e.message),
          `flags ${flags}: ${names([STOP_COPY, target])}`,
        );
        assert.equal(calls, 1, "only the GET of the device state reached the kernel");
      } finally {
        kernel.ioctl = ioctl;
      }
      assert.equal(fake.arcs.length, before, "no arc taken");
      assert.equal(m.deviceState, STOP_COPY);
      m.setState(STOP)?.close();
      m.setState(target)?.close(); // the way round, through STOP, is open
      assert.equal(m.deviceState, target);
    });
  }
});

Deno.test("FakeMigrationDevice follows vfio_check_feature() for the migration features", () => {
  const kernel = migrationKernel(new FakeMigrationDevice({ flags: ALL }));
  {
    using o = new Opened(kernel, 26, SRC);
    const fd = o.device.unsafeFd;
    const call = (flags: number, payload: Uint8Array = new Uint8Array(8)) =>
      kernel.ioctl(fd, VFIO_DEVICE_FEATURE, encodeDeviceFeature(flags, payload));
    const errno = (flags: number, payload?: Uint8Array) => {
      try {
        call(flags, payload);
        return 0;
      } catch (e) {
        assert.ok(e instanceof IoctlError);
        return e.errno;
      }
    };
    const { GET, SET, PROBE } = {
      GET: VFIO_DEVICE_FEATURE_GET,
      SET: VFIO_DEVICE_FEATURE_SET,
      PROBE: VFIO_DEVICE_FEATURE_PROBE,
    };
    const MIG = VFIO_DEVICE_FEATURE_MIGRATION;
    const STATE = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
    assert.equal(errno(MIG | PROBE | GET), 0);
    assert.equal(errno(MIG | PROBE | SET), EINVAL); // MIGRATION is GET-only
    assert.equal(errno(MIG | SET), EINVAL);
    assert.equal(errno(MIG), EINVAL); // neither GET nor SET
    assert.equal(errno(MIG | GET, new Uint8Array(4)), EINVAL); // argsz < 8 + 8
    assert.equal(errno(STATE | PROBE | GET | SET), 0);
    assert.equal(errno(STATE | GET | SET), EINVAL); // both without PROBE
    assert.equal(errno(STATE | SET, new Uint8Array(4)), EINVAL);
    assert.equal(errno(VFIO_DEVICE_FEATURE_DMA_LOGGING_START | PROBE | SET), ENOTTY); // no log_ops
    // SET writes back data_fd -1 when no session starts, and on failure.
    const arg = encodeDeviceFeature(STATE | SET, encodeMigState(STOP, 1234));
    kernel.ioctl(fd, VFIO_DEVICE_FEATURE, arg);
    assert.equal(new DataView(arg.buffer).getInt32(12, true), -1);
    const bad = encodeDeviceFeature(STATE | SET, encodeMigState(ERROR, 1234));
    assert.throws(() => kernel.ioctl(fd, VFIO_DEVICE_FEATURE, bad), IoctlError);
    assert.equal(new DataView(bad.buffer).getInt32(12, true), -1);
  }
  assertFds(kernel, 0);
});

Deno.test("FakeMigrationDevice in ERROR refuses every target until VFIO_DEVICE_RESET", () => {
  from(ALL, STOP, (m, fake) => {
    fake.failArc(STOP, STOP_COPY);
    assert.throws(() => m.setState(STOP_COPY), DeviceStateError);
    assert.equal(m.deviceState, ERROR);
    for (const s of [STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P]) {
      assert.throws(
        () => m.setState(s),
        (e: unknown) => e instanceof DeviceStateError && e.errno === EINVAL && e.state === ERROR,
      );
    }
    m.device.reset();
    assert.equal(m.deviceState, RUNNING);
    assert.equal(fake.deviceState, RUNNING);
  });
});
