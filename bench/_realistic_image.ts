// A RAM image that looks like a running guest's memory, for the capped-link
// case of bench/migrate_vs_qemu.ts: zero pages, page-cache-like text and
// binaries read from this machine's own files (/usr/share, /usr/include,
// /usr/bin, /usr/lib ...), and seeded random pages, in stated proportions,
// laid out in runs of 1 to 64 pages of one kind (as a guest's allocations are).
// The same image feeds both engines: `migrate --fill-from` and QEMU's
// memory-backend-file.

/** The share of pages of each kind (they sum to 1). */
export interface ImageMix {
  zero: number;
  text: number;
  binary: number;
  random: number;
}

/** Page kinds, as stored in a plan. */
export const KIND = { zero: 0, text: 1, binary: 2, random: 3 } as const;
const KINDS = ["zero", "text", "binary", "random"] as const;

/** The default mix: 40 % zero, 25 % text, 25 % binaries, 10 % random. */
export const DEFAULT_MIX: ImageMix = { zero: 0.4, text: 0.25, binary: 0.25, random: 0.1 };

/** Where text-like and binary pages are read from (each walked in sorted order). */
export const TEXT_ROOTS = ["/usr/share", "/usr/include", "/usr/lib/python3"];
export const BINARY_ROOTS = ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec"];

const PAGE = 4096;
const MAX_RUN = 64;

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/**
 * The exact page count of each kind for `pages` pages: the mix's shares
 * rounded down, the remainder zero pages.
 *
 * @param pages The page count.
 * @param mix The shares.
 * @returns The counts, summing to `pages`.
 */
export function pageCounts(pages: number, mix: ImageMix): Record<keyof ImageMix, number> {
  const sum = mix.zero + mix.text + mix.binary + mix.random;
  if (Math.abs(sum - 1) > 1e-9 || KINDS.some((k) => !(mix[k] >= 0))) {
    throw new Error(`the image mix must be shares >= 0 summing to 1, not ${JSON.stringify(mix)}`);
  }
  const text = Math.floor(pages * mix.text);
  const binary = Math.floor(pages * mix.binary);
  const random = Math.floor(pages * mix.random);
  return { zero: pages - text - binary - random, text, binary, random };
}

/**
 * Which kind each page is: the counts of {@link pageCounts}, cut into runs of
 * 1 to 64 pages and shuffled, deterministically for a seed.
 *
 * @param pages The page count.
 * @param mix The shares.
 * @param seed The layout's seed.
 * @returns One {@link KIND} per page.
 */
export function planPages(pages: number, mix: ImageMix, seed: number): Uint8Array {
  const counts = pageCounts(pages, mix);
  const next = xorshift(seed);
  const runs: [number, number][] = [];
  for (const k of KINDS) {
    for (let left = counts[k]; left > 0;) {
      const n = Math.min(left, 1 + next() % MAX_RUN);
      runs.push([KIND[k], n]);
      left -= n;
    }
  }
  for (let i = runs.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [runs[i], runs[j]] = [runs[j], runs[i]];
  }
  const plan = new Uint8Array(pages);
  let at = 0;
  for (const [kind, n] of runs) {
    plan.fill(kind, at, at + n);
    at += n;
  }
  return plan;
}

/** What a file's first bytes say it is. */
export function classify(head: Uint8Array): "binary" | "text" | "other" {
  if (head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c) {
    return head[3] === 0x46 ? "binary" : "other";
  }
  if (head.length === 0) return "other";
  for (const c of head) if (c < 9 || (c > 13 && c < 32)) return "other";
  return "text";
}

/**
 * Pages of a class of files, as a page cache holds them: each file read in
 * 4 KiB pages, its last page padded with zeros; pages that are all zero are
 * skipped (they count as zero pages). Files are taken in sorted order, and
 * the walk starts over when it runs out.
 */
export class FilePages {
  #files: string[];
  #next = 0;
  #file: Deno.FsFile | undefined;
  /** Pages handed out. */
  pages = 0;
  /** Files opened. */
  filesRead = 0;
  /** Times the file list was used up and started over. */
  wraps = 0;

  /**
   * @param files The files, in the order they are read.
   */
  constructor(files: string[]) {
    if (files.length === 0) throw new Error("no files to read pages from");
    this.#files = files;
  }

  /**
   * Fills `page` (4096 bytes) with the next non-zero page.
   *
   * @param page The page to fill.
   */
  read(page: Uint8Array): void {
    for (let misses = 0; misses < 4 * this.#files.length + 16;) {
      if (this.#file === undefined) {
        if (this.#next === this.#files.length) {
          this.#next = 0;
          this.wraps++;
        }
        try {
          this.#file = Deno.openSync(this.#files[this.#next++], { read: true });
          this.filesRead++;
        } catch {
          misses++;
          continue;
        }
      }
      let got = 0;
      while (got < PAGE) {
        const n = this.#file.readSync(page.subarray(got));
        if (n === null || n === 0) break;
        got += n;
      }
      if (got < PAGE) {
        this.#file.close();
        this.#file = undefined;
        if (got === 0) {
          misses++;
          continue;
        }
        page.fill(0, got);
      }
      if (page.some((b) => b !== 0)) {
        this.pages++;
        return;
      }
    }
    throw new Error("the files hold no non-zero page");
  }

  /** Closes the open file. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/**
 * Lists regular files (no symlinks) of one class under the roots, sorted per
 * directory, until they hold `wantBytes`.
 *
 * @param roots The directories to walk.
 * @param kind "text" or "binary" (by the first 512 bytes).
 * @param wantBytes Stop once the files found hold this much.
 * @returns The paths and their total size.
 */
export function findFiles(
  roots: string[],
  kind: "text" | "binary",
  wantBytes: number,
): { files: string[]; bytes: number } {
  const files: string[] = [];
  let bytes = 0;
  const head = new Uint8Array(512);
  const walk = (dir: string): void => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)].sort((a, b) => a.name < b.name ? -1 : 1);
    } catch {
      return;
    }
    for (const e of entries) {
      if (bytes >= wantBytes) return;
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) walk(path);
      else if (e.isFile) {
        try {
          using f = Deno.openSync(path, { read: true });
          const n = f.readSync(head) ?? 0;
          if (classify(head.subarray(0, n)) !== kind) continue;
          files.push(path);
          bytes += f.statSync().size;
        } catch { /* unreadable: skip */ }
      }
    }
  };
  for (const r of roots) walk(r);
  return { files, bytes };
}

/** What went into an image. */
export interface ImageSummary {
  bytes: number;
  seed: number;
  mix: ImageMix;
  pages: Record<keyof ImageMix, number>;
  textFiles: number;
  binaryFiles: number;
  /** Whether a class of files was used up and reread from its start. */
  textWraps: number;
  binaryWraps: number;
}

/**
 * Writes a realistic RAM image of `bytes` (a multiple of 4 KiB).
 *
 * @param path The image (put it in tmpfs).
 * @param bytes Its size.
 * @param seed The seed of the layout and the random pages.
 * @param mix The shares of page kinds.
 * @param roots Where text and binary pages come from.
 * @returns What it holds.
 */
export async function writeRealisticImage(
  path: string,
  bytes: number,
  seed: number,
  mix: ImageMix = DEFAULT_MIX,
  roots: { text: string[]; binary: string[] } = { text: TEXT_ROOTS, binary: BINARY_ROOTS },
): Promise<ImageSummary> {
  if (bytes % PAGE !== 0) throw new Error(`the image size ${bytes} is not a multiple of 4 KiB`);
  const plan = planPages(bytes / PAGE, mix, seed);
  const counts = pageCounts(bytes / PAGE, mix);
  // Ask for a little more than needed: some file pages are zero and skipped.
  const text = new FilePages(findFiles(roots.text, "text", counts.text * PAGE * 1.2 + 1).files);
  const binary = new FilePages(
    findFiles(roots.binary, "binary", counts.binary * PAGE * 1.5 + 1).files,
  );
  const next = xorshift(seed ^ 0x5bd1e995);
  const chunk = 16 << 20;
  const buf = new Uint8Array(chunk);
  const words = new Uint32Array(buf.buffer);
  try {
    using f = await Deno.open(path, { write: true, create: true, truncate: true });
    for (let done = 0; done < bytes; done += chunk) {
      const n = Math.min(chunk, bytes - done);
      buf.fill(0);
      for (let p = 0; p < n / PAGE; p++) {
        const page = buf.subarray(p * PAGE, (p + 1) * PAGE);
        switch (plan[done / PAGE + p]) {
          case KIND.text:
            text.read(page);
            break;
          case KIND.binary:
            binary.read(page);
            break;
          case KIND.random:
            for (let i = p * 1024, end = i + 1024; i < end; i++) words[i] = next();
            break;
        }
      }
      for (let off = 0; off < n;) off += await f.write(buf.subarray(off, n));
    }
  } finally {
    text.close();
    binary.close();
  }
  return {
    bytes,
    seed,
    mix,
    pages: counts,
    textFiles: text.filesRead,
    binaryFiles: binary.filesRead,
    textWraps: text.wraps,
    binaryWraps: binary.wraps,
  };
}
