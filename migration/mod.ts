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

export * from "./endpoint.ts";
export * from "./open_endpoint.ts";
export * from "./ram_access.ts";
export * from "./stream_error.ts";
export * from "./stream_format.ts";
export * from "./stream_reader.ts";
export * from "./stream_writer.ts";
export * from "./transport.ts";
export * from "./transport_file.ts";
export * from "./transport_tcp.ts";
export * from "./transport_unix.ts";
export * from "./zero_pages.ts";
export * from "./ack.ts";
export * from "./convergence.ts";
export * from "./cpu_dirty_source.ts";
export * from "./cut_proxy.ts";
export * from "./destination.ts";
export * from "./device_migrator.ts";
export * from "./dirty_source.ts";
export * from "./errors.ts";
export * from "./guest_ram.ts";
export * from "./precopy.ts";
export * from "./rate_limited_sink.ts";
export * from "./report.ts";
export * from "./report_svg.ts";
export * from "./scenario.ts";
export * from "./source.ts";
export * from "./untracked_device_source.ts";
export * from "./vfio_dirty_source.ts";
export * from "./worker_workload.ts";
export * from "./workload.ts";
// The types of the layers below that this API names.
export type * from "../memory/mod.ts";
export type * from "../vfio/mod.ts";
