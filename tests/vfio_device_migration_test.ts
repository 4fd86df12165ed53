// VfioDeviceMigration against FakeKernel and FakeMigrationDevice: the probe,
// save and load, pre-copy, recovery, and no fd left open on any path.
import assert from "node:assert/strict";
import { EBADF, EINVAL, EIO, ENODEV, ENOMSG, ENOTTY, ESPIPE } from "../sys/errno.ts";
import { IoctlError, SyscallError } from "../sys/errors.ts";
import type { DeviceMigrator } from "../migration/engine/device_migrator.ts";
import {
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
import {
  DeviceStateError,
  NO_MIGRATION_REASON,
  VfioDeviceMigration,
} from "../vfio/device_migration.ts";
import { VfioStateError } from "../vfio/errors.ts";
import { VFIO_MIG_GET_PRECOPY_INFO } from "../vfio/ioctls.ts";
import { encodePrecopyInfoRequest } from "../vfio/uapi/device_feature.ts";
import { FakeMigrationDevice } from "./fake_kernel.ts";
import { assertFds, DST, migrationKernel, Opened, SRC } from "./_migration_world.ts";

const STATE = new TextEncoder().encode("edu registers, DMA buffer and a counter: 42");

function stateError(check: Partial<DeviceStateError>): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof DeviceStateError, `not a DeviceStateError: ${e}`);
    assert.ok(e.cause instanceof IoctlError);
    for (const [k, v] of Object.entries(check)) {
      assert.equal((e as unknown as Record<string, unknown>)[k], v, k);
    }
    return true;
  };
}

Deno.test("VfioDeviceMigration.probe() reports vfio-pci without mig_ops as unsupported (ENOTTY)", async () => {
  const kernel = migrationKernel();
  {
    using o = new Opened(kernel, 26, SRC);
    const m = VfioDeviceMigration.probe(o.device);
    assert.equal(m.supported, false);
    assert.equal(m.reason, NO_MIGRATION_REASON);
    assert.equal(
      m.reason,
      "the device's driver has no migration support (VFIO_DEVICE_FEATURE_MIGRATION: ENOTTY)",
    );
    assert.equal(m.flags, 0);
    assert.equal(m.id, SRC);
    const migrator: DeviceMigrator = m; // the engine's interface, structurally
    await assert.rejects(migrator.saveState(), VfioStateError);
    migrator.resumeRunning(); // a no-op
    assert.throws(() => m.deviceState, VfioStateError);
    assert.throws(() => m.setState(STOP), VfioStateError);
  }
  assertFds(kernel, 0);
});

Deno.test("VfioDeviceMigration.probe() reads the driver's migration flags", () => {
  const flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
  const kernel = migrationKernel(new FakeMigrationDevice({ flags }));
  using o = new Opened(kernel, 26, SRC);
  const m = VfioDeviceMigration.probe(o.device);
  assert.equal(m.supported, true);
  assert.equal(m.reason, undefined);
  assert.equal(m.flags, flags);
  assert.equal(m.deviceState, RUNNING);
  assert.deepEqual(
    kernel.calls.filter((c) => c.name === "VFIO_DEVICE_FEATURE").length,
    3, // PROBE|GET, GET of the flags, GET of the state
  );
});

Deno.test("VfioDeviceMigration.saveState() and loadState() move the state between two devices", async () => {
  const src = new FakeMigrationDevice({ state: STATE });
  const dst = new FakeMigrationDevice({ state: new Uint8Array(3) });
  const kernel = migrationKernel(src, dst);
  {
    using a = new Opened(kernel, 26, SRC);
    using b = new Opened(kernel, 27, DST);
    const baseline = kernel.openFds;
    const source = VfioDeviceMigration.probe(a.device);
    const bytes = await source.saveState();
    assert.equal(source.deviceState, STOP);
    assert.deepEqual(src.arcs, [[RUNNING, STOP], [STOP, STOP_COPY], [STOP_COPY, STOP]]);
    assertFds(kernel, baseline);
    const dest = VfioDeviceMigration.probe(b.device);
    await dest.loadState(bytes);
    assert.deepEqual(dst.state, STATE);
    assert.equal(dest.deviceState, RUNNING);
    assert.deepEqual(dst.arcs, [[RUNNING, STOP], [STOP, RESUMING], [RESUMING, STOP], [
      STOP,
      RUNNING,
    ]]);
    assertFds(kernel, baseline);
    source.resumeRunning();
    assert.equal(src.deviceState, RUNNING);
  }
  assertFds(kernel, 0);
});

Deno.test("VfioDeviceMigration.saveState() goes through RUNNING_P2P when the driver offers P2P", async () => {
  const flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
  const src = new FakeMigrationDevice({ flags, state: STATE });
  const dst = new FakeMigrationDevice({ flags });
  const kernel = migrationKernel(src, dst);
  using a = new Opened(kernel, 26, SRC);
  using b = new Opened(kernel, 27, DST);
  await VfioDeviceMigration.probe(b.device).loadState(
    await VfioDeviceMigration.probe(a.device).saveState(),
    { run: false },
  );
  assert.deepEqual(src.arcs.slice(0, 2), [[RUNNING, RUNNING_P2P], [RUNNING_P2P, STOP]]);
  assert.deepEqual(dst.state, STATE);
  assert.equal(dst.deviceState, STOP);
});

Deno.test("VfioDeviceMigration.stopCopySize() reads MIG_DATA_SIZE, undefined on 6.1 (ENOTTY)", () => {
  const kernel = migrationKernel(
    new FakeMigrationDevice({ state: STATE }),
    new FakeMigrationDevice({ state: STATE, dataSize: false }),
  );
  using a = new Opened(kernel, 26, SRC);
  using b = new Opened(kernel, 27, DST);
  assert.equal(VfioDeviceMigration.probe(a.device).stopCopySize(), BigInt(4 + STATE.length));
  assert.equal(VfioDeviceMigration.probe(b.device).stopCopySize(), undefined);
  // What the engine counts in the expected downtime: the estimate, or 0 without one.
  assert.equal(VfioDeviceMigration.probe(a.device).pendingBytes(), 4 + STATE.length);
  assert.equal(VfioDeviceMigration.probe(b.device).pendingBytes(), 0);
});

Deno.test("MigrationDataFd reads PRE_COPY data, precopy info and ENOMSG, then STOP_COPY to EOF", async () => {
  const flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
  const src = new FakeMigrationDevice({ flags, state: STATE });
  const dst = new FakeMigrationDevice({ flags });
  const kernel = migrationKernel(src, dst);
  {
    using a = new Opened(kernel, 26, SRC);
    using b = new Opened(kernel, 27, DST);
    const baseline = kernel.openFds;
    const m = VfioDeviceMigration.probe(a.device);
    const parts: Uint8Array[] = [];
    {
      using data = m.setState(PRE_COPY, { recover: RUNNING })!;
      assert.ok(data !== undefined);
      assert.deepEqual(kernel.openFdDescriptions().at(-1), `data ${SRC} save`);
      const record = 4 + STATE.length;
      assert.deepEqual(data.precopyInfo(), {
        flags: 0,
        initialBytes: BigInt(record),
        dirtyBytes: 0n,
      });
      const first = data.readAvailable();
      assert.equal(first.eof, false); // ENOMSG: drained for now
      assert.equal(first.bytes.length, record);
      parts.push(first.bytes);
      // The raw read says ENOMSG.
      assert.throws(
        () => kernel.read(data.unsafeFd, new Uint8Array(16)),
        (e: unknown) => e instanceof SyscallError && e.errno === ENOMSG,
      );
      assert.deepEqual(data.precopyInfo(), { flags: 0, initialBytes: 0n, dirtyBytes: 0n });
      src.writeState(new TextEncoder().encode("changed while running"));
      assert.equal(data.precopyInfo().dirtyBytes, 25n);
      parts.push(data.readAvailable().bytes);
      src.writeState(new TextEncoder().encode("final"));
      // PRE_COPY -> STOP_COPY keeps the session: no new fd.
      assert.equal(m.setState(STOP_COPY, { recover: PRE_COPY }), undefined);
      assert.deepEqual(src.arcs.at(-1), [PRE_COPY, STOP_COPY]);
      assert.throws(
        () => data.precopyInfo(),
        (e: unknown) => e instanceof IoctlError && e.errno === EINVAL,
      );
      parts.push(data.readAll());
      assert.deepEqual(data.readAvailable(), { bytes: new Uint8Array(0), eof: true });
    }
    m.setState(STOP);
    assertFds(kernel, baseline);
    const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (stream.set(p, at), at + p.length), 0);
    await VfioDeviceMigration.probe(b.device).loadState(stream);
    assert.deepEqual(new TextDecoder().decode(dst.state), "final");
  }
  assertFds(kernel, 0);
});

Deno.test("FakeKernel data fds: stream semantics and sessions ended by close and reset", () => {
  const src = new FakeMigrationDevice({ state: STATE });
  const kernel = migrationKernel(src);
  {
    using a = new Opened(kernel, 26, SRC);
    const m = VfioDeviceMigration.probe(a.device);
    const errno = (n: number) => (e: unknown) => e instanceof SyscallError && e.errno === n;
    {
      using save = m.setState(STOP_COPY)!;
      assert.throws(() => kernel.write(save.unsafeFd, new Uint8Array(1)), errno(EBADF));
      assert.throws(() => kernel.pread(save.unsafeFd, new Uint8Array(1), 0n), errno(ESPIPE));
      assert.throws(() => kernel.mmap(4096n, 1, 1, save.unsafeFd, 0n), errno(ENODEV));
      // A reset ends the session: the fd stays open, reads are ENODEV.
      a.device.reset();
      assert.equal(src.deviceState, RUNNING);
      assert.throws(() => save.readAll(), errno(ENODEV));
    }
    {
      using resume = m.setState(RESUMING)!;
      assert.throws(() => kernel.read(resume.unsafeFd, new Uint8Array(1)), errno(EBADF));
      assert.throws(
        () => kernel.ioctl(resume.unsafeFd, VFIO_MIG_GET_PRECOPY_INFO, encodePrecopyInfoRequest()),
        (e: unknown) => e instanceof IoctlError && e.errno === ENOTTY,
      );
      resume.writeAll(new Uint8Array([1, 2, 3]));
    }
    assert.throws(() => kernel.read(a.container.unsafeFd, new Uint8Array(4)), errno(EINVAL));
    // read(2) on the device fd reads BAR0 at the file position: edu's ID register.
    const id = new Uint8Array(4);
    assert.equal(kernel.read(a.device.unsafeFd, id), 4);
    assert.equal(new DataView(id.buffer).getUint32(0, true), 0x010000ed);
  }
  assert.throws(
    () => kernel.read(1000, new Uint8Array(1)),
    (e: unknown) => e instanceof SyscallError && e.errno === EBADF,
  );
  assertFds(kernel, 0);
});

Deno.test("VfioDeviceMigration.setState() falls back to the recover state when an arc fails", () => {
  const src = new FakeMigrationDevice({ state: STATE });
  const kernel = migrationKernel(src);
  {
    using a = new Opened(kernel, 26, SRC);
    const baseline = kernel.openFds;
    const m = VfioDeviceMigration.probe(a.device);
    // RUNNING -> STOP_COPY: the kernel takes RUNNING -> STOP, then STOP -> STOP_COPY fails
    // and the driver stays in STOP; recovery goes back to RUNNING.
    src.failArc(STOP, STOP_COPY, { errno: EIO, leave: "from" });
    assert.throws(
      () => m.setState(STOP_COPY, { recover: RUNNING }),
      stateError({ from: RUNNING, to: STOP_COPY, errno: EIO, state: RUNNING, reset: false }),
    );
    assert.equal(src.deviceState, RUNNING);
    assert.ok(kernel.calls.every((c) => c.name !== "VFIO_DEVICE_RESET"));
    // Without a recover state the error reports where the kernel left it.
    src.failArc(STOP, STOP_COPY, { leave: "from" });
    assert.throws(
      () => m.setState(STOP_COPY),
      (e: unknown) =>
        e instanceof DeviceStateError && e.state === STOP &&
        e.message === `Cannot move ${SRC} from RUNNING to STOP_COPY: EIO (now STOP)`,
    );
    assertFds(kernel, baseline);
  }
  assertFds(kernel, 0);
});

Deno.test("VfioDeviceMigration.setState() resets the device when recovery fails too", () => {
  const src = new FakeMigrationDevice({ state: STATE });
  const kernel = migrationKernel(src);
  {
    using a = new Opened(kernel, 26, SRC);
    const baseline = kernel.openFds;
    const m = VfioDeviceMigration.probe(a.device);
    m.setState(STOP);
    src.failArc(STOP, STOP_COPY); // leaves the device in ERROR
    assert.throws(
      () => m.setState(STOP_COPY, { recover: STOP }),
      stateError({ from: STOP, to: STOP_COPY, errno: EIO, state: RUNNING, reset: true }),
    );
    assert.equal(kernel.calls.filter((c) => c.name === "VFIO_DEVICE_RESET").length, 1);
    // ERROR is left only by a reset: when the reset fails the device stays in ERROR.
    src.failArc(RUNNING, STOP);
    kernel.failNext("VFIO_DEVICE_RESET", EIO);
    assert.throws(() => m.setState(STOP, { recover: RUNNING }), stateError({ state: ERROR }));
    assert.throws(
      () => m.setState(RUNNING),
      stateError({ from: ERROR, errno: EINVAL, state: ERROR, reset: false }),
    );
    // resumeRunning() resets it and does not throw: the device runs again.
    m.resumeRunning();
    assert.equal(m.deviceState, RUNNING);
    assertFds(kernel, baseline);
  }
  assertFds(kernel, 0);
});

Deno.test("VfioDeviceMigration.saveState() closes the data fd on every failure", async () => {
  const src = new FakeMigrationDevice({ state: STATE });
  const kernel = migrationKernel(src);
  {
    using a = new Opened(kernel, 26, SRC);
    const baseline = kernel.openFds;
    const m = VfioDeviceMigration.probe(a.device);
    // The STOP_COPY arc fails into ERROR: reset.
    src.failArc(STOP, STOP_COPY);
    await assert.rejects(m.saveState(), stateError({ to: STOP_COPY, reset: true }));
    assertFds(kernel, baseline);
    // read(2) of the data fd fails: closed, back to STOP.
    kernel.failNext("read", EIO);
    await assert.rejects(
      m.saveState(),
      (e: unknown) => e instanceof SyscallError && e.errno === EIO,
    );
    assert.equal(m.deviceState, STOP);
    assertFds(kernel, baseline);
    m.resumeRunning();
    // Leaving STOP_COPY fails: the data fd was closed first; the device is reset.
    src.failArc(STOP_COPY, STOP);
    await assert.rejects(m.saveState(), stateError({ from: STOP_COPY, to: STOP, reset: true }));
    assertFds(kernel, baseline);
    // close(2) of the data fd reports EIO: Linux releases the fd anyway.
    kernel.failNext("close", EIO);
    await assert.rejects(m.saveState(), SyscallError);
    assertFds(kernel, baseline);
    m.resumeRunning();
    assert.equal(m.deviceState, RUNNING);
    assert.deepEqual(await m.saveState(), new Uint8Array([STATE.length, 0, 0, 0, ...STATE]));
  }
  assertFds(kernel, 0);
});

Deno.test("VfioDeviceMigration.loadState() rejects a bad stream, resets, and leaks no fd", async () => {
  const dst = new FakeMigrationDevice({ state: STATE });
  const kernel = migrationKernel(undefined, dst);
  {
    using b = new Opened(kernel, 27, DST);
    const baseline = kernel.openFds;
    const m = VfioDeviceMigration.probe(b.device);
    // Truncated: the driver fails RESUMING -> STOP with EINVAL; QEMU-style reset.
    await assert.rejects(
      m.loadState(new Uint8Array([9, 0, 0, 0, 1])),
      stateError({ from: RESUMING, to: STOP, errno: EINVAL, state: RUNNING, reset: true }),
    );
    assert.deepEqual(dst.state, STATE); // untouched
    assertFds(kernel, baseline);
    // write(2) fails.
    kernel.failNext("write", EIO);
    await assert.rejects(
      m.loadState(new Uint8Array([0, 0, 0, 0])),
      (e: unknown) => e instanceof SyscallError && e.errno === EIO,
    );
    assert.equal(m.deviceState, RUNNING);
    assertFds(kernel, baseline);
    // STOP -> RESUMING fails and the driver backs out: recovered to STOP.
    dst.failArc(STOP, RESUMING, { leave: "from" });
    await assert.rejects(
      m.loadState(new Uint8Array(0)),
      stateError({ from: STOP, to: RESUMING, state: STOP, reset: false }),
    );
    assertFds(kernel, baseline);
    await m.loadState(new Uint8Array([2, 0, 0, 0, 7, 8]));
    assert.deepEqual(dst.state, new Uint8Array([7, 8]));
  }
  assertFds(kernel, 0);
});

Deno.test("FakeMigrationDevice ends its sessions when the device's last fd closes", () => {
  const src = new FakeMigrationDevice({ state: STATE });
  const kernel = migrationKernel(src);
  using a = new Opened(kernel, 26, SRC);
  const save = VfioDeviceMigration.probe(a.device).setState(STOP_COPY)!;
  a.device.close();
  assert.equal(src.deviceState, RUNNING);
  assert.throws(
    () => save.readAll(),
    (e: unknown) => e instanceof SyscallError && e.errno === ENODEV,
  );
  assert.equal(kernel.openFdDescriptions().at(-1), `data ${SRC} save`);
  save.close();
});
