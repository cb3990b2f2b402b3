/* Client connections counted per database and per user name (see climit.h). */
#include "pgtide/climit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Buckets of a table's first allocation. */
#define CLIMIT_MIN_BUCKETS 16u

/* FNV-1a: names are short, and a chain is compared in full anyway. */
static uint32_t climit_hash(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static struct climit_count *climit_find(const struct climit_table *t, const char *name, uint32_t h)
{
	if (t->n_buckets == 0)
		return NULL;
	for (struct climit_count *e = t->buckets[h & (t->n_buckets - 1)]; e; e = e->next)
		if (e->hash == h && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

int climit_current(const struct climit_table *t, const char *name)
{
	const struct climit_count *e = climit_find(t, name, climit_hash(name));
	return e ? e->n : 0;
}

/* Doubles the buckets (or makes the first ones). False on OOM, the table unchanged. */
static bool climit_grow(struct climit_table *t)
{
	size_t n = t->n_buckets ? t->n_buckets * 2 : CLIMIT_MIN_BUCKETS;
	struct climit_count **b = calloc(n, sizeof(*b));
	if (!b)
		return false;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct climit_count *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			struct climit_count **head = &b[e->hash & (n - 1)];
			e->next = *head;
			*head = e;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
	return true;
}

/* The entry for name, made with n = 0 if there is none. NULL on OOM. */
static struct climit_count *climit_get(struct climit_table *t, const char *name)
{
	uint32_t h = climit_hash(name);
	struct climit_count *e = climit_find(t, name, h);
	if (e)
		return e;
	if (t->n_names >= t->n_buckets && !climit_grow(t) && t->n_buckets == 0)
		return NULL; /* a failed grow with buckets only makes chains longer */
	size_t len = strlen(name);
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->hash = h;
	e->n = 0;
	memcpy(e->name, name, len + 1);
	struct climit_count **head = &t->buckets[h & (t->n_buckets - 1)];
	e->next = *head;
	*head = e;
	t->n_names++;
	return e;
}

/* Frees e if nobody is counted under it any more. */
static void climit_drop_if_empty(struct climit_table *t, struct climit_count *e)
{
	if (e->n > 0)
		return;
	struct climit_count **link = &t->buckets[e->hash & (t->n_buckets - 1)];
	while (*link && *link != e)
		link = &(*link)->next;
	if (*link) {
		*link = e->next;
		t->n_names--;
	}
	free(e);
}

enum climit_result climit_admit(struct climit_table *dbs, struct climit_table *users,
                                const char *db, int db_limit, const char *user, int user_limit,
                                struct climit_count **db_count, struct climit_count **user_count)
{
	*db_count = *user_count = NULL;
	struct climit_count *d = climit_get(dbs, db);
	if (!d)
		return CLIMIT_OOM;
	if (db_limit > 0 && d->n >= db_limit) {
		climit_drop_if_empty(dbs, d);
		return CLIMIT_DB_FULL;
	}
	struct climit_count *u = climit_get(users, user);
	if (!u) {
		climit_drop_if_empty(dbs, d);
		return CLIMIT_OOM;
	}
	if (user_limit > 0 && u->n >= user_limit) {
		climit_drop_if_empty(dbs, d);
		climit_drop_if_empty(users, u);
		return CLIMIT_USER_FULL;
	}
	d->n++;
	u->n++;
	*db_count = d;
	*user_count = u;
	return CLIMIT_OK;
}

void climit_release(struct climit_table *t, struct climit_count *e)
{
	if (!e)
		return;
	e->n--;
	climit_drop_if_empty(t, e);
}

void climit_table_free(struct climit_table *t)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct climit_count *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}
