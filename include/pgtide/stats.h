/*
 * Counters that outlive connections: traffic per pool (transactions, queries, bytes, time) with
 * the arithmetic of SHOW STATS averages, and errors per (database, user, MappedError kind). The
 * admin console and the metrics endpoint read them. No I/O.
 */
#ifndef PGTIDE_STATS_H
#define PGTIDE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "pgtide/errmap.h"

/*
 * PgBouncer's per-pool statistics (SHOW STATS), since start. What is counted where:
 * - a query is one request that ends with ReadyForQuery (a simple Query, an extended-protocol
 *   batch up to its Sync, a FunctionCall), counted when its ReadyForQuery reaches the client;
 * - a transaction ends at each of those ReadyForQuery messages that says idle ('I'): an
 *   explicit block (BEGIN ... COMMIT over several queries) or the implicit transaction of one
 *   query;
 * - query_time runs from when a request starts on the server (sent, or the previous pipelined
 *   one finished) to its ReadyForQuery; xact_time from the start of the transaction's first
 *   query to the ReadyForQuery 'I' that ends it (idle in transaction included);
 * - wait_time is the time a client spent queued for a server, added when it gets one;
 * - bytes are what the client's socket carried after its login completed (after the
 *   ReadyForQuery of the login), every message included: pgtide's own as well as PostgreSQL's.
 */
struct stats_counts {
	uint64_t xact_count;
	uint64_t query_count;
	uint64_t bytes_received; /* from clients */
	uint64_t bytes_sent;     /* to clients */
	uint64_t xact_time;      /* microseconds */
	uint64_t query_time;     /* microseconds */
	uint64_t wait_time;      /* microseconds */
};

/* to += x, field by field. */
void stats_counts_add(struct stats_counts *to, const struct stats_counts *x);

/* out = now - then, field by field (counters only grow: a field smaller in now gives 0). */
void stats_counts_delta(struct stats_counts *out, const struct stats_counts *now,
                        const struct stats_counts *then);

/*
 * SHOW STATS_AVERAGES from what one period of `usec` microseconds added (delta), as PgBouncer
 * computes them: xact_count, query_count, bytes and wait_time per second; xact_time and
 * query_time per transaction and per query (microseconds). All zero when usec <= 0.
 */
void stats_average(struct stats_counts *avg, const struct stats_counts *delta, int64_t usec);

/* Distinct (database, user) pairs kept; later ones are counted under "(other)". */
#define STATS_MAX_ERROR_KEYS 1000

/* Error counts of one (database, user) pair. */
struct stats_error_row {
	char *database;
	char *user;
	uint64_t counts[ERRMAP_N_KINDS];
};

struct stats_errors {
	struct stats_error_row *v;
	size_t n, cap;
};

/*
 * The row for (database, user), created on first use (NULL names count as ""). Returns its
 * index, which stays valid for the life of the table (clients cache it), or -1 on OOM.
 */
int stats_error_row(struct stats_errors *t, const char *database, const char *user);

/* Counts one error of kind k in row (from stats_error_row; -1 is ignored). */
void stats_count_error(struct stats_errors *t, int row, enum errmap_kind k);

void stats_errors_free(struct stats_errors *t);

#endif
