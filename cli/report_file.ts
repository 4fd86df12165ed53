/**
 * A report file opened before the work starts, so that a bad `--report` path
 * (a missing directory, a directory, no permission) fails at once instead of
 * turning completed work into a failure.
 *
 * @module
 */

import { UsageError } from "./describe_error.ts";

/**
 * An output file, opened (created if missing) up front and written at the end.
 *
 * @example
 * ```ts ignore
 * using out = ReportFile.open("--report", "r.json");
 * // ... the migration ...
 * out.write(JSON.stringify(report));
 * ```
 */
export class ReportFile implements Disposable {
  #file: Deno.FsFile | null;
  #path: string;
  #created: boolean;

  private constructor(file: Deno.FsFile, path: string, created: boolean) {
    this.#file = file;
    this.#path = path;
    this.#created = created;
  }

  /**
   * Opens `path` for writing, creating it if needed (its old contents stay
   * until {@linkcode ReportFile.write}).
   *
   * @param flag The flag that named it, for the message.
   * @param path The path.
   * @returns The open file.
   * @throws {UsageError} Naming the flag, the path and the reason.
   */
  static open(flag: string, path: string): ReportFile {
    let created = false;
    try {
      if (Deno.statSync(path).isDirectory) {
        throw new UsageError(`${flag} ${path} is a directory; name a file`);
      }
    } catch (e) {
      if (e instanceof UsageError) throw e;
      created = e instanceof Deno.errors.NotFound; // anything else shows up in the open
    }
    try {
      return new ReportFile(Deno.openSync(path, { write: true, create: true }), path, created);
    } catch (e) {
      throw new UsageError(`Cannot write ${flag} ${path}: ${(e as Error).message}`);
    }
  }

  /**
   * Replaces the file's contents with `text` and closes it.
   *
   * @param text The contents.
   * @throws {Deno.errors.*} If the write fails (a full disk), naming the path.
   */
  write(text: string): void {
    const file = this.#file;
    if (file === null) throw new TypeError(`Cannot write ${this.#path}: already written`);
    try {
      file.truncateSync(0);
      const bytes = new TextEncoder().encode(text);
      for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
    } catch (e) {
      (e as Error).message = `Cannot write ${this.#path}: ${(e as Error).message}`;
      throw e;
    } finally {
      this.#created = false; // written: it stays
      this.close();
    }
  }

  /** Closes the file; one this opened as new and never wrote is removed. Idempotent. */
  close(): void {
    if (this.#file === null) return;
    this.#file.close();
    this.#file = null;
    if (this.#created) {
      try {
        Deno.removeSync(this.#path);
      } catch { /* gone already */ }
    }
  }

  /** Closes the file. */
  [Symbol.dispose](): void {
    this.close();
  }
}
