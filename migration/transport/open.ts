/**
 * Opens either side of a migration endpoint by its string form.
 *
 * @module
 */

import { type Endpoint, formatEndpoint, parseEndpoint } from "./endpoint.ts";
import type { ConnectOptions, StreamChannel, StreamListener } from "./channel.ts";
import { connectFile, listenFile } from "./file.ts";
import { connectTcp, listenTcp } from "./tcp.ts";
import { connectUnix, listenUnix } from "./unix.ts";
import { connectTls, listenTls, type TlsConnectOptions, type TlsListenOptions } from "./tls.ts";

/** Options for {@linkcode connectEndpoint}. */
export interface ConnectEndpointOptions extends ConnectOptions {
  /** For `tls:` endpoints (required there): credentials and the expected server name. */
  tls?: Pick<TlsConnectOptions, "credentials" | "serverName">;
}

/** Options for {@linkcode openListener}. */
export interface ListenEndpointOptions {
  /** For `tls:` endpoints (required there): credentials, authorization list, handshake bound. */
  tls?: TlsListenOptions;
}

/**
 * The source's side: connects to `tcp:`, `tls:` and `unix:` endpoints,
 * creates (or truncates) `file:` ones.
 *
 * @param endpoint An endpoint string or a parsed {@linkcode Endpoint}.
 * @param options A bound on the connect (and TLS handshake) and then on each
 *   read and write (sockets), an abort signal that closes the channel, and
 *   the credentials a `tls:` endpoint needs.
 * @returns The open channel; the caller closes it (`using`).
 * @throws {TypeError} If the endpoint string is malformed, or a `tls:`
 *   endpoint comes without credentials (as a rejection).
 * @throws {RangeError} If the TCP port is out of range (as a rejection).
 * @throws {Deno.errors.ConnectionRefused} And other `Deno.errors` from the connect or open,
 *   naming the endpoint.
 * @throws {Deno.errors.TimedOut} If the connect gets no answer within `timeoutMs`.
 *
 * @example Stream to a file
 * ```ts
 * import { connectEndpoint } from "./open.ts";
 * const path = await Deno.makeTempFile();
 * {
 *   using sink = await connectEndpoint(`file:${path}`);
 *   await sink.write(new Uint8Array(8));
 * }
 * await Deno.remove(path);
 * ```
 */
export async function connectEndpoint(
  endpoint: string | Endpoint,
  options: ConnectEndpointOptions = {},
): Promise<StreamChannel> {
  const ep = typeof endpoint === "string" ? parseEndpoint(endpoint) : endpoint;
  switch (ep.transport) {
    case "tcp":
      return await connectTcp(ep, options);
    case "tls":
      if (options.tls === undefined) {
        throw new TypeError(`Cannot connect to ${formatEndpoint(ep)}: TLS needs credentials`);
      }
      return await connectTls(ep, { ...options, ...options.tls });
    case "unix":
      return await connectUnix(ep, options);
    case "file":
      return await connectFile(ep, options);
  }
}

/**
 * The destination's side: listens on `tcp:` and `unix:` endpoints for exactly
 * one connection; for `file:` endpoints, `accept()` opens the file.
 *
 * @param endpoint An endpoint string or a parsed {@linkcode Endpoint}.
 * @returns The listener; its `endpoint` reports the bound TCP port.
 * @throws {TypeError} If the endpoint string is malformed, or is a `tls:`
 *   one (its listener starts asynchronously: use {@linkcode openListener}).
 * @throws {RangeError} If the TCP port is out of range.
 * @throws {Deno.errors.AddrInUse} And other `Deno.errors` from listening.
 *
 * @example Listen on a free TCP port
 * ```ts
 * import { listenEndpoint } from "./open.ts";
 * import { formatEndpoint } from "./endpoint.ts";
 * using listener = listenEndpoint("tcp:127.0.0.1:0");
 * console.log(formatEndpoint(listener.endpoint)); // tcp:127.0.0.1:4xxxx
 * ```
 */
export function listenEndpoint(endpoint: string | Endpoint): StreamListener {
  const ep = typeof endpoint === "string" ? parseEndpoint(endpoint) : endpoint;
  switch (ep.transport) {
    case "tcp":
      return listenTcp(ep);
    case "tls":
      throw new TypeError(
        `Cannot listen on ${formatEndpoint(ep)} synchronously: use openListener() for tls:`,
      );
    case "unix":
      return listenUnix(ep);
    case "file":
      return listenFile(ep);
  }
}

/**
 * The destination's side, for every transport: as
 * {@linkcode listenEndpoint}, and `tls:` endpoints with their credentials.
 *
 * @param endpoint An endpoint string or a parsed {@linkcode Endpoint}.
 * @param options The credentials (and authorization list) a `tls:` endpoint needs.
 * @returns The listener, once it listens.
 * @throws {TypeError} If the endpoint string is malformed, or a `tls:`
 *   endpoint comes without credentials.
 * @throws {Deno.errors.AddrInUse} And other `Deno.errors` from listening.
 *
 * @example Listen on a free TCP port
 * ```ts
 * import { openListener } from "./open.ts";
 * using listener = await openListener("tcp:127.0.0.1:0");
 * console.log(listener.endpoint.transport); // tcp
 * ```
 */
export async function openListener(
  endpoint: string | Endpoint,
  options: ListenEndpointOptions = {},
): Promise<StreamListener> {
  const ep = typeof endpoint === "string" ? parseEndpoint(endpoint) : endpoint;
  if (ep.transport !== "tls") return listenEndpoint(ep);
  if (options.tls === undefined) {
    throw new TypeError(`Cannot listen on ${formatEndpoint(ep)}: TLS needs credentials`);
  }
  return await listenTls(ep, options.tls);
}
