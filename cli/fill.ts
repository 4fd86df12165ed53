/**
 * Fills guest RAM with demo content: incompressible random bytes, zero, every
 * other page zero, text-like pages (every other page zero, the others words,
 * as a guest's page cache holds), or nothing at all (a fresh guest whose RAM
 * was never written).
 *
 * @module
 */

import { UsageError } from "./describe_error.ts";

/** What the RAM holds before migration. */
export type FillPattern = "random" | "zero" | "half" | "text" | "untouched";

const WORDS = (
  "the of and to in is that for it as was with be by on not he this are or his from at which but " +
  "have an they you were her she there been one all we their has would when if so no will can more " +
  "kernel page memory device driver module buffer cache file system process thread socket stream " +
  "return value error state config include struct static const void int char unsigned long size"
).split(" ");

// 256 KiB of words chosen by `seed`, the text pages' source.
function textBlock(seed: number): Uint8Array {
  const block = new Uint8Array(256 << 10);
  const enc = new TextEncoder();
  const words = WORDS.map((w) => enc.encode(w));
  let x = seed >>> 0 || 0x9e3779b9;
  for (let o = 0; o < block.length;) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const w = words[(x >>> 0) % words.length];
    block.set(w.subarray(0, block.length - o), o);
    o += w.length;
    if (o < block.length) block[o++] = (x & 0xf00) === 0 ? 10 : 32; // a newline now and then
  }
  return block;
}

/**
 * Fills a view (xorshift32 words: fast, deterministic for a seed).
 *
 * @param view The RAM view (a multiple of 4096 bytes).
 * @param options The pattern and seed.
 *
 * @example
 * ```ts
 * import { fillRam } from "./fill.ts";
 * const ram = new Uint8Array(8192);
 * fillRam(ram, { pattern: "half", seed: 1 });
 * ```
 */
export function fillRam(view: Uint8Array, options: { pattern: FillPattern; seed: number }): void {
  if (options.pattern === "untouched") return; // never written: zero, and not even allocated
  const words = wordView(view);
  // Zero pages are written too, as a running guest's would be: reading a
  // never-touched page of shared memory would fault a fresh page in.
  if (options.pattern === "zero") {
    words.fill(0);
    return;
  }
  let x = options.seed >>> 0 || 0x9e3779b9;
  const perPage = 1024;
  if (options.pattern === "text") {
    // Each data page is a slice of the text at an offset chosen by the seed.
    const block = textBlock(options.seed);
    for (let off = 0, page = 0; off < view.length; off += 4096, page++) {
      const end = Math.min(view.length, off + 4096);
      if (page % 2 === 1) {
        view.fill(0, off, end);
        continue;
      }
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const from = (x >>> 0) % (block.length - 4096);
      view.set(block.subarray(from, from + end - off), off);
    }
    return;
  }
  for (let page = 0; page * perPage < words.length; page++) {
    if (options.pattern === "half" && page % 2 === 1) {
      words.fill(0, page * perPage, (page + 1) * perPage);
      continue;
    }
    const end = Math.min(words.length, (page + 1) * perPage);
    for (let i = page * perPage; i < end; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x;
    }
  }
}

/**
 * The 32-bit words of a view, however large: its byte length divided by 4
 * without 32-bit arithmetic (`>>> 2` wraps at 4 GiB).
 *
 * @param view A view whose offset is a multiple of 4.
 * @returns The words over the same memory.
 *
 * @example
 * ```ts
 * import { wordView } from "./fill.ts";
 * console.log(wordView(new Uint8Array(4096)).length); // 1024
 * ```
 */
export function wordView(view: Uint8Array): Uint32Array {
  return new Uint32Array(view.buffer, view.byteOffset, Math.floor(view.byteLength / 4));
}

/**
 * Checks that a `--fill-from` file exists and holds exactly the RAM's size,
 * before any memory is set up.
 *
 * @param flag The flag, for the message.
 * @param path The file.
 * @param bytes The RAM size.
 * @throws {UsageError} In one line when it is missing or of another size.
 *
 * @example
 * ```ts ignore
 * checkFillFile("--fill-from", "/dev/shm/ram.img", 2 ** 30);
 * ```
 */
export function checkFillFile(flag: string, path: string, bytes: number): void {
  let size;
  try {
    size = Deno.statSync(path).size;
  } catch (e) {
    throw new UsageError(`${flag} ${path}: ${(e as Error).message}`);
  }
  if (size !== bytes) {
    throw new UsageError(`${flag} ${path} holds ${size} bytes; the RAM is ${bytes}`);
  }
}

/**
 * Copies a file into the RAM view, every page (zero pages too, as a guest
 * that wrote them).
 *
 * @param view The RAM view.
 * @param path A file of exactly the view's size (see {@link checkFillFile}).
 * @throws {Error} When the file ends early.
 *
 * @example
 * ```ts ignore
 * fillRamFromFile(memory.view(guestAddress(0n), ram), "/dev/shm/ram.img");
 * ```
 */
export function fillRamFromFile(view: Uint8Array, path: string): void {
  using f = Deno.openSync(path, { read: true });
  const chunk = 8 << 20;
  for (let off = 0; off < view.length;) {
    const n = f.readSync(view.subarray(off, Math.min(view.length, off + chunk)));
    if (n === null || n === 0) throw new Error(`${path} ended at byte ${off} of ${view.length}`);
    off += n;
  }
}
