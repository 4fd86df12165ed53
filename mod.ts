/**
 * deno-vmm: a modular slice of a userspace virtual machine monitor for Deno.
 *
 * - `./vfio`: the Linux VFIO container, group and device through FFI to libc,
 *   DMA mapping and device-side dirty tracking;
 * - `./memory`: guest RAM and CPU-side dirty tracking;
 * - `./migration`: pre-copy live migration of guest RAM.
 *
 * Run as a program, it is the CLI:
 * `deno run --allow-ffi --allow-read mod.ts info --group 26`.
 *
 * @example Read the IOMMU info
 * ```ts ignore
 * import { VfioContainer } from "./mod.ts";
 * using container = VfioContainer.open();
 * using group = container.attachGroup(26);
 * console.log(container.info());
 * ```
 *
 * @module
 */

export * from "./memory/mod.ts";
export * from "./migration/mod.ts";
export * from "./sys/mod.ts";
export * from "./vfio/mod.ts";

if (import.meta.main) {
  const { main } = await import("./cli/main.ts");
  Deno.exit(await main(Deno.args));
}
