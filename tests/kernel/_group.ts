// Shared set-up for the real-kernel tests: the group the harness bound, its
// device, and the edu device's registers.
import { kernelGroup } from "./env.ts";

/** The edu device's BAR0 registers (QEMU hw/misc/edu.c). */
export const EDU = {
  ID: 0x00,
  LIVENESS: 0x04,
  DMA_SRC: 0x80,
  DMA_DST: 0x88,
  DMA_COUNT: 0x90,
  DMA_CMD: 0x98,
  DMA_BUFFER: 0x40000n,
  CMD_START: 1,
  CMD_TO_RAM: 2,
  ID_VALUE: 0x010000ed,
} as const;

/** The group number and the PCI address of its (only) device. */
export function groupAndDevice(): { group: number; device: string } {
  const group = kernelGroup();
  const dir = `/sys/kernel/iommu_groups/${group}/devices`;
  const devices = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  if (devices.length === 0) throw new Error(`Group ${group} has no devices in ${dir}`);
  return { group, device: devices[0] };
}

/** Polls edu's DMA command register until the transfer ends (bounded, never a timed assertion). */
export function waitDma(readCmd: () => number): void {
  for (let i = 0; i < 5_000_000; i++) {
    if ((readCmd() & EDU.CMD_START) === 0) return;
  }
  throw new Error("The edu DMA never finished (command register kept its start bit)");
}
