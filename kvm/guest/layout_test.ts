// guest.h is the source of truth for the guest; layout.ts must say the same.
import assert from "node:assert/strict";
import {
  GUEST_COMMANDS,
  GUEST_FNV_OFFSET,
  GUEST_FNV_PRIME,
  GUEST_LAYOUT,
  GUEST_MAGIC,
  GUEST_PATTERNS,
  GUEST_PORTS,
  GUEST_VERSION,
  MB,
} from "./layout.ts";
import { DEFAULT_LONG_MODE_LAYOUT } from "../long_mode.ts";

const header = Deno.readTextFileSync(new URL("./guest.h", import.meta.url));
const defines = new Map<string, bigint>();
for (const m of header.matchAll(/^#define (\w+) (0x[0-9a-fA-F]+|\d+)(?:ULL)?\b/gm)) {
  defines.set(m[1], BigInt(m[2]));
}

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

Deno.test("GUEST_LAYOUT, GUEST_PORTS and MB match guest.h", () => {
  const names: Record<string, string> = {
    gdt: "GUEST_GDT_GPA",
    tss: "GUEST_TSS_GPA",
    pml4: "GUEST_PML4_GPA",
    pdpt: "GUEST_PDPT_GPA",
    pd: "GUEST_PD_GPA",
    mailbox: "GUEST_MAILBOX_GPA",
    stack: "GUEST_STACK_GPA",
    stackTop: "GUEST_STACK_TOP",
    code: "GUEST_CODE_GPA",
    codeMax: "GUEST_CODE_MAX",
    list: "GUEST_LIST_GPA",
    listMax: "GUEST_LIST_MAX",
    data: "GUEST_DATA_GPA",
    mmio: "GUEST_MMIO_GPA",
  };
  for (const [k, v] of Object.entries(GUEST_LAYOUT)) {
    assert.equal(BigInt(v), defines.get(names[k]), k);
  }
  for (const [k, v] of Object.entries(GUEST_PORTS)) {
    assert.equal(BigInt(v), defines.get(`GUEST_${k.toUpperCase()}_PORT`), k);
  }
  const mbNames: Record<string, string> = {
    pagesPerSecond: "MB_PAGES_PER_SEC",
    heartbeatMs: "MB_HEARTBEAT_MS",
  };
  for (const [k, v] of Object.entries(MB)) {
    assert.equal(BigInt(v), defines.get(mbNames[k] ?? `MB_${snake(k)}`), k);
  }
  for (const [k, v] of Object.entries(GUEST_COMMANDS)) {
    assert.equal(BigInt(v), defines.get(`GUEST_CMD_${snake(k)}`), k);
  }
  for (const [k, v] of Object.entries(GUEST_PATTERNS)) {
    assert.equal(BigInt(v), defines.get(`GUEST_PATTERN_${k.toUpperCase()}`), k);
  }
  assert.equal(BigInt(GUEST_MAGIC), defines.get("GUEST_MAGIC"));
  assert.equal(BigInt(GUEST_VERSION), defines.get("GUEST_VERSION"));
  assert.equal(GUEST_FNV_OFFSET, defines.get("GUEST_FNV_OFFSET"));
  assert.equal(GUEST_FNV_PRIME, defines.get("GUEST_FNV_PRIME"));
});

Deno.test("the guest's tables sit where the default long-mode layout writes them", () => {
  const L = DEFAULT_LONG_MODE_LAYOUT;
  assert.deepEqual(
    [L.gdt, L.tss, L.pml4, L.pdpt, L.pd],
    [GUEST_LAYOUT.gdt, GUEST_LAYOUT.tss, GUEST_LAYOUT.pml4, GUEST_LAYOUT.pdpt, GUEST_LAYOUT.pd],
  );
  assert.ok(GUEST_LAYOUT.pd + 4n * 4096n <= GUEST_LAYOUT.mailbox, "4 PDs fit below the mailbox");
});
