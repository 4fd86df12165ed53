/*
 * C baselines for bench/kvm_harvest.ts, loaded with Deno.dlopen: the same
 * kernel calls the TypeScript dirty sources make, on the bench's own VMs.
 *
 * - dirty_log_harvest: KVM_GET_DIRTY_LOG, then KVM_CLEAR_DIRTY_LOG on every
 *   chunk that holds a dirty page (as kvm/dirty_log.ts does).
 * - dirty_ring_harvest: collect the DIRTY entries of one vCPU ring into a
 *   bitmap, mark them RESET, KVM_RESET_DIRTY_RINGS (as kvm/dirty_ring.ts).
 * - kick_latency: run the vCPU on a pthread of its own, then time
 *   immediate_exit + pthread_kill until KVM_RUN has returned EINTR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

static uint64_t popcount64s(const uint64_t *w, uint64_t n) {
  uint64_t c = 0;
  for (uint64_t i = 0; i < n; i++) c += (uint64_t)__builtin_popcountll(w[i]);
  return c;
}

int64_t dirty_log_harvest(int vm, uint32_t slot, uint64_t pages, uint64_t *bitmap, int manual,
                          uint32_t chunk) {
  struct kvm_dirty_log log = {.slot = slot, .dirty_bitmap = bitmap};
  if (ioctl(vm, KVM_GET_DIRTY_LOG, &log) < 0) return -errno;
  uint64_t words = (pages + 63) / 64;
  uint64_t n = popcount64s(bitmap, words);
  if (manual && n != 0) {
    for (uint64_t first = 0; first < pages; first += chunk) {
      uint64_t num = pages - first < chunk ? pages - first : chunk;
      int any = 0;
      for (uint64_t w = first / 64; w < (first + num + 63) / 64 && !any; w++) any = bitmap[w] != 0;
      if (!any) continue;
      struct kvm_clear_dirty_log clear = {
          .slot = slot, .num_pages = (uint32_t)num, .first_page = first,
          .dirty_bitmap = bitmap + first / 64};
      if (ioctl(vm, KVM_CLEAR_DIRTY_LOG, &clear) < 0) return -errno;
    }
  }
  return (int64_t)n;
}

int64_t dirty_ring_harvest(int vm, struct kvm_dirty_gfn *ring, uint32_t entries, uint32_t *next,
                           uint64_t *bitmap, uint64_t pages) {
  uint32_t n = 0;
  for (;;) {
    struct kvm_dirty_gfn *e = &ring[*next & (entries - 1)];
    uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
    if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) break;
    if (e->slot == 0 && e->offset < pages) bitmap[e->offset / 64] |= 1ull << (e->offset % 64);
    __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
    (*next)++;
    n++;
  }
  if (n != 0 && ioctl(vm, KVM_RESET_DIRTY_RINGS, 0) < 0) return -errno;
  return n;
}

struct runner {
  int fd;
  struct kvm_run *run;
  atomic_int phase; /* 0 running, 1 returned with EINTR, 2 stop */
  atomic_int entered;
  int err;
};

static void on_kick(int sig) { (void)sig; }

static void *vcpu_thread(void *p) {
  struct runner *r = p;
  for (;;) {
    atomic_store(&r->entered, 1);
    int rc = ioctl(r->fd, KVM_RUN, 0);
    if (rc < 0 && errno == EINTR) {
      r->run->immediate_exit = 0;
      atomic_store(&r->phase, 1);
      while (atomic_load(&r->phase) == 1) {
      }
      if (atomic_load(&r->phase) == 2) return NULL;
      continue;
    }
    if (rc < 0) {
      r->err = errno;
      atomic_store(&r->phase, 1);
      return NULL;
    }
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Times `rounds` kicks of a guest that spins; returns 0 or -errno. */
int kick_latency(int vcpu_fd, struct kvm_run *run, uint32_t rounds, double *out_us) {
  int sig = SIGRTMIN + 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_kick; /* no SA_RESTART: KVM_RUN returns EINTR */
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) < 0) return -errno;
  struct runner r = {.fd = vcpu_fd, .run = run};
  pthread_t t;
  if (pthread_create(&t, NULL, vcpu_thread, &r) != 0) return -EAGAIN;
  for (uint32_t i = 0; i < rounds; i++) {
    struct timespec pause = {0, 2000000}; /* let the guest run 2 ms */
    nanosleep(&pause, NULL);
    double t0 = now_us();
    run->immediate_exit = 1;
    pthread_kill(t, sig);
    while (atomic_load(&r.phase) != 1) {
    }
    out_us[i] = now_us() - t0;
    if (r.err) break;
    atomic_store(&r.phase, i + 1 == rounds ? 2 : 0);
  }
  if (r.err) atomic_store(&r.phase, 2);
  pthread_join(t, NULL);
  return r.err ? -r.err : 0;
}
