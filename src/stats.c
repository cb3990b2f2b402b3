/* Counters that outlive connections (see stats.h). */
#include <stdlib.h>
#include <string.h>

#include "pgtide/stats.h"

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
