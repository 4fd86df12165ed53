/*
 * Dirty-bitmap scan baseline for bench/limits.ts and bench/limits_bench.ts,
 * built as a shared object (cc -O2 -march=native -shared -fPIC) and called
 * through FFI on the very words of a DirtyBitmap (memory/dirty_bitmap.ts).
 *
 * The bitmap layout is DirtyBitmap's: bit i of the bitmap is bit i % 64 of
 * little-endian u64 word i / 64 (the same bytes as its Uint32Array words).
 * Each function is the C counterpart of one DirtyBitmap method:
 *
 *   bm_count    count()        population count
 *   bm_runs     forEachRun()   [first, count] pairs of set runs, into out[]
 *   bm_indexes  pageIndexes()  the set bit indexes, into out[]
 *
 * bm_runs and bm_indexes store at most `cap` entries (pairs for bm_runs) and
 * return how many there are in all.
 */
#include <stdint.h>

uint64_t bm_count(const uint64_t *w, uint64_t nwords)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < nwords; i++) n += (uint64_t)__builtin_popcountll(w[i]);
	return n;
}

uint64_t bm_runs(const uint64_t *w, uint64_t nwords, uint64_t pages, uint32_t *out, uint64_t cap)
{
	uint64_t n = 0;
	int64_t start = -1;
	for (uint64_t i = 0; i < nwords; i++) {
		uint64_t v = w[i];
		if (start < 0 ? v == 0 : v == ~0ull) continue;
		uint64_t base = i << 6;
		unsigned bit = 0;
		while (bit < 64) {
			if (start < 0) {
				uint64_t rest = v >> bit;
				if (rest == 0) break;
				bit += (unsigned)__builtin_ctzll(rest);
				start = (int64_t)(base + bit);
			} else {
				uint64_t rest = ~v >> bit;
				if (rest == 0) break;
				bit += (unsigned)__builtin_ctzll(rest);
				if (n < cap) {
					out[2 * n] = (uint32_t)start;
					out[2 * n + 1] = (uint32_t)(base + bit - (uint64_t)start);
				}
				n++;
				start = -1;
			}
		}
	}
	if (start >= 0) {
		if (n < cap) {
			out[2 * n] = (uint32_t)start;
			out[2 * n + 1] = (uint32_t)(pages - (uint64_t)start);
		}
		n++;
	}
	return n;
}

uint64_t bm_indexes(const uint64_t *w, uint64_t nwords, uint32_t *out, uint64_t cap)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < nwords; i++) {
		uint64_t v = w[i];
		while (v != 0) {
			if (n < cap) out[n] = (uint32_t)((i << 6) + (uint64_t)__builtin_ctzll(v));
			n++;
			v &= v - 1;
		}
	}
	return n;
}
