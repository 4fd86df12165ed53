// Pins every KVM ioctl number, constant, struct size and field offset this
// project encodes: first as literals (x86_64), then against the installed
// linux/kvm.h itself, compiled with the system C compiler.
import assert from "node:assert/strict";
import * as ioctls from "./ioctls.ts";
import * as K from "./constants.ts";
import { KVM_REGS_SIZE, KVM_SREGS_SIZE } from "./regs.ts";
import {
  DIRTY_GFN_OFFSET,
  DIRTY_GFN_SLOT,
  KVM_CLEAR_DIRTY_LOG_SIZE,
  KVM_DIRTY_GFN_SIZE,
  KVM_DIRTY_LOG_SIZE,
  KVM_ENABLE_CAP_SIZE,
  KVM_USERSPACE_MEMORY_REGION_SIZE,
} from "./memory.ts";
import {
  KVM_CPUID2_SIZE,
  KVM_CPUID_ENTRY2_SIZE,
  KVM_MSR_ENTRY_SIZE,
  KVM_MSR_LIST_SIZE,
  KVM_MSRS_SIZE,
} from "./cpu.ts";
import {
  KVM_CLOCK_DATA_SIZE,
  KVM_DEBUGREGS_SIZE,
  KVM_FPU_SIZE,
  KVM_LAPIC_STATE_SIZE,
  KVM_MP_STATE_SIZE,
  KVM_SIGNAL_MASK_SIZE,
  KVM_VCPU_EVENTS_SIZE,
  KVM_XCRS_SIZE,
  KVM_XSAVE_SIZE,
} from "./state.ts";
import {
  KVM_RUN_SIZE,
  RUN_APIC_BASE,
  RUN_CR8,
  RUN_EXIT_REASON,
  RUN_EXIT_UNION,
  RUN_FLAGS,
  RUN_IMMEDIATE_EXIT,
  RUN_VALID_REGS,
} from "./run.ts";

// Literal values of linux/kvm.h on x86_64 (6.1 headers).
const IOCTLS: Record<string, bigint> = {
  KVM_GET_API_VERSION: 0xae00n,
  KVM_CREATE_VM: 0xae01n,
  KVM_GET_MSR_INDEX_LIST: 0xc004ae02n,
  KVM_CHECK_EXTENSION: 0xae03n,
  KVM_GET_VCPU_MMAP_SIZE: 0xae04n,
  KVM_GET_SUPPORTED_CPUID: 0xc008ae05n,
  KVM_CREATE_VCPU: 0xae41n,
  KVM_GET_DIRTY_LOG: 0x4010ae42n,
  KVM_SET_USER_MEMORY_REGION: 0x4020ae46n,
  KVM_SET_TSS_ADDR: 0xae47n,
  KVM_SET_IDENTITY_MAP_ADDR: 0x4008ae48n,
  KVM_CREATE_IRQCHIP: 0xae60n,
  KVM_SET_CLOCK: 0x4030ae7bn,
  KVM_GET_CLOCK: 0x8030ae7cn,
  KVM_ENABLE_CAP: 0x4068aea3n,
  KVM_CLEAR_DIRTY_LOG: 0xc018aec0n,
  KVM_RESET_DIRTY_RINGS: 0xaec7n,
  KVM_RUN: 0xae80n,
  KVM_GET_REGS: 0x8090ae81n,
  KVM_SET_REGS: 0x4090ae82n,
  KVM_GET_SREGS: 0x8138ae83n,
  KVM_SET_SREGS: 0x4138ae84n,
  KVM_GET_MSRS: 0xc008ae88n,
  KVM_SET_MSRS: 0x4008ae89n,
  KVM_SET_SIGNAL_MASK: 0x4004ae8bn,
  KVM_GET_FPU: 0x81a0ae8cn,
  KVM_SET_FPU: 0x41a0ae8dn,
  KVM_GET_LAPIC: 0x8400ae8en,
  KVM_SET_LAPIC: 0x4400ae8fn,
  KVM_SET_CPUID2: 0x4008ae90n,
  KVM_GET_CPUID2: 0xc008ae91n,
  KVM_GET_MP_STATE: 0x8004ae98n,
  KVM_SET_MP_STATE: 0x4004ae99n,
  KVM_GET_VCPU_EVENTS: 0x8040ae9fn,
  KVM_SET_VCPU_EVENTS: 0x4040aea0n,
  KVM_GET_DEBUGREGS: 0x8080aea1n,
  KVM_SET_DEBUGREGS: 0x4080aea2n,
  KVM_SET_TSC_KHZ: 0xaea2n,
  KVM_GET_TSC_KHZ: 0xaea3n,
  KVM_GET_XSAVE: 0x9000aea4n,
  KVM_SET_XSAVE: 0x5000aea5n,
  KVM_GET_XCRS: 0x8188aea6n,
  KVM_SET_XCRS: 0x4188aea7n,
  KVM_GET_XSAVE2: 0x9000aecfn,
};

const CONSTANTS: Record<string, number> = {
  KVM_API_VERSION: 12,
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_HLT: 1,
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_SET_TSS_ADDR: 4,
  KVM_CAP_EXT_CPUID: 7,
  KVM_CAP_NR_VCPUS: 9,
  KVM_CAP_NR_MEMSLOTS: 10,
  KVM_CAP_MP_STATE: 14,
  KVM_CAP_SYNC_MMU: 16,
  KVM_CAP_ADJUST_CLOCK: 39,
  KVM_CAP_INTERNAL_ERROR_DATA: 40,
  KVM_CAP_VCPU_EVENTS: 41,
  KVM_CAP_DEBUGREGS: 50,
  KVM_CAP_XSAVE: 55,
  KVM_CAP_XCRS: 56,
  KVM_CAP_TSC_CONTROL: 60,
  KVM_CAP_GET_TSC_KHZ: 61,
  KVM_CAP_MAX_VCPUS: 66,
  KVM_CAP_CHECK_EXTENSION_VM: 105,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: 168,
  KVM_CAP_DIRTY_LOG_RING: 192,
  KVM_CAP_XSAVE2: 208,
  KVM_CAP_SYSTEM_EVENT_DATA: 215,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL: 223,
  KVM_EXIT_UNKNOWN: 0,
  KVM_EXIT_EXCEPTION: 1,
  KVM_EXIT_IO: 2,
  KVM_EXIT_HYPERCALL: 3,
  KVM_EXIT_DEBUG: 4,
  KVM_EXIT_HLT: 5,
  KVM_EXIT_MMIO: 6,
  KVM_EXIT_IRQ_WINDOW_OPEN: 7,
  KVM_EXIT_SHUTDOWN: 8,
  KVM_EXIT_FAIL_ENTRY: 9,
  KVM_EXIT_INTR: 10,
  KVM_EXIT_INTERNAL_ERROR: 17,
  KVM_EXIT_SYSTEM_EVENT: 24,
  KVM_EXIT_DIRTY_RING_FULL: 31,
  KVM_EXIT_IO_IN: 0,
  KVM_EXIT_IO_OUT: 1,
  KVM_INTERNAL_ERROR_EMULATION: 1,
  KVM_INTERNAL_ERROR_SIMUL_EX: 2,
  KVM_INTERNAL_ERROR_DELIVERY_EV: 3,
  KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: 4,
  KVM_SYSTEM_EVENT_SHUTDOWN: 1,
  KVM_SYSTEM_EVENT_RESET: 2,
  KVM_SYSTEM_EVENT_CRASH: 3,
  KVM_MEM_LOG_DIRTY_PAGES: 1,
  KVM_MEM_READONLY: 2,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE: 1,
  KVM_DIRTY_LOG_INITIALLY_SET: 2,
  KVM_DIRTY_LOG_PAGE_OFFSET: 64,
  KVM_DIRTY_GFN_F_DIRTY: 1,
  KVM_DIRTY_GFN_F_RESET: 2,
  KVM_MP_STATE_RUNNABLE: 0,
  KVM_MP_STATE_UNINITIALIZED: 1,
  KVM_MP_STATE_INIT_RECEIVED: 2,
  KVM_MP_STATE_HALTED: 3,
  KVM_CLOCK_TSC_STABLE: 2,
  KVM_CLOCK_REALTIME: 4,
  KVM_CLOCK_HOST_TSC: 8,
  KVM_MAX_XCRS: 16,
};

const SIZES: Record<string, number> = {
  kvm_run: KVM_RUN_SIZE,
  kvm_regs: KVM_REGS_SIZE,
  kvm_sregs: KVM_SREGS_SIZE,
  kvm_segment: 24,
  kvm_dtable: 16,
  kvm_fpu: KVM_FPU_SIZE,
  kvm_xsave: KVM_XSAVE_SIZE,
  kvm_xcrs: KVM_XCRS_SIZE,
  kvm_lapic_state: KVM_LAPIC_STATE_SIZE,
  kvm_vcpu_events: KVM_VCPU_EVENTS_SIZE,
  kvm_debugregs: KVM_DEBUGREGS_SIZE,
  kvm_mp_state: KVM_MP_STATE_SIZE,
  kvm_clock_data: KVM_CLOCK_DATA_SIZE,
  kvm_signal_mask: KVM_SIGNAL_MASK_SIZE,
  kvm_userspace_memory_region: KVM_USERSPACE_MEMORY_REGION_SIZE,
  kvm_dirty_log: KVM_DIRTY_LOG_SIZE,
  kvm_clear_dirty_log: KVM_CLEAR_DIRTY_LOG_SIZE,
  kvm_dirty_gfn: KVM_DIRTY_GFN_SIZE,
  kvm_enable_cap: KVM_ENABLE_CAP_SIZE,
  kvm_cpuid2: KVM_CPUID2_SIZE,
  kvm_cpuid_entry2: KVM_CPUID_ENTRY2_SIZE,
  kvm_msr_list: KVM_MSR_LIST_SIZE,
  kvm_msrs: KVM_MSRS_SIZE,
  kvm_msr_entry: KVM_MSR_ENTRY_SIZE,
};

const OFFSETS: Record<string, number> = {
  "kvm_run.immediate_exit": RUN_IMMEDIATE_EXIT,
  "kvm_run.exit_reason": RUN_EXIT_REASON,
  "kvm_run.flags": RUN_FLAGS,
  "kvm_run.cr8": RUN_CR8,
  "kvm_run.apic_base": RUN_APIC_BASE,
  "kvm_run.io": RUN_EXIT_UNION,
  "kvm_run.io.size": RUN_EXIT_UNION + 1,
  "kvm_run.io.port": RUN_EXIT_UNION + 2,
  "kvm_run.io.count": RUN_EXIT_UNION + 4,
  "kvm_run.io.data_offset": RUN_EXIT_UNION + 8,
  "kvm_run.mmio.phys_addr": RUN_EXIT_UNION,
  "kvm_run.mmio.data": RUN_EXIT_UNION + 8,
  "kvm_run.mmio.len": RUN_EXIT_UNION + 16,
  "kvm_run.mmio.is_write": RUN_EXIT_UNION + 20,
  "kvm_run.fail_entry.cpu": RUN_EXIT_UNION + 8,
  "kvm_run.internal.ndata": RUN_EXIT_UNION + 4,
  "kvm_run.internal.data": RUN_EXIT_UNION + 8,
  "kvm_run.system_event.ndata": RUN_EXIT_UNION + 4,
  "kvm_run.system_event.data": RUN_EXIT_UNION + 8,
  "kvm_run.kvm_valid_regs": RUN_VALID_REGS,
  "kvm_regs.rip": 128,
  "kvm_regs.rflags": 136,
  "kvm_sregs.gdt": 192,
  "kvm_sregs.idt": 208,
  "kvm_sregs.cr0": 224,
  "kvm_sregs.efer": 264,
  "kvm_sregs.apic_base": 272,
  "kvm_sregs.interrupt_bitmap": 280,
  "kvm_segment.selector": 12,
  "kvm_segment.type": 14,
  "kvm_segment.unusable": 22,
  "kvm_userspace_memory_region.guest_phys_addr": 8,
  "kvm_userspace_memory_region.memory_size": 16,
  "kvm_userspace_memory_region.userspace_addr": 24,
  "kvm_dirty_log.dirty_bitmap": 8,
  "kvm_clear_dirty_log.num_pages": 4,
  "kvm_clear_dirty_log.first_page": 8,
  "kvm_clear_dirty_log.dirty_bitmap": 16,
  "kvm_dirty_gfn.slot": DIRTY_GFN_SLOT,
  "kvm_dirty_gfn.offset": DIRTY_GFN_OFFSET,
  "kvm_enable_cap.args": 8,
  "kvm_cpuid2.entries": KVM_CPUID2_SIZE,
  "kvm_cpuid_entry2.eax": 12,
  "kvm_cpuid_entry2.edx": 24,
  "kvm_msrs.entries": KVM_MSRS_SIZE,
  "kvm_msr_entry.data": 8,
  "kvm_clock_data.flags": 8,
  "kvm_clock_data.realtime": 16,
  "kvm_clock_data.host_tsc": 24,
};

Deno.test("KVM ioctls pin every request number and name", () => {
  const table = ioctls as unknown as Record<string, { name: string; code: bigint }>;
  for (const [name, code] of Object.entries(IOCTLS)) {
    assert.equal(table[name].name, name);
    assert.equal(table[name].code, code, name);
  }
  assert.equal(ioctls.KVM_RUN.code, 44672n);
});

Deno.test("KVM constants pin linux/kvm.h values", () => {
  const table = K as unknown as Record<string, number>;
  for (const [name, value] of Object.entries(CONSTANTS)) assert.equal(table[name], value, name);
});

Deno.test("kvmIoctl() refuses a size that does not fit", () => {
  assert.throws(() => ioctls.kvmIoctl("KVM_X", 1, { dir: "r", size: 1 << 14 }), RangeError);
});

const C_PROGRAM = `#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
#define S(t) printf("sizeof %s %zu\\n", #t, sizeof(struct t));
#define O(t, f) printf("offsetof %s.%s %zu\\n", #t, #f, offsetof(struct t, f));
#define I(n) printf("ioctl %s %lu\\n", #n, (unsigned long)(n));
#define C(n) printf("const %s %lld\\n", #n, (long long)(n));
int main(void) {
${Object.keys(SIZES).map((s) => `  S(${s})`).join("\n")}
${
  Object.keys(OFFSETS).map((o) => {
    const [t, ...f] = o.split(".");
    return `  O(${t}, ${f.join(".")})`;
  }).join("\n")
}
${Object.keys(IOCTLS).map((i) => `  I(${i})`).join("\n")}
${Object.keys(CONSTANTS).map((c) => `  C(${c})`).join("\n")}
  return 0;
}
`;

Deno.test("KVM layouts match the installed linux/kvm.h compiled with cc", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-kvm-layout-" });
  try {
    await Deno.writeTextFile(`${dir}/layout.c`, C_PROGRAM);
    const cc = await new Deno.Command("cc", {
      args: ["-o", `${dir}/layout`, `${dir}/layout.c`],
      stderr: "piped",
    }).output().catch((e) => {
      throw new TypeError(`This test needs a C compiler (apt-get install gcc): ${e.message}`);
    });
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(`${dir}/layout`, { stdout: "piped" }).output();
    const facts = new Map<string, bigint>();
    for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
      const [kind, name, value] = line.split(" ");
      facts.set(`${kind} ${name}`, BigInt(value));
    }
    for (const [name, size] of Object.entries(SIZES)) {
      assert.equal(facts.get(`sizeof ${name}`), BigInt(size), name);
    }
    for (const [name, offset] of Object.entries(OFFSETS)) {
      assert.equal(facts.get(`offsetof ${name}`), BigInt(offset), name);
    }
    for (const [name, code] of Object.entries(IOCTLS)) {
      assert.equal(facts.get(`ioctl ${name}`), code, name);
    }
    for (const [name, value] of Object.entries(CONSTANTS)) {
      assert.equal(facts.get(`const ${name}`), BigInt(value), name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
