/* Unit tests of stats.c: SHOW STATS arithmetic and the error table. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#include "pgtide/stats.h"
#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SEC          1000000

/* Averages as PgBouncer computes them: rates per second, times per transaction or query. */
static void test_average(void)
{
	static const struct {
		const char *name;
		struct stats_counts delta;
		int64_t usec;
		struct stats_counts want;
	} rows[] = {
	        {"one minute",
	         {600, 1800, 60000, 120000, 3000000, 1800000, 60 * SEC},
	         60 * SEC,
	         {10, 30, 1000, 2000, 5000, 1000, SEC}},
	        {"rates round down", {5, 7, 1, 2, 10, 7, 3}, 2 * SEC, {2, 3, 0, 1, 2, 1, 1}},
	        {"no transactions: no time per transaction",
	         {0, 0, 50, 50, 9, 9, 0},
	         SEC,
	         {0, 0, 50, 50, 0, 0, 0}},
	        {"a period shorter than a second",
	         {1, 1, 10, 10, 100, 100, 100},
	         SEC / 2,
	         {2, 2, 20, 20, 100, 100, 200}},
	        {"huge counters do not overflow",
	         {UINT64_MAX / 2, UINT64_MAX / 2, UINT64_MAX, 0, 0, 0, 0},
	         3600 * (int64_t)SEC,
	         {UINT64_MAX / 2 / 3600, UINT64_MAX / 2 / 3600, UINT64_MAX / 3600, 0, 0, 0, 0}},
	        {"no period yet", {1, 1, 1, 1, 1, 1, 1}, 0, {0, 0, 0, 0, 0, 0, 0}},
	        {"negative period", {1, 1, 1, 1, 1, 1, 1}, -5, {0, 0, 0, 0, 0, 0, 0}},
	};
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct stats_counts avg;
		const struct stats_counts *w = &rows[i].want;
		stats_average(&avg, &rows[i].delta, rows[i].usec);
		CHECK(avg.xact_count == w->xact_count, "%s: xact_count %" PRIu64 ", want %" PRIu64,
		      rows[i].name, avg.xact_count, w->xact_count);
		CHECK(avg.query_count == w->query_count,
		      "%s: query_count %" PRIu64 ", want %" PRIu64, rows[i].name, avg.query_count,
		      w->query_count);
		CHECK(avg.bytes_received == w->bytes_received,
		      "%s: bytes_received %" PRIu64 ", want %" PRIu64, rows[i].name,
		      avg.bytes_received, w->bytes_received);
		CHECK(avg.bytes_sent == w->bytes_sent, "%s: bytes_sent %" PRIu64 ", want %" PRIu64,
		      rows[i].name, avg.bytes_sent, w->bytes_sent);
		CHECK(avg.xact_time == w->xact_time, "%s: xact_time %" PRIu64 ", want %" PRIu64,
		      rows[i].name, avg.xact_time, w->xact_time);
		CHECK(avg.query_time == w->query_time, "%s: query_time %" PRIu64 ", want %" PRIu64,
		      rows[i].name, avg.query_time, w->query_time);
		CHECK(avg.wait_time == w->wait_time, "%s: wait_time %" PRIu64 ", want %" PRIu64,
		      rows[i].name, avg.wait_time, w->wait_time);
	}
}

static void test_add_delta(void)
{
	struct stats_counts a = {1, 2, 3, 4, 5, 6, 7}, b = {10, 20, 30, 40, 50, 60, 70};
	struct stats_counts d;
	stats_counts_add(&a, &b);
	CHECK(a.xact_count == 11 && a.query_count == 22 && a.bytes_received == 33 &&
	              a.bytes_sent == 44 && a.xact_time == 55 && a.query_time == 66 &&
	              a.wait_time == 77,
	      "add sums every field");
	stats_counts_delta(&d, &a, &b);
	CHECK(d.xact_count == 1 && d.query_count == 2 && d.bytes_received == 3 &&
	              d.bytes_sent == 4 && d.xact_time == 5 && d.query_time == 6 &&
	              d.wait_time == 7,
	      "delta subtracts every field");
	stats_counts_delta(&d, &b, &a);
	CHECK(d.xact_count == 0 && d.query_count == 0 && d.bytes_received == 0 &&
	              d.bytes_sent == 0 && d.xact_time == 0 && d.query_time == 0 &&
	              d.wait_time == 0,
	      "a counter smaller than before gives 0, not a wrapped huge number");
}

static void test_error_rows(void)
{
	struct stats_errors t = {0};
	int a = stats_error_row(&t, "app", "alice");
	int b = stats_error_row(&t, "app", "bob");
	CHECK(a == 0 && b == 1, "rows in order of first use (%d, %d)", a, b);
	CHECK(stats_error_row(&t, "app", "alice") == a, "same pair, same row");
	CHECK(stats_error_row(&t, NULL, NULL) == 2, "NULL names are a row of their own");
	CHECK(stats_error_row(&t, "", "") == 2, "... the same as empty names");
	stats_count_error(&t, a, ERRMAP_POSTGRES);
	stats_count_error(&t, a, ERRMAP_POSTGRES);
	stats_count_error(&t, -1, ERRMAP_POSTGRES);
	stats_count_error(&t, 99, ERRMAP_POSTGRES);
	CHECK(t.v[a].counts[ERRMAP_POSTGRES] == 2, "counted twice, out-of-range rows ignored");
	/* Made-up names cannot grow the table without bound. */
	char db[32];
	int other = -1;
	for (int i = 0; i < STATS_MAX_ERROR_KEYS + 10; i++) {
		snprintf(db, sizeof(db), "db%d", i);
		int r = stats_error_row(&t, db, "u");
		CHECK(r >= 0, "row for %s", db);
		if (i >= STATS_MAX_ERROR_KEYS - 3) { /* 3 rows were made above */
			CHECK_STR(t.v[r].database, "(other)", "%s goes to (other)", db);
			if (other < 0)
				other = r;
			CHECK(r == other, "one (other) row");
		}
	}
	CHECK(t.n == STATS_MAX_ERROR_KEYS + 1, "table bounded at %d rows + (other): %zu",
	      STATS_MAX_ERROR_KEYS, t.n);
	stats_errors_free(&t);
	CHECK(t.n == 0 && t.v == NULL, "freed");
}

int main(void)
{
	test_average();
	test_add_delta();
	test_error_rows();
	UNIT_DONE();
}
