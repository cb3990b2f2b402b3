/* Counters that outlive connections (see stats.h). */
#include <stdlib.h>
#include <string.h>

#include "pgtide/stats.h"

/* ---- traffic ---- */

void stats_counts_add(struct stats_counts *to, const struct stats_counts *x)
{
	to->xact_count += x->xact_count;
	to->query_count += x->query_count;
	to->bytes_received += x->bytes_received;
	to->bytes_sent += x->bytes_sent;
	to->xact_time += x->xact_time;
	to->query_time += x->query_time;
	to->wait_time += x->wait_time;
}

static uint64_t grown(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

void stats_counts_delta(struct stats_counts *out, const struct stats_counts *now,
                        const struct stats_counts *then)
{
	out->xact_count = grown(now->xact_count, then->xact_count);
	out->query_count = grown(now->query_count, then->query_count);
	out->bytes_received = grown(now->bytes_received, then->bytes_received);
	out->bytes_sent = grown(now->bytes_sent, then->bytes_sent);
	out->xact_time = grown(now->xact_time, then->xact_time);
	out->query_time = grown(now->query_time, then->query_time);
	out->wait_time = grown(now->wait_time, then->wait_time);
}

/* n per second over usec microseconds (usec > 0), in 128 bits so no n overflows. */
static uint64_t per_second(uint64_t n, uint64_t usec)
{
	return (uint64_t)((unsigned __int128)n * 1000000u / usec);
}

void stats_average(struct stats_counts *avg, const struct stats_counts *delta, int64_t usec)
{
	memset(avg, 0, sizeof(*avg));
	if (usec <= 0)
		return;
	uint64_t u = (uint64_t)usec;
	avg->xact_count = per_second(delta->xact_count, u);
	avg->query_count = per_second(delta->query_count, u);
	avg->bytes_received = per_second(delta->bytes_received, u);
	avg->bytes_sent = per_second(delta->bytes_sent, u);
	avg->wait_time = per_second(delta->wait_time, u);
	if (delta->xact_count)
		avg->xact_time = delta->xact_time / delta->xact_count;
	if (delta->query_count)
		avg->query_time = delta->query_time / delta->query_count;
}

/* ---- errors ---- */

static int add_row(struct stats_errors *t, const char *database, const char *user)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct stats_error_row *v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -1;
		t->v = v;
		t->cap = cap;
	}
	struct stats_error_row *r = &t->v[t->n];
	memset(r, 0, sizeof(*r));
	r->database = strdup(database);
	r->user = strdup(user);
	if (!r->database || !r->user) {
		free(r->database);
		free(r->user);
		return -1;
	}
	return (int)t->n++;
}

int stats_error_row(struct stats_errors *t, const char *database, const char *user)
{
	if (!database)
		database = "";
	if (!user)
		user = "";
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].database, database) == 0 && strcmp(t->v[i].user, user) == 0)
			return (int)i;
	/* Names come from clients: bound the table so that made-up names cannot grow it. */
	if (t->n >= STATS_MAX_ERROR_KEYS) {
		for (size_t i = 0; i < t->n; i++)
			if (strcmp(t->v[i].database, "(other)") == 0 &&
			    strcmp(t->v[i].user, "(other)") == 0)
				return (int)i;
		return add_row(t, "(other)", "(other)");
	}
	return add_row(t, database, user);
}

void stats_count_error(struct stats_errors *t, int row, enum errmap_kind k)
{
	if (row < 0 || (size_t)row >= t->n || k < 0 || k >= ERRMAP_N_KINDS)
		return;
	t->v[row].counts[k]++;
}

void stats_errors_free(struct stats_errors *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].database);
		free(t->v[i].user);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}
