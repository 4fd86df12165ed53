/**
 * KVM constants with their `linux/kvm.h` (and x86 `asm/kvm.h`) spellings.
 *
 * @module
 */

/** `KVM_API_VERSION`: the only stable API version. */
export const KVM_API_VERSION = 12;

// Capabilities (KVM_CHECK_EXTENSION).
/** `KVM_CAP_IRQCHIP`. */
export const KVM_CAP_IRQCHIP = 0;
/** `KVM_CAP_HLT`. */
export const KVM_CAP_HLT = 1;
/** `KVM_CAP_USER_MEMORY`. */
export const KVM_CAP_USER_MEMORY = 3;
/** `KVM_CAP_SET_TSS_ADDR`. */
export const KVM_CAP_SET_TSS_ADDR = 4;
/** `KVM_CAP_EXT_CPUID`. */
export const KVM_CAP_EXT_CPUID = 7;
/** `KVM_CAP_NR_VCPUS`: the recommended vCPUs per VM. */
export const KVM_CAP_NR_VCPUS = 9;
/** `KVM_CAP_NR_MEMSLOTS`: memory slots per address space. */
export const KVM_CAP_NR_MEMSLOTS = 10;
/** `KVM_CAP_MP_STATE`. */
export const KVM_CAP_MP_STATE = 14;
/** `KVM_CAP_SYNC_MMU`. */
export const KVM_CAP_SYNC_MMU = 16;
/** `KVM_CAP_ADJUST_CLOCK`: which `KVM_CLOCK_*` flags `KVM_GET_CLOCK` fills. */
export const KVM_CAP_ADJUST_CLOCK = 39;
/** `KVM_CAP_INTERNAL_ERROR_DATA`. */
export const KVM_CAP_INTERNAL_ERROR_DATA = 40;
/** `KVM_CAP_VCPU_EVENTS`. */
export const KVM_CAP_VCPU_EVENTS = 41;
/** `KVM_CAP_DEBUGREGS`. */
export const KVM_CAP_DEBUGREGS = 50;
/** `KVM_CAP_XSAVE`. */
export const KVM_CAP_XSAVE = 55;
/** `KVM_CAP_XCRS`. */
export const KVM_CAP_XCRS = 56;
/** `KVM_CAP_TSC_CONTROL`. */
export const KVM_CAP_TSC_CONTROL = 60;
/** `KVM_CAP_GET_TSC_KHZ`. */
export const KVM_CAP_GET_TSC_KHZ = 61;
/** `KVM_CAP_MAX_VCPUS`. */
export const KVM_CAP_MAX_VCPUS = 66;
/** `KVM_CAP_CHECK_EXTENSION_VM`. */
export const KVM_CAP_CHECK_EXTENSION_VM = 105;
/** `KVM_CAP_IMMEDIATE_EXIT`: `kvm_run.immediate_exit`. */
export const KVM_CAP_IMMEDIATE_EXIT = 136;
/** `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`: `KVM_CLEAR_DIRTY_LOG`; answers the flags it accepts. */
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
/** `KVM_CAP_DIRTY_LOG_RING`: answers the largest ring in bytes. */
export const KVM_CAP_DIRTY_LOG_RING = 192;
/** `KVM_CAP_XSAVE2`: answers the `kvm_xsave` size for `KVM_GET_XSAVE2` (on a VM fd). */
export const KVM_CAP_XSAVE2 = 208;
/** `KVM_CAP_SYSTEM_EVENT_DATA`. */
export const KVM_CAP_SYSTEM_EVENT_DATA = 215;
/** `KVM_CAP_DIRTY_LOG_RING_ACQ_REL`: the ring with acquire/release ordering. */
export const KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;

// Exit reasons (kvm_run.exit_reason).
/** `KVM_EXIT_UNKNOWN`. */
export const KVM_EXIT_UNKNOWN = 0;
/** `KVM_EXIT_EXCEPTION`. */
export const KVM_EXIT_EXCEPTION = 1;
/** `KVM_EXIT_IO`: port I/O. */
export const KVM_EXIT_IO = 2;
/** `KVM_EXIT_HYPERCALL`. */
export const KVM_EXIT_HYPERCALL = 3;
/** `KVM_EXIT_DEBUG`. */
export const KVM_EXIT_DEBUG = 4;
/** `KVM_EXIT_HLT`: HLT without an in-kernel local APIC. */
export const KVM_EXIT_HLT = 5;
/** `KVM_EXIT_MMIO`. */
export const KVM_EXIT_MMIO = 6;
/** `KVM_EXIT_IRQ_WINDOW_OPEN`. */
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
/** `KVM_EXIT_SHUTDOWN`: a triple fault. */
export const KVM_EXIT_SHUTDOWN = 8;
/** `KVM_EXIT_FAIL_ENTRY`: VM entry failed. */
export const KVM_EXIT_FAIL_ENTRY = 9;
/** `KVM_EXIT_INTR`. */
export const KVM_EXIT_INTR = 10;
/** `KVM_EXIT_INTERNAL_ERROR`. */
export const KVM_EXIT_INTERNAL_ERROR = 17;
/** `KVM_EXIT_SYSTEM_EVENT`. */
export const KVM_EXIT_SYSTEM_EVENT = 24;
/** `KVM_EXIT_DIRTY_RING_FULL`: the vCPU's dirty ring needs harvesting and a reset. */
export const KVM_EXIT_DIRTY_RING_FULL = 31;

/** `KVM_EXIT_IO_IN`. */
export const KVM_EXIT_IO_IN = 0;
/** `KVM_EXIT_IO_OUT`. */
export const KVM_EXIT_IO_OUT = 1;

/** `KVM_INTERNAL_ERROR_EMULATION`. */
export const KVM_INTERNAL_ERROR_EMULATION = 1;
/** `KVM_INTERNAL_ERROR_SIMUL_EX`. */
export const KVM_INTERNAL_ERROR_SIMUL_EX = 2;
/** `KVM_INTERNAL_ERROR_DELIVERY_EV`. */
export const KVM_INTERNAL_ERROR_DELIVERY_EV = 3;
/** `KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON`. */
export const KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4;

/** `KVM_SYSTEM_EVENT_SHUTDOWN`. */
export const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
/** `KVM_SYSTEM_EVENT_RESET`. */
export const KVM_SYSTEM_EVENT_RESET = 2;
/** `KVM_SYSTEM_EVENT_CRASH`. */
export const KVM_SYSTEM_EVENT_CRASH = 3;

// Memory slots and dirty logging.
/** `KVM_MEM_LOG_DIRTY_PAGES`: log writes to the slot. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
/** `KVM_MEM_READONLY`. */
export const KVM_MEM_READONLY = 2;
/** `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`: `KVM_GET_DIRTY_LOG` leaves pages writable. */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1;
/** `KVM_DIRTY_LOG_INITIALLY_SET`: logging starts with every bit set. */
export const KVM_DIRTY_LOG_INITIALLY_SET = 2;
/** `KVM_DIRTY_LOG_PAGE_OFFSET` (x86): the dirty ring's page offset in a vCPU fd. */
export const KVM_DIRTY_LOG_PAGE_OFFSET = 64;
/** `KVM_DIRTY_GFN_F_DIRTY`: the entry holds a dirty page. */
export const KVM_DIRTY_GFN_F_DIRTY = 1;
/** `KVM_DIRTY_GFN_F_RESET`: the entry was harvested. */
export const KVM_DIRTY_GFN_F_RESET = 2;

// MP states.
/** `KVM_MP_STATE_RUNNABLE`. */
export const KVM_MP_STATE_RUNNABLE = 0;
/** `KVM_MP_STATE_UNINITIALIZED`. */
export const KVM_MP_STATE_UNINITIALIZED = 1;
/** `KVM_MP_STATE_INIT_RECEIVED`. */
export const KVM_MP_STATE_INIT_RECEIVED = 2;
/** `KVM_MP_STATE_HALTED`. */
export const KVM_MP_STATE_HALTED = 3;

// Clock.
/** `KVM_CLOCK_TSC_STABLE`. */
export const KVM_CLOCK_TSC_STABLE = 2;
/** `KVM_CLOCK_REALTIME`. */
export const KVM_CLOCK_REALTIME = 4;
/** `KVM_CLOCK_HOST_TSC`. */
export const KVM_CLOCK_HOST_TSC = 8;

/** `KVM_MAX_CPUID_ENTRIES` as the kernel sizes its tables (x86: 256). */
export const KVM_MAX_CPUID_ENTRIES = 256;
/** `KVM_MAX_XCRS`. */
export const KVM_MAX_XCRS = 16;
