/*
 * C baselines for bench/memory_harvest.ts: the same kernel calls the
 * TypeScript trackers make, timed the same way.
 *
 *   memory_harvest pagemap-scan  MIB PERCENT ITERS   uffd async WP + PAGEMAP_SCAN
 *   memory_harvest soft-dirty    MIB PERCENT ITERS   pread /proc/self/pagemap + clear_refs
 *   memory_harvest software      MIB PERCENT ITERS   take-and-clear a bitmap
 *   memory_harvest memcpy        MIB RUN_BYTES ITERS copy runs between two mappings
 *
 * Prints one JSON line: {"mode":..., "ns": [per-iteration ns...], "pages": N}.
 * Each harvest sets one bit per dirty 4 KiB page in a bitmap, as the
 * TypeScript trackers do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "uapi_compat.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint32_t rng = 1;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

static void dirty(uint8_t *mem, size_t pages, int percent)
{
	if (percent >= 100) {
		for (size_t p = 0; p < pages; p++) mem[p * 4096] ^= 1;
		return;
	}
	size_t n = pages * percent / 100;
	for (size_t i = 0; i < n; i++) mem[(size_t)(next_rand() % pages) * 4096] ^= 1;
}

static void set_range(uint32_t *bm, size_t first, size_t count)
{
	for (size_t p = first; p < first + count; p++) bm[p >> 5] |= 1u << (p & 31);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s MODE MIB PERCENT|RUN_BYTES ITERS\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	size_t size = (size_t)atol(argv[2]) << 20;
	long arg = atol(argv[3]);
	int iters = atoi(argv[4]);
	size_t pages = size / 4096;
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) die("mmap");
	memset(mem, 1, size);
	uint32_t *bm = calloc((pages + 63) / 64 * 2, 4);
	uint64_t *ns = calloc(iters, 8);
	size_t reported = 0;

	if (strcmp(mode, "pagemap-scan") == 0) {
		int uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		if (uffd < 0) die("userfaultfd");
		struct uffdio_api api = { .api = UFFD_API,
					  .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
						      UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
		if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
		struct uffdio_register reg = { .range = { (uintptr_t)mem, size }, .mode = UFFDIO_REGISTER_MODE_WP };
		if (ioctl(uffd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER");
		struct uffdio_writeprotect wp = { .range = { (uintptr_t)mem, size }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
		if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) die("UFFDIO_WRITEPROTECT");
		int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pm < 0) die("pagemap");
		static struct page_region vec[4096];
		for (int it = 0; it < iters; it++) {
			dirty(mem, pages, (int)arg);
			memset(bm, 0, (pages + 63) / 64 * 8);
			uint64_t t0 = now_ns();
			uint64_t start = (uintptr_t)mem, end = start + size;
			while (start < end) {
				struct pm_scan_arg a = { .size = sizeof a,
							 .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
							 .start = start, .end = end,
							 .vec = (uintptr_t)vec, .vec_len = 4096,
							 .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN };
				long n = ioctl(pm, PAGEMAP_SCAN, &a);
				if (n < 0) die("PAGEMAP_SCAN");
				for (long i = 0; i < n; i++)
					set_range(bm, (vec[i].start - (uintptr_t)mem) / 4096, (vec[i].end - vec[i].start) / 4096);
				start = a.walk_end;
			}
			ns[it] = now_ns() - t0;
		}
	} else if (strcmp(mode, "soft-dirty") == 0) {
		int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pm < 0) die("pagemap");
		uint64_t *ent = malloc(32768 * 8);
		for (int it = 0; it < iters; it++) {
			dirty(mem, pages, (int)arg);
			memset(bm, 0, (pages + 63) / 64 * 8);
			uint64_t t0 = now_ns();
			for (size_t first = 0; first < pages; first += 32768) {
				size_t n = pages - first < 32768 ? pages - first : 32768;
				off_t off = ((uintptr_t)mem / 4096 + first) * 8;
				if (pread(pm, ent, n * 8, off) != (ssize_t)(n * 8)) die("pread pagemap");
				for (size_t i = 0; i < n; i++)
					if (ent[i] >> 55 & 1) bm[(first + i) >> 5] |= 1u << ((first + i) & 31);
			}
			int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
			if (cr < 0 || write(cr, "4\n", 2) != 2) die("clear_refs");
			close(cr);
			ns[it] = now_ns() - t0;
		}
	} else if (strcmp(mode, "software") == 0) {
		size_t words = (pages + 63) / 64 * 2;
		uint32_t *log = calloc(words, 4);
		for (int it = 0; it < iters; it++) {
			size_t n = arg >= 100 ? pages : pages * arg / 100;
			for (size_t i = 0; i < n; i++) {
				size_t p = arg >= 100 ? i : next_rand() % pages;
				__atomic_fetch_or(&log[p >> 5], 1u << (p & 31), __ATOMIC_SEQ_CST);
			}
			memset(bm, 0, words * 4);
			uint64_t t0 = now_ns();
			for (size_t i = 0; i < words; i++)
				if (log[i]) bm[i] |= __atomic_exchange_n(&log[i], 0, __ATOMIC_SEQ_CST);
			ns[it] = now_ns() - t0;
		}
	} else if (strcmp(mode, "memcpy") == 0) {
		uint8_t *dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (dst == MAP_FAILED) die("mmap dst");
		size_t run = (size_t)arg;
		for (int it = 0; it < iters; it++) {
			uint64_t t0 = now_ns();
			for (size_t off = 0; off < size; off += run) memcpy(dst + off, mem + off, run);
			ns[it] = now_ns() - t0;
		}
		reported = dst[size - 1];
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	for (size_t i = 0; i < (pages + 63) / 64 * 2; i++) reported += __builtin_popcount(bm[i]);
	printf("{\"mode\":\"%s\",\"pages\":%zu,\"ns\":[", mode, reported);
	for (int it = 0; it < iters; it++) printf("%s%llu", it ? "," : "", (unsigned long long)ns[it]);
	printf("]}\n");
	return 0;
}
