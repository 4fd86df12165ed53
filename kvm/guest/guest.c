/*
 * The deno-vmm test guest: a freestanding 64-bit program that the VMM loads at
 * GUEST_CODE_GPA and enters in long mode (page tables, GDT and segments are the
 * VMM's). It waits for commands in the mailbox page without exiting, writes
 * guest pages in a pattern at a rate the VMM sets, keeps a counter and
 * checksums in the mailbox, prints a heartbeat on COM1 and reports through
 * ports. It has no data or bss: everything it keeps lives in the mailbox or on
 * its one stack page, so the pages it dirties are known.
 */
#include "guest.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define MB8(off) (*(volatile u8 *)(GUEST_MAILBOX_GPA + (off)))
#define MB32(off) (*(volatile u32 *)(GUEST_MAILBOX_GPA + (off)))
#define MB64(off) (*(volatile u64 *)(GUEST_MAILBOX_GPA + (off)))

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port) {
  u32 v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline u64 rdtsc(void) {
  u32 lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((u64)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* splitmix64: the value of write number i (kvm/guest/workload.ts has the same). */
static u64 mix(u64 x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static void puts_com1(const char *s) {
  while (*s) outb(GUEST_COM1_PORT, (u8)*s++);
}

static void putu_com1(u64 v) {
  char buf[21];
  int i = 20;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  puts_com1(&buf[i]);
}

/* Write number `counter` goes to data page `page`: word 0 gets the value, word 1 the number. */
static void write_page(u64 seed, u64 page, u64 value) {
  volatile u64 *p = (volatile u64 *)(GUEST_DATA_GPA + page * 4096);
  u64 counter = MB64(MB_COUNTER);
  u64 old = p[0];
  p[0] = value;
  p[1] = counter;
  MB64(MB_PAGE_SUM) = MB64(MB_PAGE_SUM) + value - old;
  MB64(MB_CHECKSUM) = (MB64(MB_CHECKSUM) ^ value) * GUEST_FNV_PRIME;
  MB64(MB_COUNTER) = counter + 1;
  (void)seed;
}

static u64 pick_page(u32 pattern, u64 pages, u64 counter, u64 r) {
  if (pattern == GUEST_PATTERN_SEQUENTIAL) return counter % pages;
  if (pattern == GUEST_PATTERN_RANDOM) return r % pages;
  u64 hot = pages / 10;
  if (hot == 0) hot = 1;
  if (hot >= pages || (r >> 32) % 10 < 9) return r % hot;
  return hot + r % (pages - hot);
}

static void heartbeat(void) {
  u64 n = MB64(MB_HEARTBEATS) + 1;
  MB64(MB_HEARTBEATS) = n;
  puts_com1("heartbeat ");
  putu_com1(n);
  puts_com1(" counter=");
  putu_com1(MB64(MB_COUNTER));
  puts_com1("\n");
}

/* RUN: write pages until max_writes (if set) or until a new command comes. */
static void run(u64 seed, u32 seq) {
  u32 pattern = MB32(MB_PATTERN);
  u64 pages = MB64(MB_DATA_PAGES);
  u64 max = MB64(MB_MAX_WRITES);
  u64 khz = MB64(MB_TSC_KHZ);
  u64 pps = MB64(MB_PAGES_PER_SEC);
  u64 hb_ms = MB64(MB_HEARTBEAT_MS);
  u64 tick = (pps != 0 && khz != 0) ? khz * 1000 / pps : 0;
  u64 hb_ticks = khz * hb_ms;
  u64 slack = khz * 50; /* never catch up more than 50 ms of writes in a burst */
  u64 now = rdtsc();
  u64 next = now;
  u64 next_hb = now + hb_ticks;
  u64 done = 0;
  if (pages == 0) return;
  while (max == 0 || done < max) {
    if (MB32(MB_COMMAND_SEQ) != seq) return;
    now = rdtsc();
    if (hb_ticks != 0 && now >= next_hb) {
      heartbeat();
      next_hb = now + hb_ticks;
    }
    if (tick != 0) {
      if (now < next) {
        cpu_relax();
        continue;
      }
      next = (now - next > slack) ? now + tick : next + tick;
    }
    u64 counter = MB64(MB_COUNTER);
    u64 value = mix((seed << 32) ^ counter) | 1;
    write_page(seed, pick_page(pattern, pages, counter, value), value);
    done++;
  }
}

static void write_list(u64 seed) {
  u64 n = MB64(MB_LIST_COUNT);
  volatile u32 *list = (volatile u32 *)GUEST_LIST_GPA;
  if (n > GUEST_LIST_MAX) n = GUEST_LIST_MAX;
  for (u64 i = 0; i < n; i++) {
    u64 counter = MB64(MB_COUNTER);
    write_page(seed, list[i], mix((seed << 32) ^ counter) | 1);
  }
}

static void verify(void) {
  u64 pages = MB64(MB_DATA_PAGES);
  u64 sum = 0;
  for (u64 p = 0; p < pages; p++) sum += *(volatile u64 *)(GUEST_DATA_GPA + p * 4096);
  MB64(MB_VERIFY_SUM) = sum;
}

void guest_main(void) {
  MB32(MB_MAGIC) = GUEST_MAGIC;
  MB32(MB_VERSION) = GUEST_VERSION;
  if (MB64(MB_BOOTS) == 0) MB64(MB_CHECKSUM) = GUEST_FNV_OFFSET;
  MB64(MB_BOOTS) = MB64(MB_BOOTS) + 1;
  u64 seed = MB32(MB_SEED);
  /* Written after every command, so each command dirties the stack page. */
  volatile u64 stack_mark __attribute__((unused)) = 0;
  MB32(MB_STATE) = GUEST_STATE_IDLE;
  puts_com1("deno-vmm guest: up, seed ");
  putu_com1(seed);
  puts_com1("\n");
  for (;;) {
    u32 seq = MB32(MB_COMMAND_SEQ);
    if (seq == MB32(MB_ACK_SEQ)) {
      cpu_relax();
      continue;
    }
    u32 cmd = MB32(MB_COMMAND);
    MB32(MB_STATE) = GUEST_STATE_BUSY;
    switch (cmd) {
      case GUEST_CMD_RUN:
        run(seed, seq);
        break;
      case GUEST_CMD_WRITE_LIST:
        write_list(seed);
        break;
      case GUEST_CMD_VERIFY:
        verify();
        break;
      case GUEST_CMD_PIO:
        outl(GUEST_TEST_PORT, (u32)MB64(MB_ARG));
        MB64(MB_RESULT) = inl(GUEST_TEST_PORT);
        break;
      case GUEST_CMD_MMIO: {
        volatile u32 *mmio = (volatile u32 *)GUEST_MMIO_GPA;
        *mmio = (u32)MB64(MB_ARG);
        MB64(MB_RESULT) = *mmio;
        break;
      }
      case GUEST_CMD_HALT:
        __asm__ volatile("hlt");
        break;
      case GUEST_CMD_TRIPLE_FAULT:
        __asm__ volatile("ud2"); /* no IDT: #UD, #DF, then shutdown */
        break;
      case GUEST_CMD_EXEC_MMIO:
        ((void (*)(void))GUEST_MMIO_GPA)();
        break;
      case GUEST_CMD_EXIT:
        outl(GUEST_DONE_PORT, (u32)MB64(MB_ARG));
        break;
      default:
        break;
    }
    /* A RUN cut short by a new command is not acknowledged: the new one runs. */
    stack_mark = seq;
    if (MB32(MB_COMMAND_SEQ) != seq) continue;
    MB32(MB_ACK_SEQ) = seq;
    MB32(MB_STATE) = GUEST_STATE_IDLE;
    outl(GUEST_ACK_PORT, seq);
  }
}
