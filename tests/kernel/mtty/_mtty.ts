// The mtty sample mdev (samples/vfio-mdev/mtty.c, built into the 6.12 test
// kernel): an emulated PCI serial card whose port is a 16550-like UART in
// BAR0 (8 byte registers, read and written through the device fd), with VFIO
// migration v2 (STOP_COPY, P2P, PRE_COPY). Each mdev is an emulated-IOMMU
// device in an IOMMU group of its own.
import { VfioContainer } from "../../../vfio/container.ts";
import type { VfioDevice } from "../../../vfio/device.ts";
import type { VfioGroup } from "../../../vfio/group.ts";
import { KernelEnvError } from "../env.ts";

const PARENT = "/sys/class/mdev_bus/mtty";

/** The UART registers in BAR0 (linux/serial_reg.h offsets). */
export const UART = {
  /** THR on write, RBR on read; the divisor's low byte while LCR.DLAB is set. */
  RBR: 0,
  /** IER; the divisor's high byte while LCR.DLAB is set. */
  IER: 1,
  /** IIR on read, FCR on write. */
  IIR: 2,
  LCR: 3,
  MCR: 4,
  LSR: 5,
  MSR: 6,
  SCR: 7,
  /** LCR: divisor latch access. */
  LCR_DLAB: 0x80,
  /** MCR: loopback. */
  MCR_LOOP: 0x10,
  /** LSR: data ready (the FIFO holds a byte). */
  LSR_DR: 0x01,
  /** LSR: transmitter empty and holding register empty (the FIFO is empty). */
  LSR_TEMT_THRE: 0x60,
  /** FCR: enable the FIFO, clear both FIFOs, trigger level 14. */
  FCR_ENABLE_CLEAR_14: 0xc7,
} as const;

/** mtty's stream (struct mtty_data): the header, then one struct serial_port per port. */
export const MTTY_STREAM = {
  /** `MTTY_MAGIC`, the stream's first u64. */
  MAGIC: 0x7e9d09898c3e2c4en,
  /** `offsetof(struct mtty_data, ports)`: magic, major, minor, nr_ports, flags. */
  HEADER: 24,
  /** `sizeof(struct serial_port)`. */
  PORT: 36,
} as const;

/** `MAX_FIFO_SIZE`: the depth of each port's loop-back FIFO. */
export const MTTY_FIFO = 16;

function typeDir(ports: 1 | 2): string {
  const types = `${PARENT}/mdev_supported_types`;
  let names: string[];
  try {
    names = [...Deno.readDirSync(types)].map((e) => e.name);
  } catch (e) {
    throw new KernelEnvError(
      `Cannot find the mtty sample (${types}: ${e}); it needs the custom 6.12 kernel ` +
        "(CONFIG_SAMPLE_VFIO_MDEV_MTTY=y), booted by `deno task test:kernel`",
    );
  }
  const name = names.find((n) => n.endsWith(`-${ports}`));
  if (name === undefined) {
    throw new KernelEnvError(`Cannot find mtty's ${ports}-port type in ${types}: ${names}`);
  }
  return `${types}/${name}`;
}

/** An mtty mdev, open in a container and group of its own; disposing frees all of it. */
export interface MttyDevice extends Disposable {
  /** The mdev's UUID: its VFIO device name. */
  readonly uuid: string;
  /** Its IOMMU group number. */
  readonly groupId: number;
  /** The type1 container holding only this group. */
  readonly container: VfioContainer;
  /** The group. */
  readonly group: VfioGroup;
  /** The open device. */
  readonly device: VfioDevice;
  /** Port 0's registers. */
  readonly port: MttyPort;
}

/** Whether an mdev with this UUID exists. */
export function mdevExists(uuid: string): boolean {
  try {
    Deno.statSync(`/sys/bus/mdev/devices/${uuid}`);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The number of fds this process has open (`/proc/self/fd`). */
export function openFdCount(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** An mtty mdev, not opened; disposing removes it. */
export interface MttyMdev extends Disposable {
  /** The mdev's UUID: its VFIO device name. */
  readonly uuid: string;
  /** Its IOMMU group number. */
  readonly groupId: number;
}

/** Creates an mtty mdev: a fresh UUID written to the type's `create`. */
export function createMttyMdev(options: { ports?: 1 | 2 } = {}): MttyMdev {
  const uuid = crypto.randomUUID();
  Deno.writeTextFileSync(`${typeDir(options.ports ?? 1)}/create`, uuid);
  let live = true;
  const remove = () => {
    if (!live) return;
    live = false;
    Deno.writeTextFileSync(`/sys/bus/mdev/devices/${uuid}/remove`, "1");
  };
  try {
    const link = Deno.readLinkSync(`/sys/bus/mdev/devices/${uuid}/iommu_group`);
    return { uuid, groupId: Number(link.split("/").pop()), [Symbol.dispose]: remove };
  } catch (e) {
    remove();
    throw e;
  }
}

/**
 * Creates an mtty mdev and opens it: a type1 container, its group, its
 * device. On any failure what was made is freed again.
 */
export function createMtty(options: { ports?: 1 | 2 } = {}): MttyDevice {
  const mdev = createMttyMdev(options);
  const undo: (() => void)[] = [() => mdev[Symbol.dispose]()];
  const free = () => {
    const errors: unknown[] = [];
    for (const f of undo.reverse()) {
      try {
        f();
      } catch (e) {
        errors.push(e);
      }
    }
    undo.length = 0;
    if (errors.length > 0) throw errors[0];
  };
  try {
    const container = VfioContainer.open();
    undo.push(() => container.close());
    const group = container.attachGroup(mdev.groupId);
    undo.push(() => group.close());
    const device = group.openDevice(mdev.uuid);
    undo.push(() => device.close());
    return {
      uuid: mdev.uuid,
      groupId: mdev.groupId,
      container,
      group,
      device,
      port: new MttyPort(device),
      [Symbol.dispose]: free,
    };
  } catch (e) {
    try {
      free();
    } catch (cleanup) {
      console.error(`Cannot free mtty ${mdev.uuid}: ${cleanup}`);
    }
    throw e;
  }
}

/** Two mtty mdevs, a migration's source and destination. */
export interface MttyPair extends Disposable {
  readonly source: MttyDevice;
  readonly destination: MttyDevice;
}

/** Creates the source and the destination mtty; disposing frees both. */
export function createMttyPair(): MttyPair {
  const source = createMtty();
  let destination: MttyDevice;
  try {
    destination = createMtty();
  } catch (e) {
    source[Symbol.dispose]();
    throw e;
  }
  return {
    source,
    destination,
    [Symbol.dispose]() {
      try {
        destination[Symbol.dispose]();
      } finally {
        source[Symbol.dispose]();
      }
    },
  };
}

/**
 * Port 0 of an mtty, through BAR0. mtty acts on the first byte of each
 * access only, so every register access is one byte.
 */
export class MttyPort {
  #dev: VfioDevice;
  constructor(dev: VfioDevice) {
    this.#dev = dev;
  }
  /** Reads one register. */
  read(reg: number): number {
    return this.#dev.readRegion(0, BigInt(reg), new Uint8Array(1))[0];
  }
  /** Writes one register. */
  write(reg: number, value: number): void {
    this.#dev.writeRegion(0, BigInt(reg), new Uint8Array([value & 0xff]));
  }
}

/** What {@linkcode programPort} wrote, to check a restored port against. */
export interface PortProgram {
  readonly ier: number;
  readonly mcr: number;
  readonly scr: number;
  /** LCR as left, DLAB set. */
  readonly lcr: number;
  readonly divisor: number;
  /** Every byte written to THR, in order. */
  readonly sent: readonly number[];
  /** How many of them were read back out of the FIFO before the save. */
  readonly consumed: number;
}

/**
 * Programs a port from `rand`: FIFO on and cleared, IER, MCR with loopback,
 * SCR, 3 to 14 bytes into the FIFO (mtty loops THR into its receive FIFO), 1
 * or more of them read back out (so the ring's head and tail are not 0), then
 * DLAB on and a divisor, left set.
 */
export function programPort(port: MttyPort, rand: () => number): PortProgram {
  const byte = () => Math.floor(rand() * 256);
  port.write(UART.IIR, UART.FCR_ENABLE_CLEAR_14); // FCR
  const ier = byte();
  port.write(UART.IER, ier);
  const mcr = byte() | UART.MCR_LOOP;
  port.write(UART.MCR, mcr);
  const scr = byte();
  port.write(UART.SCR, scr);
  const n = 3 + Math.floor(rand() * 12);
  const sent: number[] = [];
  for (let i = 0; i < n; i++) {
    sent.push(byte());
    port.write(UART.RBR, sent[i]);
  }
  const consumed = 1 + Math.floor(rand() * (n - 2));
  for (let i = 0; i < consumed; i++) {
    const got = port.read(UART.RBR);
    if (got !== sent[i]) {
      throw new RangeError(`mtty FIFO byte ${i}: read 0x${got.toString(16)}, wrote ${sent[i]}`);
    }
  }
  const lcr = UART.LCR_DLAB | (byte() & 0x7f);
  port.write(UART.LCR, lcr); // DLAB on: the divisor starts at 0
  const divisor = byte() | (byte() << 8);
  port.write(UART.RBR, divisor & 0xff);
  port.write(UART.IER, divisor >> 8);
  return { ier, mcr, scr, lcr, divisor, sent, consumed };
}

/** A port's registers as read, one by one, in the order {@linkcode readPort} reads them. */
export interface PortReadback {
  /** `[name, value]`, in read order. */
  readonly registers: readonly (readonly [string, number])[];
  /** The bytes drained from the receive FIFO. */
  readonly fifo: readonly number[];
}

/**
 * Reads a port back (it changes it: DLAB is cleared and the FIFO drained):
 * LCR, the divisor, MCR, SCR, LSR, MSR, IIR with DLAB set; then LCR without
 * DLAB, IER, and the FIFO until LSR says it is empty (at most its depth).
 */
export function readPort(port: MttyPort): PortReadback {
  const registers: [string, number][] = [];
  const reg = (name: string, r: number) => registers.push([name, port.read(r)]);
  reg("LCR", UART.LCR);
  reg("DLL", UART.RBR);
  reg("DLM", UART.IER);
  reg("MCR", UART.MCR);
  reg("SCR", UART.SCR);
  reg("LSR", UART.LSR);
  reg("MSR", UART.MSR);
  reg("IIR", UART.IIR);
  const lcr = registers[0][1];
  port.write(UART.LCR, lcr & ~UART.LCR_DLAB);
  reg("LCR without DLAB", UART.LCR);
  reg("IER", UART.IER);
  const fifo: number[] = [];
  for (let i = 0; i < MTTY_FIFO && (port.read(UART.LSR) & UART.LSR_DR) !== 0; i++) {
    fifo.push(port.read(UART.RBR));
  }
  reg("LSR drained", UART.LSR);
  return { registers, fifo };
}

/**
 * The stream mtty saves for one port programmed by {@linkcode programPort}:
 * struct mtty_data's header and the struct serial_port, byte for byte.
 */
export function expectedStream(p: PortProgram): Uint8Array {
  const out = new Uint8Array(MTTY_STREAM.HEADER + MTTY_STREAM.PORT);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, MTTY_STREAM.MAGIC, true);
  v.setUint32(8, 1, true); // MTTY_MAJOR_VER
  v.setUint32(12, 0, true); // MTTY_MINOR_VER
  v.setUint32(16, 1, true); // nr_ports
  v.setUint32(20, 0, true); // flags
  const port = MTTY_STREAM.HEADER;
  // uart_reg[8]: THR, FCR, LSR and MSR writes are not stored there.
  out[port + UART.IER] = p.ier;
  out[port + UART.LCR] = p.lcr;
  out[port + UART.MCR] = p.mcr;
  out[port + UART.SCR] = p.scr;
  out.set(p.sent, port + 8); // rxtx.fifo (a fresh port's ring; FCR's clear resets only the indexes)
  out[port + 24] = p.sent.length % MTTY_FIFO; // rxtx.head
  out[port + 25] = p.consumed; // rxtx.tail
  out[port + 26] = p.sent.length - p.consumed; // rxtx.count
  out[port + 27] = 1; // dlab
  out[port + 28] = 0; // overrun
  v.setUint16(port + 30, p.divisor, true);
  out[port + 32] = UART.FCR_ENABLE_CLEAR_14; // fcr
  out[port + 33] = MTTY_FIFO; // max_fifo_size
  out[port + 34] = 1; // intr_trigger_level: mtty always sets 1
  return out;
}

/** Hex of bytes, for messages. */
export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
