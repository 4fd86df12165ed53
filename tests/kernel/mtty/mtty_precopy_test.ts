// kernel-profiles: custom-6.12-viommu
// PRE_COPY on the real mtty driver, through VfioDeviceMigration.setState()
// and MigrationDataFd: RUNNING -> PRE_COPY opens the save session with only
// mtty's header (its initial_bytes), VFIO_MIG_GET_PRECOPY_INFO counts it down
// as it is read, a drained pre-copy read returns 0 (mtty never answers
// ENOMSG), PRE_COPY -> STOP_COPY opens no new fd and appends the port as the
// device is at that moment, and the pre-copy and stop-copy bytes loaded in
// RESUMING restore the port byte-exactly.
import assert from "node:assert/strict";
import { EINVAL } from "../../../sys/errno.ts";
import { IoctlError } from "../../../sys/errors.ts";
import {
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
} from "../../../vfio/constants.ts";
import { VfioDeviceMigration } from "../../../vfio/device_migration.ts";
import { seeded, testSeed } from "../../_random.ts";
import { bootProfile } from "../env.ts";
import {
  createMttyPair,
  expectedStream,
  hex,
  MTTY_STREAM,
  programPort,
  readPort,
  UART,
} from "./_mtty.ts";

function ioctlErrno(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof IoctlError) return e.errno;
    throw e;
  }
  return 0;
}

Deno.test("mtty PRE_COPY: precopy info counts the header down, a drained read is 0, STOP_COPY appends the port, and both parts load byte-exactly", () => {
  bootProfile("custom-6.12-viommu");
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  using pair = createMttyPair();
  const { source, destination } = pair;
  const program = programPort(source.port, rand);
  const src = VfioDeviceMigration.probe(source.device);
  const sys = source.device.syscalls;

  const data = src.setState(PRE_COPY);
  assert.ok(data !== undefined, "RUNNING -> PRE_COPY returns a data fd");
  let precopy: Uint8Array;
  let stopCopy: Uint8Array;
  let late: number;
  try {
    assert.equal(src.deviceState, PRE_COPY);
    assert.deepEqual(data.precopyInfo(), {
      flags: 0,
      initialBytes: BigInt(MTTY_STREAM.HEADER),
      dirtyBytes: 0n,
    });
    const first = new Uint8Array(8);
    assert.equal(sys.read(data.unsafeFd, first), 8);
    assert.equal(data.precopyInfo().initialBytes, BigInt(MTTY_STREAM.HEADER - 8));
    const rest = data.readAvailable();
    assert.equal(rest.bytes.byteLength, MTTY_STREAM.HEADER - 8);
    assert.equal(rest.eof, true, "drained: mtty's read() returns 0, not ENOMSG");
    assert.equal(sys.read(data.unsafeFd, new Uint8Array(64)), 0, "and again");
    assert.deepEqual(data.precopyInfo(), { flags: 0, initialBytes: 0n, dirtyBytes: 0n });
    precopy = new Uint8Array([...first, ...rest.bytes]);
    // The port changes while the device runs in PRE_COPY: mtty does not
    // track it (dirty_bytes stays 0); STOP_COPY snapshots it as it is then.
    late = Math.floor(rand() * 256);
    source.port.write(UART.LCR, program.lcr & ~UART.LCR_DLAB);
    source.port.write(UART.RBR, late);
    source.port.write(UART.LCR, program.lcr); // DLAB again: the divisor restarts at 0
    source.port.write(UART.RBR, program.divisor & 0xff);
    source.port.write(UART.IER, program.divisor >> 8);
    assert.deepEqual(data.precopyInfo(), { flags: 0, initialBytes: 0n, dirtyBytes: 0n });
    assert.equal(sys.read(data.unsafeFd, new Uint8Array(64)), 0);

    assert.equal(src.setState(STOP_COPY), undefined, "PRE_COPY -> STOP_COPY: the same fd goes on");
    assert.equal(src.deviceState, STOP_COPY);
    assert.equal(ioctlErrno(() => data.precopyInfo()), EINVAL, "PRECOPY_INFO outside PRE_COPY");
    stopCopy = data.readAll();
    assert.equal(stopCopy.byteLength, MTTY_STREAM.PORT);
    assert.equal(sys.read(data.unsafeFd, new Uint8Array(64)), 0, "end of stream");
    src.setState(STOP);
  } finally {
    data.close();
  }
  const withLate = { ...program, sent: [...program.sent, late] };
  const whole = new Uint8Array([...precopy, ...stopCopy]);
  assert.equal(hex(whole), hex(expectedStream(withLate)), `seed ${seed}`);
  assert.equal(hex(precopy), hex(expectedStream(withLate).subarray(0, MTTY_STREAM.HEADER)));

  const dst = VfioDeviceMigration.probe(destination.device);
  dst.setState(STOP);
  const resume = dst.setState(RESUMING);
  assert.ok(resume !== undefined, "STOP -> RESUMING returns a data fd");
  try {
    resume.writeAll(precopy);
    resume.writeAll(stopCopy);
  } finally {
    resume.close();
  }
  dst.setState(STOP);
  dst.setState(RUNNING);
  const want = readPort(source.port);
  const got = readPort(destination.port);
  for (let i = 0; i < want.registers.length; i++) {
    assert.deepEqual(got.registers[i], want.registers[i], `register ${want.registers[i][0]}`);
  }
  assert.deepEqual(got.fifo, want.fifo, `seed ${seed}`);
  assert.deepEqual(want.fifo, withLate.sent.slice(program.consumed));
});

Deno.test("mtty PRE_COPY from STOP: STOP -> PRE_COPY walks RUNNING_P2P and RUNNING and opens the session", () => {
  bootProfile("custom-6.12-viommu");
  using pair = createMttyPair();
  const src = VfioDeviceMigration.probe(pair.source.device);
  src.setState(STOP);
  const data = src.setState(PRE_COPY);
  assert.ok(data !== undefined);
  try {
    assert.equal(src.deviceState, PRE_COPY);
    assert.equal(data.precopyInfo().initialBytes, BigInt(MTTY_STREAM.HEADER));
    src.setState(RUNNING);
    assert.equal(src.deviceState, RUNNING, "PRE_COPY -> RUNNING ends the session");
  } finally {
    data.close();
  }
});
