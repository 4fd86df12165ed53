/**
 * The file transport: the source creates (or truncates) the file and writes
 * the stream; the destination opens it and reads. Requires `--allow-read`
 * and `--allow-write` for the path.
 *
 * @module
 */

import type { Endpoint } from "./endpoint.ts";
import {
  type AcceptOptions,
  type ConnectOptions,
  rethrowNamed,
  StreamChannel,
  type StreamListener,
} from "./channel.ts";

/** A parsed file endpoint. */
export type FileEndpoint = Extract<Endpoint, { transport: "file" }>;

/**
 * Creates (or truncates) the file for writing a stream.
 *
 * @param endpoint The file path.
 * @param options An abort signal that closes the file (a file needs no progress bound).
 * @returns The channel; close it when the stream is written.
 * @throws {Deno.errors.NotFound} If the directory does not exist (and other
 *   `Deno.errors`), naming the path.
 *
 * @example Write a stream file
 * ```ts
 * import { connectFile } from "./file.ts";
 * const path = await Deno.makeTempFile();
 * {
 *   using sink = await connectFile({ transport: "file", path });
 *   await sink.write(new Uint8Array(16));
 * }
 * console.log((await Deno.stat(path)).size); // 16
 * await Deno.remove(path);
 * ```
 */
export async function connectFile(
  endpoint: FileEndpoint,
  options: ConnectOptions = {},
): Promise<StreamChannel> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(endpoint.path, { write: true, create: true, truncate: true });
  } catch (e) {
    rethrowNamed(e, `create file:${endpoint.path}`);
  }
  return new StreamChannel(file, `file:${endpoint.path}`, { signal: options.signal });
}

/**
 * A listener for a file endpoint: `accept()` opens the file for reading.
 *
 * @param endpoint The file path.
 * @returns The listener (it holds no descriptor until `accept()`).
 *
 * @example Read a stream file back
 * ```ts
 * import { listenFile } from "./file.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([9]));
 * {
 *   using source = await listenFile({ transport: "file", path }).accept();
 *   const b = new Uint8Array(4);
 *   console.log(await source.read(b), b[0]); // 1 9
 * }
 * await Deno.remove(path);
 * ```
 */
export function listenFile(endpoint: FileEndpoint): StreamListener {
  return new FileListener(endpoint);
}

class FileListener implements StreamListener {
  #state: "ready" | "done" = "ready";
  readonly endpoint: FileEndpoint;

  constructor(endpoint: FileEndpoint) {
    this.endpoint = { transport: "file", path: endpoint.path };
  }

  async accept(options: AcceptOptions = {}): Promise<StreamChannel> {
    if (this.#state !== "ready") {
      throw new TypeError(
        `Cannot accept on file:${this.endpoint.path}: already accepted or closed`,
      );
    }
    this.#state = "done";
    options.signal?.throwIfAborted();
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.endpoint.path, { read: true });
    } catch (e) {
      rethrowNamed(e, `open file:${this.endpoint.path}`);
    }
    return new StreamChannel(file, `file:${this.endpoint.path}`);
  }

  acceptNext(options: AcceptOptions = {}): Promise<StreamChannel> {
    return this.accept(options);
  }

  close(): void {
    this.#state = "done";
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
