/**
 * Migration endpoints: `tcp:HOST:PORT`, `tls:HOST:PORT` (TCP with mutually
 * authenticated TLS), `unix:PATH` and `file:PATH`.
 *
 * @module
 */

/** A parsed migration endpoint. */
export type Endpoint =
  | { readonly transport: "tcp"; readonly hostname: string; readonly port: number }
  | { readonly transport: "tls"; readonly hostname: string; readonly port: number }
  | { readonly transport: "unix"; readonly path: string }
  | { readonly transport: "file"; readonly path: string };

/**
 * Parses an endpoint string. TCP and TLS hosts may be names, IPv4 addresses
 * or bracketed IPv6 addresses (`tcp:[::1]:4444`); port 0 asks the listener
 * to pick a free port.
 *
 * @param text `tcp:HOST:PORT`, `tls:HOST:PORT`, `unix:PATH` or `file:PATH`.
 * @returns The endpoint.
 * @throws {TypeError} If `text` is not a string, names an unknown transport, or is malformed.
 * @throws {RangeError} If the port is not an integer in 0 to 65535.
 *
 * @example Parse a TCP endpoint
 * ```ts
 * import { parseEndpoint } from "./endpoint.ts";
 * console.log(parseEndpoint("tcp:127.0.0.1:4444"));
 * // { transport: "tcp", hostname: "127.0.0.1", port: 4444 }
 * ```
 */
export function parseEndpoint(text: string): Endpoint {
  if (typeof text !== "string") {
    throw new TypeError(`Cannot parse endpoint ${String(text)}: not a string`);
  }
  const colon = text.indexOf(":");
  const transport = colon < 0 ? "" : text.slice(0, colon);
  const rest = text.slice(colon + 1);
  if (transport === "unix" || transport === "file") {
    if (rest.length === 0 || rest.includes("\0")) {
      throw new TypeError(`Cannot parse endpoint "${text}": expected ${transport}:PATH`);
    }
    return { transport, path: rest };
  }
  if (transport !== "tcp" && transport !== "tls") {
    throw new TypeError(
      `Cannot parse endpoint "${text}": expected tcp:HOST:PORT, tls:HOST:PORT, unix:PATH or file:PATH`,
    );
  }
  const portColon = rest.lastIndexOf(":");
  let hostname = portColon < 0 ? "" : rest.slice(0, portColon);
  const portText = portColon < 0 ? "" : rest.slice(portColon + 1);
  if (hostname.startsWith("[") && hostname.endsWith("]")) hostname = hostname.slice(1, -1);
  else if (hostname.includes(":")) {
    throw new TypeError(`Cannot parse endpoint "${text}": write IPv6 hosts as [ADDRESS]`);
  }
  if (hostname.length === 0 || /[\s\[\]\/]/.test(hostname)) {
    throw new TypeError(`Cannot parse endpoint "${text}": expected ${transport}:HOST:PORT`);
  }
  if (!/^[0-9]+$/.test(portText)) {
    throw new TypeError(`Cannot parse endpoint "${text}": port must be decimal digits`);
  }
  const port = Number(portText);
  if (port > 65535) {
    throw new RangeError(`Cannot parse endpoint "${text}": port ${port} is not in 0 to 65535`);
  }
  return { transport, hostname, port };
}

/**
 * Formats an endpoint back into its string form.
 *
 * @param endpoint The endpoint.
 * @returns `tcp:HOST:PORT`, `tls:HOST:PORT`, `unix:PATH` or `file:PATH`; IPv6
 *   hosts in brackets.
 *
 * @example Round-trip an IPv6 endpoint
 * ```ts
 * import { formatEndpoint, parseEndpoint } from "./endpoint.ts";
 * console.log(formatEndpoint(parseEndpoint("tcp:[::1]:0"))); // "tcp:[::1]:0"
 * ```
 */
export function formatEndpoint(endpoint: Endpoint): string {
  if (endpoint.transport === "unix" || endpoint.transport === "file") {
    return `${endpoint.transport}:${endpoint.path}`;
  }
  const host = endpoint.hostname.includes(":") ? `[${endpoint.hostname}]` : endpoint.hostname;
  return `${endpoint.transport}:${host}:${endpoint.port}`;
}
