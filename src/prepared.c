/*
 * Named prepared statements: the registry, client namespaces, server caches, reply rings, the
 * copy of a batch kept for a replay, and finding DEALLOCATE in a simple Query.
 */
#include "pgtide/prepared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a over a few byte ranges. */
static uint32_t hash_bytes(uint32_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

#define HASH_SEED 2166136261u

/* Grows a bucket array of pointers to nodes whose chain link is at offset `next_off` and whose
 * hash is returned by hash_of. */
#define REHASH(tbl, type, hashexpr)                                                                \
	do {                                                                                       \
		uint32_t nb_ = (tbl)->n_buckets ? (tbl)->n_buckets * 2 : 16;                       \
		type **b_ = calloc(nb_, sizeof(*b_));                                              \
		if (!b_)                                                                           \
			break;                                                                     \
		for (uint32_t i_ = 0; i_ < (tbl)->n_buckets; i_++) {                               \
			type *e_ = (tbl)->buckets[i_];                                             \
			while (e_) {                                                               \
				type *nx_ = e_->next;                                              \
				uint32_t h_ = (hashexpr);                                          \
				e_->next = b_[h_ & (nb_ - 1)];                                     \
				b_[h_ & (nb_ - 1)] = e_;                                           \
				e_ = nx_;                                                          \
			}                                                                          \
		}                                                                                  \
		free((tbl)->buckets);                                                              \
		(tbl)->buckets = b_;                                                               \
		(tbl)->n_buckets = nb_;                                                            \
	} while (0)

/* ---- the registry ---- */

static uint32_t stmt_hash(const char *query, size_t query_len, const uint8_t *types,
                          uint16_t n_types)
{
	uint32_t h = hash_bytes(HASH_SEED, query, query_len);
	return hash_bytes(h ^ n_types, types, (size_t)n_types * 4);
}

struct prep_stmt *prep_intern(struct prep_registry *r, const char *query, size_t query_len,
                              const uint8_t *types, uint16_t n_types)
{
	uint32_t h = stmt_hash(query, query_len, types, n_types);
	if (r->n_buckets) {
		for (struct prep_stmt *s = r->buckets[h & (r->n_buckets - 1)]; s; s = s->next) {
			if (s->hash == h && s->query_len == query_len && s->n_types == n_types &&
			    memcmp(s->query, query, query_len) == 0 &&
			    (n_types == 0 || memcmp(s->types, types, (size_t)n_types * 4) == 0)) {
				s->refs++;
				return s;
			}
		}
	}
	if (r->n >= r->n_buckets)
		REHASH(r, struct prep_stmt, e_->hash);
	if (!r->n_buckets)
		return NULL;
	struct prep_stmt *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->query = malloc(query_len + 1);
	s->types = n_types ? malloc((size_t)n_types * 4) : NULL;
	if (!s->query || (n_types && !s->types)) {
		free(s->query);
		free(s->types);
		free(s);
		return NULL;
	}
	memcpy(s->query, query, query_len);
	s->query[query_len] = 0;
	s->query_len = query_len;
	if (n_types)
		memcpy(s->types, types, (size_t)n_types * 4);
	s->n_types = n_types;
	s->hash = h;
	s->id = ++r->next_id;
	s->refs = 1;
	snprintf(s->name, sizeof(s->name), "pgtide_%llu", (unsigned long long)s->id);
	uint32_t b = h & (r->n_buckets - 1);
	s->next = r->buckets[b];
	r->buckets[b] = s;
	r->n++;
	return s;
}

void prep_ref(struct prep_stmt *s)
{
	s->refs++;
}

void prep_unref(struct prep_registry *r, struct prep_stmt *s)
{
	if (!s || --s->refs > 0)
		return;
	struct prep_stmt **link = &r->buckets[s->hash & (r->n_buckets - 1)];
	while (*link && *link != s)
		link = &(*link)->next;
	if (*link)
		*link = s->next;
	r->n--;
	free(s->query);
	free(s->types);
	free(s);
}

void prep_registry_free(struct prep_registry *r)
{
	for (uint32_t i = 0; i < r->n_buckets; i++) {
		struct prep_stmt *s = r->buckets[i];
		while (s) {
			struct prep_stmt *n = s->next;
			free(s->query);
			free(s->types);
			free(s);
			s = n;
		}
	}
	free(r->buckets);
	memset(r, 0, sizeof(*r));
}

/* ---- a client's names ---- */

struct prep_name {
	struct prep_name *next;
	uint32_t hash;
	struct prep_stmt *stmt;
	char name[];
};

static uint32_t name_hash(const char *name)
{
	return hash_bytes(HASH_SEED, name, strlen(name));
}

struct prep_stmt *prep_names_get(const struct prep_names *ns, const char *name)
{
	if (!ns->n)
		return NULL;
	uint32_t h = name_hash(name);
	for (struct prep_name *e = ns->buckets[h & (ns->n_buckets - 1)]; e; e = e->next)
		if (e->hash == h && strcmp(e->name, name) == 0)
			return e->stmt;
	return NULL;
}

bool prep_names_add(struct prep_names *ns, const char *name, struct prep_stmt *s)
{
	if (ns->n >= ns->n_buckets)
		REHASH(ns, struct prep_name, e_->hash);
	if (!ns->n_buckets)
		return false;
	size_t len = strlen(name);
	struct prep_name *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return false;
	memcpy(e->name, name, len + 1);
	e->hash = name_hash(name);
	e->stmt = s;
	s->refs++;
	uint32_t b = e->hash & (ns->n_buckets - 1);
	e->next = ns->buckets[b];
	ns->buckets[b] = e;
	ns->n++;
	return true;
}

bool prep_names_del(struct prep_names *ns, struct prep_registry *r, const char *name)
{
	if (!ns->n)
		return false;
	uint32_t h = name_hash(name);
	struct prep_name **link = &ns->buckets[h & (ns->n_buckets - 1)];
	for (; *link; link = &(*link)->next) {
		struct prep_name *e = *link;
		if (e->hash == h && strcmp(e->name, name) == 0) {
			*link = e->next;
			prep_unref(r, e->stmt);
			free(e);
			ns->n--;
			return true;
		}
	}
	return false;
}

void prep_names_clear(struct prep_names *ns, struct prep_registry *r)
{
	for (uint32_t i = 0; i < ns->n_buckets; i++) {
		struct prep_name *e = ns->buckets[i];
		while (e) {
			struct prep_name *n = e->next;
			prep_unref(r, e->stmt);
			free(e);
			e = n;
		}
	}
	free(ns->buckets);
	memset(ns, 0, sizeof(*ns));
}

/* ---- a server's cache ---- */

struct prep_cache_ent {
	struct prep_cache_ent *next; /* hash chain */
	struct prep_cache_ent *newer, *older;
	struct prep_stmt *stmt;
	uint32_t gen; /* stmt->gen when the server was sent it; older: stale */
};

static uint32_t ptr_hash(const struct prep_stmt *s)
{
	return (uint32_t)(s->id * 2654435761u);
}

static struct prep_cache_ent **cache_find(struct prep_cache *c, const struct prep_stmt *s)
{
	struct prep_cache_ent **link = &c->buckets[ptr_hash(s) & (c->n_buckets - 1)];
	while (*link && (*link)->stmt != s)
		link = &(*link)->next;
	return link;
}

static void lru_unlink(struct prep_cache *c, struct prep_cache_ent *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->lru_head = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->lru_tail = e->newer;
	e->newer = e->older = NULL;
}

static void lru_push_head(struct prep_cache *c, struct prep_cache_ent *e)
{
	e->older = c->lru_head;
	e->newer = NULL;
	if (c->lru_head)
		c->lru_head->newer = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static struct prep_cache_ent *cache_get(struct prep_cache *c, const struct prep_stmt *s)
{
	return c->n ? *cache_find(c, s) : NULL;
}

enum prep_cache_hit prep_cache_lookup(struct prep_cache *c, const struct prep_stmt *s)
{
	struct prep_cache_ent *e = cache_get(c, s);
	if (!e)
		return PREP_MISS;
	if (c->lru_head != e) {
		lru_unlink(c, e);
		lru_push_head(c, e);
	}
	return e->gen == s->gen ? PREP_HIT : PREP_STALE;
}

/* Removes e from the table and the LRU list; returns its statement (reference kept). */
static struct prep_stmt *cache_remove(struct prep_cache *c, struct prep_cache_ent *e)
{
	struct prep_cache_ent **link = cache_find(c, e->stmt);
	*link = e->next;
	lru_unlink(c, e);
	struct prep_stmt *s = e->stmt;
	free(e);
	c->n--;
	return s;
}

bool prep_cache_add(struct prep_cache *c, struct prep_stmt *s)
{
	if (c->n >= c->n_buckets)
		REHASH(c, struct prep_cache_ent, ptr_hash(e_->stmt));
	struct prep_cache_ent *e = c->n_buckets ? calloc(1, sizeof(*e)) : NULL;
	if (!e)
		return false;
	e->stmt = s;
	e->gen = s->gen;
	s->refs++;
	uint32_t b = ptr_hash(s) & (c->n_buckets - 1);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	lru_push_head(c, e);
	c->n++;
	return true;
}

struct prep_stmt *prep_cache_evict(struct prep_cache *c, uint32_t max, const struct prep_stmt *keep)
{
	if (!max || c->n <= max)
		return NULL;
	struct prep_cache_ent *e = c->lru_tail;
	if (e && e->stmt == keep)
		e = e->newer;
	return e ? cache_remove(c, e) : NULL;
}

void prep_cache_refresh(struct prep_cache *c, const struct prep_stmt *s)
{
	struct prep_cache_ent *e = cache_get(c, s);
	if (e)
		e->gen = s->gen;
}

bool prep_cache_mark_stale(struct prep_cache *c, struct prep_stmt *s)
{
	struct prep_cache_ent *e = cache_get(c, s);
	if (!e) {
		if (!prep_cache_add(c, s))
			return false;
		e = c->lru_head;
		/* Not just used: first out if the cache is over its bound. */
		if (c->lru_tail != e) {
			lru_unlink(c, e);
			e->newer = c->lru_tail;
			c->lru_tail->older = e;
			c->lru_tail = e;
		}
	}
	e->gen = s->gen - 1;
	return true;
}

void prep_stmt_changed(struct prep_cache *c, struct prep_stmt *s)
{
	struct prep_cache_ent *e = cache_get(c, s);
	/* A copy already stale was re-prepared elsewhere since: the others are current. */
	if (!e || e->gen == s->gen)
		s->gen++;
	if (e)
		e->gen = s->gen - 1;
}

void prep_cache_del(struct prep_cache *c, struct prep_registry *r, const struct prep_stmt *s)
{
	if (!c->n)
		return;
	struct prep_cache_ent *e = *cache_find(c, s);
	if (e)
		prep_unref(r, cache_remove(c, e));
}

void prep_cache_undo(struct prep_cache *c, struct prep_registry *r, const struct prep_stmt *s)
{
	struct prep_cache_ent *e = cache_get(c, s);
	if (e && e->gen == s->gen)
		prep_unref(r, cache_remove(c, e));
}

void prep_cache_clear(struct prep_cache *c, struct prep_registry *r)
{
	while (c->lru_head)
		prep_unref(r, cache_remove(c, c->lru_head));
	free(c->buckets);
	memset(c, 0, sizeof(*c));
}

/* ---- reply rings ---- */

bool prep_ring_push(struct prep_ring *q, uint8_t kind, struct prep_stmt *stmt, char *name)
{
	if (q->len == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 16;
		struct prep_expect_ent *v = malloc(cap * sizeof(*v));
		if (!v)
			return false;
		for (uint32_t i = 0; i < q->len; i++)
			v[i] = q->v[(q->head + i) & (q->cap - 1)];
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	struct prep_expect_ent *e = &q->v[(q->head + q->len) & (q->cap - 1)];
	e->kind = kind;
	e->count = 0;
	e->stmt = stmt;
	e->name = name;
	q->len++;
	q->plain_cap = q->plain_off ? 0 : q->cap;
	return true;
}

void prep_ring_pop(struct prep_ring *q)
{
	if (!q->len)
		return;
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
}

void prep_ring_clear(struct prep_ring *q, struct prep_registry *r)
{
	while (q->len) {
		struct prep_expect_ent *e = prep_ring_head(q);
		prep_unref(r, e->stmt);
		free(e->name);
		prep_ring_pop(q);
	}
}

void prep_ring_free(struct prep_ring *q, struct prep_registry *r)
{
	prep_ring_clear(q, r);
	free(q->v);
	memset(q, 0, sizeof(*q));
}

/* ---- the copy of a batch, for a replay ---- */

bool prep_replay_start(struct prep_replay *r, struct prep_stmt *s, const uint8_t *msg, uint32_t len)
{
	r->copy.len = 0;
	r->copy.oom = false;
	r->synced = r->flushed = false;
	if (!prep_replay_append(r, msg, len))
		return false;
	prep_ref(s);
	r->stmt = s;
	return true;
}

bool prep_replay_append_slow(struct prep_replay *r, const uint8_t *msg, uint32_t len)
{
	if (len < PROTO_HEADER_LEN || len > PREP_REPLAY_MAX - r->copy.len)
		return false;
	pbuf_put(&r->copy, msg, len);
	return !r->copy.oom;
}

bool prep_replay_next(const struct pbuf *copy, size_t *off, const uint8_t **msg, uint32_t *len)
{
	if (copy->len - *off < PROTO_HEADER_LEN)
		return false;
	const uint8_t *m = copy->data + *off;
	uint32_t n = 1 + ((uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 | m[4]);
	if (n < PROTO_HEADER_LEN || n > copy->len - *off)
		return false;
	*msg = m;
	*len = n;
	*off += n;
	return true;
}

/* Keeps a buffer this small for the next batch; frees a larger one. */
#define REPLAY_KEEP 4096u

void prep_replay_reset(struct prep_replay *r, struct prep_registry *reg)
{
	r->state = PREP_REPLAY_OFF;
	r->synced = r->flushed = false;
	prep_unref(reg, r->stmt);
	r->stmt = NULL;
	if (r->copy.cap > REPLAY_KEEP || r->copy.oom)
		pbuf_free(&r->copy);
	else
		r->copy.len = 0;
	if (r->held.data)
		pbuf_free(&r->held);
	if (r->error.data)
		pbuf_free(&r->error);
}

void prep_replay_free(struct prep_replay *r, struct prep_registry *reg)
{
	prep_replay_reset(r, reg);
	pbuf_free(&r->copy);
}

bool prep_is_cached_plan_error(const uint8_t *body, size_t len)
{
	const char *p = (const char *)body, *end = p + len;
	bool state = false, said = false;
	while (p < end && *p) {
		char field = *p++;
		const char *nul = memchr(p, 0, (size_t)(end - p));
		if (!nul)
			return false;
		if (field == 'C')
			state = strcmp(p, "0A000") == 0;
		else if (field == 'R' && strcmp(p, "RevalidateCachedQuery") == 0)
			said = true;
		else if (field == 'M' && strcmp(p, "cached plan must not change result type") == 0)
			said = true;
		p = nul + 1;
	}
	return state && said;
}

/* ---- DEALLOCATE in a simple Query ---- */

/* Horspool's skip for "deallocate" by the (case-folded) last byte of a window: how far the
 * window can move before that byte could line up with the same letter in the word. */
static size_t dealloc_skip(unsigned char c)
{
	switch (c) {
	case 'd':
		return 9;
	case 'e':
		return 8;
	case 'l':
		return 5;
	case 'o':
		return 4;
	case 'c':
		return 3;
	case 'a':
		return 2;
	case 't':
		return 1;
	default:
		return 10;
	}
}

bool prep_mentions_deallocate(const char *sql, size_t len)
{
	static const char word[] = "deallocate";
	const size_t n = sizeof(word) - 1;
	/* | 0x20 folds ASCII letters to lower case and maps no other byte onto a letter. */
	for (size_t i = 0; i + n <= len;) {
		unsigned char last = (unsigned char)(sql[i + n - 1] | 0x20);
		if (last == 'e') {
			size_t k = 0;
			while (k < n - 1 && (sql[i + k] | 0x20) == word[k])
				k++;
			if (k == n - 1)
				return true;
		}
		i += dealloc_skip(last);
	}
	return false;
}

struct find_state {
	const char *sql;
	size_t before;
	prep_dealloc_fn fn;
	void *arg;
};

static bool find_one(void *arg, const char *stmt, size_t len)
{
	struct find_state *f = arg;
	const char *p = stmt, *end = stmt + len;
	size_t index = f->before++;
	if (!sqlscan_word(&p, end, "deallocate"))
		return true;
	const char *at = sqlscan_skip_space(p, end);
	struct prep_dealloc d = {.before = index};
	if (sqlscan_word(&p, end, "prepare")) {
		if (sqlscan_word(&p, end, "all"))
			return false;
		const char *q = p;
		if (sqlscan_ident(&q, end, d.name)) {
			at = sqlscan_skip_space(p, end);
			p = q;
		} else {
			/* DEALLOCATE prepare: PREPARE is the name (an unreserved keyword) */
			p = at + 7;
			memcpy(d.name, "prepare", 8);
		}
	} else if (sqlscan_word(&p, end, "all")) {
		return false;
	} else if (!sqlscan_ident(&p, end, d.name)) {
		return true;
	}
	if (sqlscan_skip_space(p, end) != end)
		return true; /* not this grammar: the server reports the syntax error */
	d.name_off = (size_t)(at - f->sql);
	d.name_len = (size_t)(p - at);
	return f->fn(f->arg, &d);
}

void prep_find_deallocates(const char *sql, size_t len, prep_dealloc_fn fn, void *arg)
{
	struct find_state f = {.sql = sql, .fn = fn, .arg = arg};
	sqlscan_split(sql, len, find_one, &f);
}
