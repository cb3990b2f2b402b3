/* Session parameters: tables, and the SQL that syncs a server's parameters to a client's. */
#include "pgtide/params.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* PostgreSQL 15's GUC_REPORT parameters. */
static const char *const reported[] = {
        "application_name",
        "client_encoding",
        "DateStyle",
        "default_transaction_read_only",
        "in_hot_standby",
        "integer_datetimes",
        "IntervalStyle",
        "is_superuser",
        "server_encoding",
        "server_version",
        "session_authorization",
        "standard_conforming_strings",
        "TimeZone",
};

static const char *const server_facts[] = {
        "in_hot_standby",  "integer_datetimes", "is_superuser",
        "server_encoding", "server_version",    "session_authorization",
};

static bool in_list(const char *const *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(list[i], name) == 0)
			return true;
	return false;
}

const char *const *params_reported_names(size_t *n)
{
	*n = sizeof(reported) / sizeof(reported[0]);
	return reported;
}

bool params_is_reported(const char *name)
{
	return in_list(reported, sizeof(reported) / sizeof(reported[0]), name);
}

bool params_is_server_fact(const char *name)
{
	return in_list(server_facts, sizeof(server_facts) / sizeof(server_facts[0]), name);
}

struct param *params_find(const struct params *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcasecmp(p->v[i].name, name) == 0)
			return &p->v[i];
	return NULL;
}

const char *params_get(const struct params *p, const char *name)
{
	struct param *x = params_find(p, name);
	return x ? x->value : NULL;
}

bool params_set(struct params *p, const char *name, const char *value)
{
	struct param *x = params_find(p, name);
	if (x) {
		if (strcmp(x->value, value) == 0)
			return true;
		char *v = strdup(value);
		if (!v)
			return false;
		free(x->value);
		x->value = v;
		return true;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct param *nv = realloc(p->v, cap * sizeof(*nv));
		if (!nv)
			return false;
		p->v = nv;
		p->cap = cap;
	}
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return false;
	}
	p->v[p->n++] = (struct param){.name = n, .value = v, .set_by_us = false};
	return true;
}

void params_remove(struct params *p, const char *name)
{
	struct param *x = params_find(p, name);
	if (!x)
		return;
	free(x->name);
	free(x->value);
	size_t i = (size_t)(x - p->v);
	memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(*x));
	p->n--;
}

bool params_copy(struct params *dst, const struct params *src)
{
	for (size_t i = 0; i < src->n; i++)
		if (!params_set(dst, src->v[i].name, src->v[i].value))
			return false;
	return true;
}

void params_free(struct params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].name);
		free(p->v[i].value);
	}
	free(p->v);
	memset(p, 0, sizeof(*p));
}

/* FNV-1a, then a final mix so that summing per-pair hashes stays well distributed. */
static uint64_t pair_hash(const char *name, const char *value)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
		unsigned char l = (*c >= 'A' && *c <= 'Z') ? (unsigned char)(*c + 32) : *c;
		h = (h ^ l) * 0x100000001b3ull;
	}
	h = (h ^ 0xff) * 0x100000001b3ull; /* separator that no name byte can be */
	for (const unsigned char *c = (const unsigned char *)value; *c; c++)
		h = (h ^ *c) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

uint64_t params_signature(const struct params *p)
{
	uint64_t sig = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < p->n; i++)
		sig += pair_hash(p->v[i].name, p->v[i].value);
	return sig ? sig : 1;
}

void params_quote_name(struct pbuf *b, const char *name)
{
	pbuf_put_u8(b, '"');
	for (const char *s = name; *s; s++) {
		if (*s == '.') {
			pbuf_put(b, "\".\"", 3);
			continue;
		}
		if (*s == '"')
			pbuf_put_u8(b, '"');
		pbuf_put_u8(b, (uint8_t)*s);
	}
	pbuf_put_u8(b, '"');
}

void params_quote_value(struct pbuf *b, const char *value)
{
	pbuf_put(b, "E'", 2);
	for (const char *s = value; *s; s++) {
		if (*s == '\'' || *s == '\\')
			pbuf_put_u8(b, (uint8_t)*s);
		pbuf_put_u8(b, (uint8_t)*s);
	}
	pbuf_put_u8(b, '\'');
}

/* pbuf_put that does nothing without a buffer (params_sync_sql counting only). */
static void put(struct pbuf *b, const char *s, size_t n)
{
	if (b)
		pbuf_put(b, s, n);
}

size_t params_sync_sql(const struct params *client, const struct params *server, struct pbuf *sql)
{
	/*
	 * set_config() takes the value text exactly as a startup packet does: "SET search_path TO
	 * 'a,b'" would make one schema named "a,b", set_config('search_path', 'a,b') two schemas.
	 */
	size_t n = 0;
	for (size_t i = 0; i < client->n; i++) {
		const struct param *c = &client->v[i];
		if (params_is_server_fact(c->name))
			continue;
		const char *sv = params_get(server, c->name);
		if (sv && strcmp(sv, c->value) == 0)
			continue;
		put(sql, n == 0 ? "SELECT " : ", ", n == 0 ? 7 : 2);
		put(sql, "pg_catalog.set_config(", 22);
		if (sql) {
			params_quote_value(sql, c->name);
			pbuf_put(sql, ", ", 2);
			params_quote_value(sql, c->value);
		}
		put(sql, ", false)", 8);
		n++;
	}
	if (n > 0)
		put(sql, ";", 1);
	for (size_t i = 0; i < server->n; i++) {
		const struct param *s = &server->v[i];
		if (!s->set_by_us || params_find(client, s->name))
			continue;
		put(sql, "RESET ", 6);
		if (sql)
			params_quote_name(sql, s->name);
		put(sql, ";", 1);
		n++;
	}
	return n;
}

size_t params_sync_count(const struct params *client, const struct params *server)
{
	return params_sync_sql(client, server, NULL);
}

void params_sync_done(const struct params *client, struct params *server)
{
	for (size_t i = 0; i < server->n;) {
		struct param *s = &server->v[i];
		if (s->set_by_us && !params_find(client, s->name)) {
			params_remove(server, s->name);
			continue;
		}
		i++;
	}
	for (size_t i = 0; i < client->n; i++) {
		const struct param *c = &client->v[i];
		if (params_is_reported(c->name))
			continue; /* the server's ParameterStatus reply is the truth for these */
		if (params_set(server, c->name, c->value)) {
			struct param *s = params_find(server, c->name);
			if (s)
				s->set_by_us = true;
		}
	}
}

/* ---- shared sets ---- */

bool params_equal(const struct params *a, const struct params *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const char *v = params_get(b, a->v[i].name);
		if (!v || strcmp(v, a->v[i].value) != 0)
			return false;
	}
	return true;
}

static bool pset_grow(struct pset_table *t)
{
	size_t nb = t->n_buckets ? t->n_buckets * 2 : 64;
	struct pset **b = calloc(nb, sizeof(*b));
	if (!b)
		return false;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct pset *s = t->buckets[i];
		while (s) {
			struct pset *next = s->next;
			size_t k = (size_t)s->sig & (nb - 1);
			s->next = b[k];
			b[k] = s;
			s = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = nb;
	return true;
}

struct pset *pset_intern(struct pset_table *t, struct params *p)
{
	if ((t->n_buckets == 0 || t->n >= t->n_buckets) && !pset_grow(t) && t->n_buckets == 0) {
		params_free(p);
		return NULL;
	}
	uint64_t sig = params_signature(p);
	size_t k = (size_t)sig & (t->n_buckets - 1);
	for (struct pset *s = t->buckets[k]; s; s = s->next) {
		if (s->sig == sig && params_equal(&s->p, p)) {
			s->refs++;
			params_free(p);
			return s;
		}
	}
	struct pset *s = calloc(1, sizeof(*s));
	if (!s) {
		params_free(p);
		return NULL;
	}
	s->refs = 1;
	s->sig = sig;
	s->p = *p;
	memset(p, 0, sizeof(*p));
	s->next = t->buckets[k];
	t->buckets[k] = s;
	t->n++;
	return s;
}

const struct pbuf *pset_status_messages(struct pset *s)
{
	if (s->status.len == 0 && !s->status.oom) {
		for (size_t i = 0; i < s->p.n; i++)
			if (params_is_reported(s->p.v[i].name))
				proto_build_parameter_status(&s->status, s->p.v[i].name,
				                             s->p.v[i].value);
	}
	return &s->status;
}

void pset_release(struct pset_table *t, struct pset *s)
{
	if (!s || --s->refs > 0)
		return;
	struct pset **pp = &t->buckets[(size_t)s->sig & (t->n_buckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	t->n--;
	params_free(&s->p);
	pbuf_free(&s->status);
	free(s);
}

struct pset *pset_with(struct pset_table *t, struct pset *s, const char *name, const char *value)
{
	const char *cur = params_get(&s->p, name);
	if (cur && strcmp(cur, value) == 0)
		return s;
	struct params p = {0};
	if (!params_copy(&p, &s->p) || !params_set(&p, name, value)) {
		params_free(&p);
		return s;
	}
	struct pset *n = pset_intern(t, &p);
	if (!n)
		return s;
	pset_release(t, s);
	return n;
}

struct pset *pset_without(struct pset_table *t, struct pset *s, const char *name)
{
	if (!params_find(&s->p, name))
		return s;
	struct params p = {0};
	if (!params_copy(&p, &s->p)) {
		params_free(&p);
		return s;
	}
	params_remove(&p, name);
	struct pset *n = pset_intern(t, &p);
	if (!n)
		return s;
	pset_release(t, s);
	return n;
}

void pset_table_free(struct pset_table *t)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct pset *s = t->buckets[i];
		while (s) {
			struct pset *next = s->next;
			params_free(&s->p);
			pbuf_free(&s->status);
			free(s);
			s = next;
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}
