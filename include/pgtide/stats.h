/*
 * Counters that outlive connections: errors per (database, user, MappedError kind). The admin
 * console and the metrics endpoint read them. No I/O.
 */
#ifndef PGTIDE_STATS_H
#define PGTIDE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "pgtide/errmap.h"

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
