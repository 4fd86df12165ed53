/*
 * The deno-vmm test guest: its guest-physical layout and the mailbox the VMM
 * and the guest share. kvm/guest/layout.ts mirrors every value here; its test
 * reads this file and compares.
 *
 * The guest writes only the mailbox page, its stack page and the data pages it
 * is told to write, so a dirty log of a run is exactly predictable.
 */
#ifndef DENO_VMM_GUEST_H
#define DENO_VMM_GUEST_H

/* Guest-physical layout (identity-mapped with 2 MiB pages up to 4 GiB). */
#define GUEST_GDT_GPA 0x1000
#define GUEST_TSS_GPA 0x1800
#define GUEST_PML4_GPA 0x2000
#define GUEST_PDPT_GPA 0x3000
#define GUEST_PD_GPA 0x4000
#define GUEST_MAILBOX_GPA 0x8000
#define GUEST_STACK_GPA 0xe000
#define GUEST_STACK_TOP 0xf000
#define GUEST_CODE_GPA 0x10000
#define GUEST_CODE_MAX 0x10000
#define GUEST_LIST_GPA 0x20000
#define GUEST_LIST_MAX 0x8000
#define GUEST_DATA_GPA 0x100000
/* An address with no memory slot: accesses exit to the VMM as MMIO. */
#define GUEST_MMIO_GPA 0xd0000000

/* Ports. */
#define GUEST_COM1_PORT 0x3f8
#define GUEST_ACK_PORT 0x500
#define GUEST_DONE_PORT 0x501
#define GUEST_TEST_PORT 0x502

/* Mailbox offsets. The VMM writes 0x00-0xff, the guest 0x100-0x1ff. */
#define MB_MAGIC 0x00         /* u32, written by the guest at boot */
#define MB_VERSION 0x04       /* u32, written by the guest at boot */
#define MB_COMMAND 0x08       /* u32 */
#define MB_COMMAND_SEQ 0x0c   /* u32: a new value issues MB_COMMAND */
#define MB_PATTERN 0x10       /* u32: GUEST_PATTERN_* */
#define MB_SEED 0x14          /* u32 */
#define MB_DATA_PAGES 0x18    /* u64: pages from GUEST_DATA_GPA the workload writes */
#define MB_PAGES_PER_SEC 0x20 /* u64: 0 = as fast as it can */
#define MB_TSC_KHZ 0x28       /* u64 */
#define MB_HEARTBEAT_MS 0x30  /* u64: 0 = no heartbeat */
#define MB_MAX_WRITES 0x38    /* u64: RUN stops after this many writes (0 = never) */
#define MB_LIST_COUNT 0x40    /* u64: entries at GUEST_LIST_GPA for WRITE_LIST */
#define MB_ARG 0x48           /* u64: the argument of PIO/MMIO/EXIT commands */
#define MB_ACK_SEQ 0x100      /* u32: the last command finished */
#define MB_STATE 0x104        /* u32: GUEST_STATE_* */
#define MB_COUNTER 0x108      /* u64: writes done since boot */
#define MB_CHECKSUM 0x110     /* u64: running hash of every value written */
#define MB_PAGE_SUM 0x118     /* u64: sum of word 0 of every data page */
#define MB_HEARTBEATS 0x120   /* u64 */
#define MB_VERIFY_SUM 0x128   /* u64: the sum VERIFY recomputed from the pages */
#define MB_RESULT 0x130       /* u64: what the last PIO/MMIO command read */
#define MB_BOOTS 0x138        /* u64: times the entry point ran */

#define GUEST_MAGIC 0x474d564b /* "KVMG" */
#define GUEST_VERSION 1

#define GUEST_CMD_IDLE 0
#define GUEST_CMD_RUN 1
#define GUEST_CMD_WRITE_LIST 2
#define GUEST_CMD_VERIFY 3
#define GUEST_CMD_PIO 4
#define GUEST_CMD_MMIO 5
#define GUEST_CMD_HALT 6
#define GUEST_CMD_TRIPLE_FAULT 7
#define GUEST_CMD_EXEC_MMIO 8
#define GUEST_CMD_EXIT 9

#define GUEST_PATTERN_SEQUENTIAL 0
#define GUEST_PATTERN_RANDOM 1
#define GUEST_PATTERN_HOTSPOT 2

#define GUEST_STATE_BOOTING 0
#define GUEST_STATE_IDLE 1
#define GUEST_STATE_BUSY 2

/* The write sequence, shared with kvm/guest/workload.ts. */
#define GUEST_FNV_OFFSET 0xcbf29ce484222325ULL
#define GUEST_FNV_PRIME 0x100000001b3ULL

#endif
