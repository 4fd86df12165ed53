import assert from "node:assert/strict";
import { guestAddress } from "../sys/address.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import {
  CODE_SELECTOR,
  DEFAULT_LONG_MODE_LAYOUT,
  enterLongMode,
  longModeSregs,
  TSS_SELECTOR,
  writeLongModeTables,
} from "./long_mode.ts";
import { decodeSregs } from "./uapi/regs.ts";

Deno.test("writeLongModeTables() identity-maps 4 GiB with 2 MiB pages, A and D preset", () => {
  using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: 1n << 20n }]);
  writeLongModeTables(mem);
  const L = DEFAULT_LONG_MODE_LAYOUT;
  assert.equal(mem.readU64(guestAddress(L.pml4)), L.pdpt | 0x23n);
  assert.equal(mem.readU64(guestAddress(L.pml4 + 8n)), 0n);
  for (let i = 0n; i < 4n; i++) {
    assert.equal(mem.readU64(guestAddress(L.pdpt + i * 8n)), (L.pd + i * 4096n) | 0x23n);
  }
  assert.equal(mem.readU64(guestAddress(L.pdpt + 32n)), 0n);
  // The PD entry for GPA 0xd0000000 (GiB 3, entry 128).
  assert.equal(mem.readU64(guestAddress(L.pd + 3n * 4096n + 128n * 8n)), 0xd0000000n | 0xe3n);
  assert.equal(mem.readU64(guestAddress(L.gdt + BigInt(CODE_SELECTOR))), 0x00af9b000000ffffn);
  const tss = mem.readU64(guestAddress(L.gdt + BigInt(TSS_SELECTOR)));
  assert.equal((tss >> 16n) & 0xffffffn, L.tss, "TSS base in the descriptor");
  assert.equal((tss >> 40n) & 0xffn, 0x8bn, "present, busy 64-bit TSS");
});

Deno.test("longModeSregs() turns on paging, PAE and long mode with flat segments", () => {
  const s = longModeSregs(decodeSregs(new Uint8Array(312)));
  assert.equal(s.cr0 & 0x80000001n, 0x80000001n);
  assert.equal(s.cr4 & 0x20n, 0x20n);
  assert.equal(s.efer, 0x500n);
  assert.equal(s.cr3, DEFAULT_LONG_MODE_LAYOUT.pml4);
  assert.deepEqual([s.cs.l, s.cs.db, s.cs.selector, s.ss.selector], [1, 0, 0x08, 0x10]);
  assert.deepEqual([s.tr.type, s.tr.limit, s.idt.limit], [0xb, 0x67, 0]);
  assert.throws(
    () => longModeSregs(s, { ...DEFAULT_LONG_MODE_LAYOUT, mappedBytes: 3n << 29n }),
    /partial GiB/,
  );
});

Deno.test("enterLongMode() sets RIP, RSP and RFLAGS and clears the other registers", () => {
  using mem = GuestMemory.create([{ gpa: guestAddress(0n), size: 1n << 20n }]);
  let sregs = decodeSregs(new Uint8Array(312));
  let regs = { rax: 5n } as Record<string, bigint>;
  const vcpu = {
    getSregs: () => sregs,
    setSregs: (s: typeof sregs) => void (sregs = s),
    getRegs: () => ({ ...regs, rbx: 9n }) as never,
    setRegs: (r: Record<string, bigint>) => void (regs = r),
  };
  enterLongMode(vcpu, mem, { entry: 0x10000n, stack: 0xf000n });
  assert.deepEqual(regs, { rax: 0n, rbx: 0n, rip: 0x10000n, rsp: 0xf000n, rflags: 2n });
  assert.equal(sregs.efer, 0x500n);
});
