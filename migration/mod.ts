/**
 * Pre-copy live migration of guest RAM and device state.
 *
 * - The engine: {@linkcode migrateGuest} (source) and {@linkcode receiveGuest}
 *   (destination), built on {@linkcode migrate}: dirty sources merged per
 *   iteration (the CPU tracker, the VFIO container, unmaps during pre-copy),
 *   the {@linkcode ConvergencePolicy} with auto-converge, the explicit policy
 *   for the all-mapped device scope, stop-and-copy with VFIO migration v2
 *   device state, and a {@linkcode MigrationReport} (chart it with
 *   {@linkcode renderReportSvg}).
 * - Scripted tests: {@linkcode runMigrationScenario}.
 * - The versioned stream format (see `STREAM.md`), its writer and its
 *   untrusting receiver, and the file, unix-socket and TCP transports behind
 *   one interface.
 *
 * Requires `--allow-net` for TCP, and `--allow-read`/`--allow-write` for
 * unix sockets and files.
 *
 * @example Migrate RAM over TCP
 * ```ts
 * import { createHash } from "node:crypto";
 * import {
 *   arrayRam,
 *   connectEndpoint,
 *   formatEndpoint,
 *   listenEndpoint,
 *   type RamAccess,
 *   receiveStream,
 *   StreamWriter,
 * } from "./mod.ts";
 *
 * function sha256(ram: RamAccess): Uint8Array {
 *   const h = createHash("sha256");
 *   for (const r of ram.layout) h.update(ram.view(r.gpa, Number(r.size)));
 *   return h.digest();
 * }
 * const layout = [{ gpa: 0n, size: 4n << 20n }];
 * const src = arrayRam(layout);
 * crypto.getRandomValues(src.view(0n, 65536));
 * const dst = arrayRam(layout);
 *
 * using listener = listenEndpoint("tcp:127.0.0.1:0");
 * const received = (async () => {
 *   using conn = await listener.accept();
 *   return await receiveStream(conn, dst, { digest: sha256 });
 * })();
 * {
 *   using conn = await connectEndpoint(formatEndpoint(listener.endpoint));
 *   const w = new StreamWriter(conn);
 *   await w.writeHeader(layout, 4096);
 *   await w.writePages(src, 0n, 1024);
 *   await w.writeEnd(sha256(src));
 * }
 * console.log((await received).pages); // 16
 * ```
 *
 * @module
 */

export * from "./transport/endpoint.ts";
export * from "./transport/open.ts";
export * from "./stream/ram.ts";
export * from "./stream/error.ts";
export * from "./stream/format.ts";
export * from "./stream/reader.ts";
export * from "./stream/writer.ts";
export * from "./transport/channel.ts";
export * from "./transport/file.ts";
export * from "./transport/tcp.ts";
export * from "./transport/unix.ts";
export * from "./stream/zero_pages.ts";
export * from "./stream/ack.ts";
export * from "./engine/convergence.ts";
export * from "./guest/cpu_dirty_source.ts";
export * from "../tests/cut_proxy.ts";
export * from "./guest/destination.ts";
export * from "./engine/device_migrator.ts";
export * from "./engine/dirty_source.ts";
export * from "./engine/errors.ts";
export * from "./guest/guest_ram.ts";
export * from "./engine/precopy.ts";
export * from "./transport/rate_limited_sink.ts";
export * from "./engine/report.ts";
export * from "./engine/report_svg.ts";
export * from "../tests/scenario.ts";
export * from "./guest/source.ts";
export * from "./guest/untracked_device_source.ts";
export * from "./guest/vfio_dirty_source.ts";
export * from "./guest/worker_workload.ts";
export * from "./engine/workload.ts";
// The types of the layers below that this API names.
export type * from "../memory/mod.ts";
export type * from "../vfio/mod.ts";
