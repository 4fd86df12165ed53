// kernel-profiles: custom-6.12-viommu
// Real device state over a real driver: the mtty sample's serial port,
// programmed through BAR0, saved with VfioDeviceMigration on one mtty and
// loaded into another; the stream is mtty's struct mtty_data byte for byte,
// and the destination's registers and queued FIFO bytes read back exactly as
// the source's.
import assert from "node:assert/strict";
import {
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "../../../vfio/constants.ts";
import { VfioDeviceMigration } from "../../../vfio/device_migration.ts";
import { seeded, testSeed } from "../../_random.ts";
import { bootProfile } from "../env.ts";
import {
  createMtty,
  createMttyPair,
  expectedStream,
  hex,
  mdevExists,
  MTTY_STREAM,
  openFdCount,
  programPort,
  readPort,
} from "./_mtty.ts";

Deno.test("createMtty() opens each mtty in its own container and group, and frees every fd and mdev", () => {
  bootProfile("custom-6.12-viommu");
  const fdsBefore = openFdCount();
  let uuids: string[];
  {
    using pair = createMttyPair();
    const { source, destination } = pair;
    uuids = [source.uuid, destination.uuid];
    assert.notEqual(source.groupId, destination.groupId, "an emulated-IOMMU group each");
    assert.ok(mdevExists(source.uuid) && mdevExists(destination.uuid));
    assert.equal(source.device.name, source.uuid);
    const status = source.group.status();
    assert.ok(status.viable && status.containerSet, `group status 0x${status.flags.toString(16)}`);
    const bar0 = source.device.regionInfo(0);
    assert.equal(bar0.size, 8n, "BAR0: the UART's 8 registers");
    const m = VfioDeviceMigration.probe(source.device);
    assert.ok(m.supported, m.reason);
    assert.equal(m.flags, VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY);
    assert.equal(m.deviceState, RUNNING);
    assert.equal(openFdCount(), fdsBefore + 6, "a container, a group and a device fd each");
  }
  assert.equal(openFdCount(), fdsBefore, "every fd closed");
  assert.deepEqual(uuids.filter(mdevExists), [], "both mdevs removed");
});

Deno.test("VfioDeviceMigration saveState() and loadState() move mtty's port byte-exactly: registers, divisor and queued FIFO bytes", async () => {
  bootProfile("custom-6.12-viommu");
  const seed = testSeed();
  console.log(`seed ${seed}`);
  const rand = seeded(seed);
  using pair = createMttyPair();
  const { source, destination } = pair;
  const program = programPort(source.port, rand);
  const src = VfioDeviceMigration.probe(source.device);
  const dst = VfioDeviceMigration.probe(destination.device);
  assert.equal(src.stopCopySize(), BigInt(MTTY_STREAM.HEADER + MTTY_STREAM.PORT));
  const bytes = await src.saveState();
  assert.equal(src.deviceState, STOP);
  assert.equal(hex(bytes), hex(expectedStream(program)), `struct mtty_data, seed ${seed}`);
  await dst.loadState(bytes);
  assert.equal(dst.deviceState, RUNNING);
  const want = readPort(source.port);
  const got = readPort(destination.port);
  for (let i = 0; i < want.registers.length; i++) {
    assert.deepEqual(got.registers[i], want.registers[i], `register ${want.registers[i][0]}`);
  }
  assert.deepEqual(got.fifo, want.fifo, `FIFO bytes, seed ${seed}`);
  assert.deepEqual(want.fifo, program.sent.slice(program.consumed), "the bytes left queued");
  const regs = Object.fromEntries(want.registers);
  assert.equal(regs["LCR"], program.lcr);
  assert.equal(regs["DLL"] | (regs["DLM"] << 8), program.divisor);
  assert.equal(regs["MCR"], program.mcr);
  assert.equal(regs["SCR"], program.scr);
  assert.equal(regs["IER"], program.ier & 0x0f, "IER reads back its low nibble");
  assert.equal(regs["LSR"] & 0x01, 1, "data ready before the drain");
  assert.equal(regs["LSR drained"], 0x60, "TEMT|THRE once drained");
  // The destination's own state: a second save from it is the same stream,
  // with the FIFO drained and DLAB cleared by the readback.
  const again = await dst.saveState();
  assert.equal(again.byteLength, bytes.byteLength);
  assert.equal(
    hex(again.subarray(0, MTTY_STREAM.HEADER)),
    hex(bytes.subarray(0, MTTY_STREAM.HEADER)),
  );
});

Deno.test("createMtty() with two ports streams two struct serial_port", async () => {
  bootProfile("custom-6.12-viommu");
  using mtty = createMtty({ ports: 2 });
  const m = VfioDeviceMigration.probe(mtty.device);
  const size = MTTY_STREAM.HEADER + 2 * MTTY_STREAM.PORT;
  assert.equal(m.stopCopySize(), BigInt(size));
  const bytes = await m.saveState();
  assert.equal(bytes.byteLength, size);
  assert.equal(new DataView(bytes.buffer).getUint32(16, true), 2, "nr_ports");
  m.resumeRunning();
  assert.equal(m.deviceState, RUNNING);
});
