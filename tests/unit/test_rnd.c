/* Unit tests of rnd.c: every byte handed out once, across refills and after rnd_forget. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgtide/rnd.h"
#include "unit.h"

static int cmp16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* 1,000 draws of 16 bytes (about 31 refills of the batch): no two alike, none all zero. */
static void test_draws_are_distinct(void)
{
	enum { N = 1000 };
	static uint8_t v[N][16];
	static const uint8_t zero[16];
	for (int i = 0; i < N; i++) {
		if (i == N / 2)
			rnd_forget();
		CHECK(rnd_bytes(v[i], 16), "draw %d", i);
		CHECK(memcmp(v[i], zero, 16) != 0, "draw %d is all zero", i);
	}
	qsort(v, N, 16, cmp16);
	int same = 0;
	for (int i = 1; i < N; i++)
		same += memcmp(v[i - 1], v[i], 16) == 0;
	CHECK(same == 0, "%d draws repeat another", same);
}

/* Odd sizes that straddle a refill, and a request too large for the batch. */
static void test_sizes(void)
{
	uint8_t a[7], b[7], big[4096];
	int bits = 0;
	for (int i = 0; i < 200; i++) {
		CHECK(rnd_bytes(a, sizeof(a)) && rnd_bytes(b, sizeof(b)), "draw %d", i);
		CHECK(memcmp(a, b, sizeof(a)) != 0, "two 7-byte draws alike at %d", i);
	}
	memset(big, 0, sizeof(big));
	CHECK(rnd_bytes(big, sizeof(big)), "a large draw");
	for (size_t i = 0; i < sizeof(big); i++)
		bits += __builtin_popcount(big[i]);
	/* 32,768 fair bits: the count is within 16,384 +- 600 (over 6 standard deviations). */
	CHECK(bits > 16384 - 600 && bits < 16384 + 600, "%d of 32768 bits set", bits);
	CHECK(rnd_bytes(a, 0), "an empty draw");
}

int main(void)
{
	test_draws_are_distinct();
	test_sizes();
	UNIT_DONE();
}
