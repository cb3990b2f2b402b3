/*
 * Named prepared statements under transaction pooling. A client's statement names live in the
 * client's own namespace (struct prep_names); the text they stand for is interned once per
 * pgtide (struct prep_stmt, server-side name "pgtide_<id>"), so clients with the same SQL share
 * one server statement; each server connection remembers which it has (struct prep_cache,
 * bounded by max_prepared_statements, least recently used first out); and each server keeps
 * the order of what its client sent (struct prep_ring), so that replies to messages pgtide
 * injected (a Parse before a Bind, a Close to evict) are hidden and replies to messages it
 * answered itself (a Parse of a statement the server already has, a Close) are produced in
 * the right place. Pure.
 */
#ifndef PGTIDE_PREPARED_H
#define PGTIDE_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A statement text (with its parameter type OIDs) known to pgtide. */
struct prep_stmt {
	struct prep_stmt *next; /* hash chain in the registry */
	uint64_t id;
	uint32_t hash;
	uint32_t refs;    /* client names + server caches + ring entries that point here */
	char *query;      /* NUL-terminated */
	size_t query_len; /* without the NUL */
	uint8_t *types;   /* n_types big-endian OIDs, as in the Parse message */
	uint16_t n_types;
	uint8_t pin_probe; /* 0 not yet known, 1 no, 2 yes: running it asks for the probe (pin.h) */
	char name[32];     /* "pgtide_<id>": its name on every server */
};

/* Every interned statement (one per context). */
struct prep_registry {
	struct prep_stmt **buckets;
	uint32_t n_buckets, n;
	uint64_t next_id;
};

/* Interns (query, types); returns it with one more reference, or NULL on OOM. */
struct prep_stmt *prep_intern(struct prep_registry *r, const char *query, size_t query_len,
                              const uint8_t *types, uint16_t n_types);
void prep_ref(struct prep_stmt *s);
/* Drops a reference; frees the statement with the last one. */
void prep_unref(struct prep_registry *r, struct prep_stmt *s);
void prep_registry_free(struct prep_registry *r);

/* A client's namespace: its statement names and what they stand for. */
struct prep_name;
struct prep_names {
	struct prep_name **buckets;
	uint32_t n_buckets, n;
};

struct prep_stmt *prep_names_get(const struct prep_names *ns, const char *name);
/* Adds name -> s (taking a reference); false on OOM. The name must not exist yet. */
bool prep_names_add(struct prep_names *ns, const char *name, struct prep_stmt *s);
/* Removes name (dropping its reference); false if it did not exist. */
bool prep_names_del(struct prep_names *ns, struct prep_registry *r, const char *name);
void prep_names_clear(struct prep_names *ns, struct prep_registry *r);

/* What one server connection has prepared, least recently used first out. */
struct prep_cache_ent;
struct prep_cache {
	struct prep_cache_ent **buckets;
	uint32_t n_buckets, n;
	struct prep_cache_ent *lru_head, *lru_tail; /* head = most recently used */
};

/* True if the server has s; marks it used. */
bool prep_cache_has(struct prep_cache *c, const struct prep_stmt *s);
/*
 * Records that the server has (or is being sent) s, taking a reference. If that makes more than
 * max entries, the least recently used other entry is removed and returned (with its
 * reference, for the caller to Close on the server and unref); otherwise NULL. max 0 = no bound.
 */
struct prep_stmt *prep_cache_add(struct prep_cache *c, struct prep_stmt *s, uint32_t max,
                                 bool *oom);
/* Forgets s (its Parse failed, or it was closed). */
void prep_cache_del(struct prep_cache *c, struct prep_registry *r, const struct prep_stmt *s);
void prep_cache_clear(struct prep_cache *c, struct prep_registry *r);

/* What the server will answer, message by message, for what was sent to it. */
enum prep_expect {
	PX_PARSE = 0,  /* the client's Parse: ParseComplete '1' goes to the client */
	PX_PARSE_HIDE, /* pgtide's Parse: its ParseComplete is dropped */
	PX_PARSE_FAKE, /* the client's Parse answered by pgtide: '1' made when at the head */
	PX_PARSE_DUP,  /* the client's Parse of a name it has: the server's 42P05 is renamed */
	PX_BIND,       /* '2' */
	PX_DESCRIBE,   /* 't' (statements) then 'T' or 'n' */
	PX_EXECUTE,    /* rows, then 'C', 'I' or 's' */
	PX_CLOSE,      /* the client's Close: '3' */
	PX_CLOSE_HIDE, /* pgtide's Close (eviction): its '3' is dropped */
	PX_CLOSE_FAKE, /* the client's Close answered by pgtide: '3' made when at the head */
	PX_SYNC,       /* Sync: 'Z' */
	PX_QUERY,      /* simple Query or FunctionCall: everything up to 'Z' */
};

struct prep_expect_ent {
	uint8_t kind;           /* enum prep_expect */
	struct prep_stmt *stmt; /* Parse kinds: the statement (a reference) */
	char *name;             /* PX_PARSE, PX_PARSE_FAKE: the client's name (malloc'd);
	                         * PX_PARSE_DUP: idem, for the renamed error */
};

struct prep_ring {
	struct prep_expect_ent *v;
	uint32_t head, len, cap; /* cap is a power of two */
};

/* Appends an entry (taking stmt's reference and name); false on OOM. */
bool prep_ring_push(struct prep_ring *q, uint8_t kind, struct prep_stmt *stmt, char *name);
static inline struct prep_expect_ent *prep_ring_head(struct prep_ring *q)
{
	return q->len ? &q->v[q->head] : NULL;
}
/* Appends a plain entry (no statement, no name) if there is room: the hot path of every
 * relayed message. False: use prep_ring_push. */
static inline bool prep_ring_push_plain(struct prep_ring *q, uint8_t kind)
{
	if (q->len == q->cap)
		return false;
	struct prep_expect_ent *e = &q->v[(q->head + q->len) & (q->cap - 1)];
	e->kind = kind;
	e->stmt = NULL;
	e->name = NULL;
	q->len++;
	return true;
}

/*
 * The hot path for a reply while the head entry is plain (no statement or name to settle):
 * true if it ends that entry's answer (the entry is removed) or is simply part of a simple
 * Query's answer; false: the caller takes the full path (prep_server_reply).
 */
static inline bool prep_ring_pop_plain(struct prep_ring *q, char type)
{
	if (!q->len)
		return false;
	struct prep_expect_ent *h = &q->v[q->head];
	if (h->stmt || h->name)
		return false;
	if (h->kind == PX_QUERY && type != 'Z' && type != 'E')
		return true; /* rows, tags, COPY: a Query's answer ends only at ReadyForQuery */
	bool match;
	switch (type) {
	case '1':
		match = h->kind == PX_PARSE;
		break;
	case '2':
		match = h->kind == PX_BIND;
		break;
	case 'T':
	case 'n':
		match = h->kind == PX_DESCRIBE;
		break;
	case 'C':
	case 'I':
	case 's':
		match = h->kind == PX_EXECUTE;
		break;
	case 'Z':
		match = h->kind == PX_SYNC || h->kind == PX_QUERY;
		break;
	default:
		return false;
	}
	if (!match)
		return false;
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
	return true;
}

/* Removes the head (the caller has taken or released what it points to). */
void prep_ring_pop(struct prep_ring *q);
/* Empties the ring (releasing what entries hold), keeping its memory. */
void prep_ring_clear(struct prep_ring *q, struct prep_registry *r);
void prep_ring_free(struct prep_ring *q, struct prep_registry *r);

#endif
