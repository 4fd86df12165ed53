// The Worker side of WorkerWriter: writes guest pages in a pattern until told
// to stop, recording each page it wrote in a shared bitmap (after the write).
//
// This runs on another thread, which the caller's Syscalls cannot reach: a
// FakeKernel does not survive postMessage, and errno is per thread. So the
// Worker uses its own thread's LibcSyscalls (libc opened again in this
// isolate through sys/_libc.ts). The memory it writes is real either way:
// the fake hands out real mappings and real memfds.

import { guestAddress } from "../sys/address.ts";
import { hostView } from "../sys/host_memory.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import { MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE } from "../sys/constants.ts";
import { GuestMemory, type GuestMemoryDescriptor } from "./guest_memory.ts";
import { joinSoftwareDirtyLog, type SoftwareDirtyLogHandle } from "./software_dirty_log.ts";

// The Worker global, typed here (JSR packages may not carry lib directives).
const worker = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<WriterConfig>) => void) | null;
};

/** The start message. */
export interface WriterConfig {
  memory: GuestMemoryDescriptor;
  region: number;
  via: "pointer" | "memfd";
  memfdPath?: string;
  pattern: "random" | "sequential" | "hotspot";
  span: "word" | "page";
  seed: number;
  control: SharedArrayBuffer;
  written: SharedArrayBuffer;
  log?: SoftwareDirtyLogHandle;
}

export const CMD_RUN = 0;
export const CMD_PAUSE = 1;
export const CMD_STOP = 2;
// control words: [0] command, [1] pages per second (0 = unthrottled), [2] writes so far

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function run(cfg: WriterConfig): void {
  const ctrl = new Int32Array(cfg.control);
  const written = new Uint32Array(cfg.written);
  const desc = cfg.memory.regions[cfg.region];
  const pages = Number(desc.size / 4096n);
  let write: (page: number, value: number, offset: number) => void;
  let cleanup = (): void => {};
  if (cfg.via === "memfd") {
    const sys = defaultSyscalls();
    const fd = sys.open(cfg.memfdPath!, O_RDWR | O_CLOEXEC);
    let addr: bigint;
    try {
      addr = sys.mmap(desc.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
    } finally {
      sys.close(fd);
    }
    const bytes = hostView(addr, Number(desc.size));
    const dv = new DataView(bytes.buffer);
    write = cfg.span === "page"
      ? (page, value) => bytes.fill(value & 0xff, page * 4096, page * 4096 + 4096)
      : (page, value, offset) => dv.setUint32(page * 4096 + offset, value, true);
    cleanup = () => sys.munmap(addr, desc.size);
  } else {
    const mem = GuestMemory.attach(cfg.memory);
    const log = cfg.log === undefined ? undefined : joinSoftwareDirtyLog(mem, cfg.log);
    const base = desc.gpa;
    write = cfg.span === "page"
      ? (page, value) =>
        mem.fill(guestAddress(base + BigInt(page * 4096)), { length: 4096, value: value & 0xff })
      : (page, value, offset) =>
        mem.writeU32(guestAddress(base + BigInt(page * 4096 + offset)), value);
    cleanup = () => {
      log?.[Symbol.dispose]();
      mem.close();
    };
  }
  const rand = mulberry32(cfg.seed);
  const hotPages = Math.max(1, Math.floor(pages / 10));
  const hotBase = rand() % Math.max(1, pages - hotPages + 1);
  let seq = 0;
  function nextPage(): number {
    switch (cfg.pattern) {
      case "sequential":
        return seq++ % pages;
      case "hotspot":
        return rand() % 10 < 9 ? hotBase + (rand() % hotPages) : rand() % pages;
      default:
        return rand() % pages;
    }
  }
  let total = 0;
  const BATCH = 64;
  let batchStart = performance.now();
  for (;;) {
    const cmd = Atomics.load(ctrl, 0);
    if (cmd === CMD_STOP) break;
    if (cmd === CMD_PAUSE) {
      worker.postMessage({ type: "state", state: "paused", pagesWritten: total });
      while (Atomics.load(ctrl, 0) === CMD_PAUSE) Atomics.wait(ctrl, 0, CMD_PAUSE);
      if (Atomics.load(ctrl, 0) === CMD_RUN) {
        worker.postMessage({ type: "state", state: "running", pagesWritten: total });
      }
      batchStart = performance.now();
      continue;
    }
    for (let k = 0; k < BATCH; k++) {
      const page = nextPage();
      write(page, rand(), rand() & 4092);
      const m = 1 << (page & 31);
      if ((written[page >>> 5] & m) === 0) Atomics.or(written, page >>> 5, m);
    }
    total += BATCH;
    Atomics.add(ctrl, 2, BATCH);
    const rate = Atomics.load(ctrl, 1);
    if (rate > 0) {
      const due = batchStart + (BATCH * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) Atomics.wait(ctrl, 0, CMD_RUN, wait);
      batchStart = Math.max(due, performance.now() - 1000);
    }
  }
  cleanup();
  worker.postMessage({ type: "state", state: "stopped", pagesWritten: total });
}

worker.onmessage = (e: MessageEvent<WriterConfig>) => {
  try {
    worker.postMessage({ type: "state", state: "running", pagesWritten: 0 });
    run(e.data);
  } catch (err) {
    worker.postMessage({
      type: "error",
      message: err instanceof Error ? err.message : String(err),
    });
  }
};
