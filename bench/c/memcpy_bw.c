/*
 * memcpy bandwidth baseline for bench/limits.ts and bench/limits_bench.ts.
 *
 * As a program (bench/limits.ts builds it into bench/out/):
 *
 *   memcpy_bw whole  MIB ITERS          one memcpy of the whole buffer
 *   memcpy_bw chunk  MIB ITERS BYTES    sequential memcpy calls of BYTES each
 *   memcpy_bw random MIB ITERS          every 4 KiB page once, in random order
 *
 * Source and destination are separate private anonymous mappings of MIB MiB,
 * prefaulted with MAP_POPULATE (as GuestMemory's `prefault: true`), the source
 * filled with 1. Prints one JSON line: {"mode":..., "bytes":N, "ns":[...]}.
 *
 * The random order is a Fisher-Yates shuffle of the page indexes driven by
 * xorshift32 seeded with 1; bench/_limits_common.ts makes the same one, so C
 * and TypeScript copy the pages in the same order.
 *
 * Built with -DMEMCPY_BW_LIBRARY -shared -fPIC, it exports the same loops
 * for FFI (bench/limits_bench.ts): memcpy_chunks() and memcpy_pages().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u

/* Copies `size` bytes in `run`-byte memcpy calls, in order. */
void memcpy_chunks(uint8_t *dst, const uint8_t *src, uint64_t size, uint64_t run)
{
	for (uint64_t off = 0; off < size; off += run) {
		uint64_t n = size - off < run ? size - off : run;
		memcpy(dst + off, src + off, n);
	}
}

/* Copies the 4 KiB pages listed in `order` (page indexes), in that order. */
void memcpy_pages(uint8_t *dst, const uint8_t *src, const uint32_t *order, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		uint64_t off = (uint64_t)order[i] * PAGE;
		memcpy(dst + off, src + off, PAGE);
	}
}

#ifndef MEMCPY_BW_LIBRARY
static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t *page_order(uint64_t pages)
{
	uint32_t *order = malloc(pages * sizeof *order);
	if (order == NULL) return NULL;
	for (uint64_t i = 0; i < pages; i++) order[i] = (uint32_t)i;
	uint32_t x = 1;
	for (uint64_t i = pages - 1; i > 0; i--) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		uint64_t j = x % (i + 1);
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	return order;
}

static void *map(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "mmap %llu bytes: %s\n", (unsigned long long)size, strerror(errno));
		exit(1);
	}
	return p;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s whole|chunk|random MIB ITERS [BYTES]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	uint64_t size = (uint64_t)atoll(argv[2]) << 20;
	int iters = atoi(argv[3]);
	uint64_t run = argc > 4 ? (uint64_t)atoll(argv[4]) : 0;
	int chunk = strcmp(mode, "chunk") == 0, random = strcmp(mode, "random") == 0;
	if (size == 0 || iters < 1 || (!chunk && !random && strcmp(mode, "whole") != 0) ||
	    (chunk && run == 0)) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	uint8_t *src = map(size), *dst = map(size);
	memset(src, 1, size);
	uint32_t *order = random ? page_order(size / PAGE) : NULL;
	if (random && order == NULL) return 1;
	uint64_t *ns = calloc((size_t)iters, sizeof *ns);
	unsigned sum = 0;
	for (int it = 0; it < iters; it++) {
		uint64_t t0 = now_ns();
		if (random) memcpy_pages(dst, src, order, size / PAGE);
		else memcpy_chunks(dst, src, size, chunk ? run : size);
		ns[it] = now_ns() - t0;
		sum += dst[(uint64_t)it * PAGE % size];
	}
	printf("{\"mode\":\"%s\",\"bytes\":%llu,\"run\":%llu,\"check\":%u,\"ns\":[", mode,
	       (unsigned long long)size, (unsigned long long)run, sum);
	for (int it = 0; it < iters; it++) printf("%s%llu", it ? "," : "", (unsigned long long)ns[it]);
	printf("]}\n");
	return 0;
}
#endif
