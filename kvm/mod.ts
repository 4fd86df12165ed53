/**
 * Real vCPUs on Linux KVM, and KVM's dirty page logging.
 *
 * - {@linkcode Kvm}: `/dev/kvm` (API version 12, extensions, MSR list,
 *   supported CPUID), and the {@linkcode Vm}s made from it: memory slots from
 *   guest RAM regions, the in-kernel irqchip, PIO and MMIO buses
 *   ({@linkcode PioBus}, {@linkcode MmioBus}), the guest clock.
 * - {@linkcode Vcpu}: `KVM_RUN` on a Worker thread of its own, exits decoded
 *   ({@linkcode VcpuExit}) and dispatched to the buses; pause within
 *   milliseconds even when the guest never exits (`immediate_exit` plus a
 *   signal kick); complete saved state ({@linkcode VcpuState}, encoded with
 *   {@linkcode encodeVmState}) to go on in another VM.
 * - {@linkcode KvmDirtyLog} (the dirty bitmap, `KVM_CLEAR_DIRTY_LOG` in
 *   chunks) and {@linkcode KvmDirtyRing} (per-vCPU rings, full-ring exits
 *   handled): dirty sources with `harvestInto(bitmaps)`.
 * - {@linkcode enterLongMode}: page tables, GDT and registers for a 64-bit guest.
 * - {@linkcode GuestProgram}: the test guest (built from source with
 *   {@linkcode buildGuestImage}), which writes pages in patterns at a set rate,
 *   keeps a counter and checksums, and prints a heartbeat on COM1
 *   ({@linkcode Serial8250}).
 *
 * Requires `--allow-ffi`, `--allow-read` (the vCPU Worker module) and read-write
 * access to `/dev/kvm`; building the test guest also needs `--allow-run`
 * (gcc, ld, objcopy), `--allow-write` and `--allow-env` (its cache). Where
 * `/dev/kvm` is missing or not permitted, {@linkcode Kvm.open} throws a
 * {@linkcode KvmUnavailableError} saying what to grant; the real-kernel
 * harness (`deno task test:kernel`) runs KVM in its QEMU guest on any machine.
 *
 * @example Boot the test guest and log the pages it writes
 * ```ts ignore
 * import { buildGuestImage, GuestProgram, Kvm, KvmDirtyLog } from "./mod.ts";
 * import { DirtyBitmap, GuestMemory, guestAddress } from "../memory/mod.ts";
 *
 * using kvm = Kvm.open();
 * using memory = GuestMemory.create([{ gpa: guestAddress(0n), size: 16n << 20n }]);
 * using vm = kvm.createVm();
 * using _slots = vm.addMemory(memory);
 * using vcpu = vm.createVcpu();
 * const guest = GuestProgram.install(vm, vcpu, memory, {
 *   image: await buildGuestImage(),
 *   onLine: (line) => console.log(line),
 * });
 * using log = new KvmDirtyLog(vm);
 * log.start();
 * await vcpu.start();
 * await guest.command("run", { pattern: "hotspot", maxWrites: 1000, heartbeatMs: 100 });
 * const bitmaps = vm.slots.map((s) => new DirtyBitmap(Number(s.size / 4096n)));
 * console.log(log.harvestInto(bitmaps).dirtyPages, guest.mailbox().counter);
 * await vcpu.pause();
 * const state = vm.saveState();
 * ```
 *
 * @module
 */

export { Kvm, KVM_DEVICE, type KvmOptions } from "./kvm.ts";
export { DEFAULT_TSS_ADDRESS, type KvmMemory, type MemorySlot, Vm, type VmOptions } from "./vm.ts";
export {
  type ExitListener,
  Vcpu,
  type VcpuHost,
  type VcpuOptions,
  type VcpuRunState,
  type VcpuStop,
} from "./vcpu.ts";
export {
  type ExitAction,
  MmioBus,
  type MmioHandler,
  PioBus,
  type PioHandler,
  type UnhandledAccesses,
} from "./io_bus.ts";
export { COM1_PORT, Serial8250, SERIAL_PORTS } from "./serial.ts";
export {
  exitReasonName,
  type FailEntryExit,
  type InternalErrorExit,
  type IoExit,
  type MmioExit,
  type SimpleExit,
  type SystemEventExit,
  type VcpuExit,
} from "./uapi/run.ts";
export { type VcpuState, type VcpuStateContext } from "./vcpu_state.ts";
export {
  decodeVmState,
  encodeVmState,
  VM_STATE_MAGIC,
  VM_STATE_VERSION,
  type VmState,
} from "./state_codec.ts";
export { KvmDirtyLog, type KvmDirtyLogOptions } from "./dirty_log.ts";
export { KvmDirtyRing } from "./dirty_ring.ts";
export { coverAll, type KvmDirtySource, type KvmHarvest, type PageBitmap } from "./dirty_source.ts";
export {
  CODE_SELECTOR,
  DATA_SELECTOR,
  DEFAULT_LONG_MODE_LAYOUT,
  enterLongMode,
  type GuestMemoryWriter,
  type LongModeLayout,
  longModeSregs,
  type LongModeVcpu,
  TSS_SELECTOR,
  writeLongModeTables,
} from "./long_mode.ts";
export {
  KvmStateError,
  KvmUnavailableError,
  type KvmUnavailableReason,
  VcpuError,
} from "./errors.ts";
export type { KvmSyscalls } from "./syscalls.ts";
export {
  type KvmDtable,
  type KvmRegs,
  type KvmSegment,
  type KvmSregs,
  REG_NAMES,
  type RegName,
} from "./uapi/regs.ts";
export type { ClockData } from "./uapi/state.ts";
export type { CpuidEntry, MsrEntry } from "./uapi/cpu.ts";
export {
  KVM_API_VERSION,
  KVM_CAP_ADJUST_CLOCK,
  KVM_CAP_CHECK_EXTENSION_VM,
  KVM_CAP_DEBUGREGS,
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_GET_TSC_KHZ,
  KVM_CAP_HLT,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_INTERNAL_ERROR_DATA,
  KVM_CAP_IRQCHIP,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MP_STATE,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_SYSTEM_EVENT_DATA,
  KVM_CAP_TSC_CONTROL,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_VCPU_EVENTS,
  KVM_CAP_XCRS,
  KVM_CAP_XSAVE,
  KVM_CAP_XSAVE2,
  KVM_CLOCK_HOST_TSC,
  KVM_CLOCK_REALTIME,
  KVM_CLOCK_TSC_STABLE,
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_DIRTY_LOG_PAGE_OFFSET,
  KVM_EXIT_DEBUG,
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_EXCEPTION,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_HYPERCALL,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_IN,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_EXIT_UNKNOWN,
  KVM_INTERNAL_ERROR_DELIVERY_EV,
  KVM_INTERNAL_ERROR_EMULATION,
  KVM_INTERNAL_ERROR_SIMUL_EX,
  KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
  KVM_MAX_CPUID_ENTRIES,
  KVM_MAX_XCRS,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_INIT_RECEIVED,
  KVM_MP_STATE_RUNNABLE,
  KVM_MP_STATE_UNINITIALIZED,
  KVM_SYSTEM_EVENT_CRASH,
  KVM_SYSTEM_EVENT_RESET,
  KVM_SYSTEM_EVENT_SHUTDOWN,
} from "./uapi/constants.ts";
export {
  buildGuestImage,
  defaultGuestCacheDir,
  GUEST_CFLAGS,
  GuestBuildError,
  type GuestImage,
} from "./guest/build.ts";
export {
  type GuestAttachOptions,
  type GuestCommandParams,
  type GuestInstallOptions,
  type GuestMailbox,
  GuestProgram,
  type GuestProgramMemory,
} from "./guest/program.ts";
export {
  GUEST_COMMANDS,
  GUEST_LAYOUT,
  GUEST_PATTERNS,
  GUEST_PORTS,
  type GuestCommand,
  type GuestLayout,
  type GuestPattern,
  type MailboxField,
  MB,
} from "./guest/layout.ts";
export { checksumAfter, guestPage, guestValue } from "./guest/workload.ts";
// The address brand and the syscall boundary these APIs take.
export type { GuestAddress } from "../sys/address.ts";
export { guestAddress } from "../sys/address.ts";
export type { IoctlRequest, Syscalls } from "../sys/syscalls.ts";
