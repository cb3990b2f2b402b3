/*
 * Named prepared statements under transaction pooling. A client's statement names live in the
 * client's own namespace (struct prep_names); the text they stand for is interned once per
 * pgtide (struct prep_stmt, server-side name "pgtide_<id>"), so clients with the same SQL share
 * one server statement; each server connection remembers which it has (struct prep_cache,
 * bounded by max_prepared_statements, least recently used first out); and each server keeps
 * the order of what its client sent (struct prep_ring), so that replies to messages pgtide
 * injected (a Parse before a Bind, a Close to evict) are hidden and replies to messages it
 * answered itself (a Parse of a statement the server already has, a Close) are produced in
 * the right place.
 *
 * A statement's plan can go stale under it: after ALTER TABLE ... ADD COLUMN, PostgreSQL
 * refuses every Bind (and Describe) of a statement prepared as SELECT * with 0A000 "cached
 * plan must not change result type". So each statement has a generation (prep_stmt.gen) and
 * each cache entry the generation it was prepared at: the first server that reports the error
 * moves the generation on, and every server then finds its copy stale at its next use and
 * Closes and Parses it again (prep_cache_lookup). A batch that starts outside a transaction
 * block with a Bind or Describe of a named statement is copied (struct prep_replay, at most
 * PREP_REPLAY_MAX bytes) until that first message is answered; if the answer is that error,
 * nothing has reached the client yet, so pgtide hides it and the batch's ReadyForQuery, and
 * sends the copy again once (the stale statement re-prepared on the way). An error that comes
 * back before pgtide has read the batch's Sync stays hidden until that Sync, unless a Flush
 * says the client is waiting for answers. After any error in a batch the server skips the rest
 * up to Sync, messages pgtide reads only later included: those get no ring entry
 * (PREP_PLAIN_OFF_SKIP).
 *
 * DEALLOCATE name inside a simple Query is rewritten to deallocate an empty statement pgtide
 * prepares just before (prep_find_deallocates finds them; PX_DEALLOC entries follow their
 * CommandComplete), so PostgreSQL answers with its own tags and errors while the server-side
 * statement stays for the other names that use it. Pure.
 */
#ifndef PGTIDE_PREPARED_H
#define PGTIDE_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pgtide/proto.h"
#include "pgtide/sqlscan.h"

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
	uint32_t gen;      /* moves on when its plan had to change result type (cache entries of
	                    * an older generation are stale) */
	uint8_t pin_probe; /* 0 not yet known, else 1 + pin_text_wants_probe's bits (pin.h) */
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

enum prep_cache_hit {
	PREP_MISS = 0, /* the server does not have it */
	PREP_HIT,      /* it has it, current */
	PREP_STALE,    /* it has an older version (or may have): Close it before the Parse */
};

/* What the server has of s; marks it used. */
enum prep_cache_hit prep_cache_lookup(struct prep_cache *c, const struct prep_stmt *s);
/* Records that the server has (or is being sent) s, current, taking a reference; false on OOM.
 * s must not be there yet. */
bool prep_cache_add(struct prep_cache *c, struct prep_stmt *s);
/*
 * While more than max entries are there (max 0 = no bound), removes the least recently used
 * one other than `keep` and returns it (with its reference, for the caller to Close on the
 * server and unref); NULL when within the bound. Call until NULL.
 */
struct prep_stmt *prep_cache_evict(struct prep_cache *c, uint32_t max,
                                   const struct prep_stmt *keep);
/* The server's copy of s is current again (its Close and Parse were sent). */
void prep_cache_refresh(struct prep_cache *c, const struct prep_stmt *s);
/* The server keeps some version of s after all (a Close or Parse of it was skipped): it is
 * recorded as stale, added beyond the bound if it was not there. False on OOM. */
bool prep_cache_mark_stale(struct prep_cache *c, struct prep_stmt *s);
/* The server said the plan of s must change result type: every copy prepared before now, on
 * every server, is stale (the generation moves on unless this copy was already stale). */
void prep_stmt_changed(struct prep_cache *c, struct prep_stmt *s);
/* A Parse of s was not carried out: forgets s, unless its entry is stale (the server keeps an
 * older version, to be Closed first). */
void prep_cache_undo(struct prep_cache *c, struct prep_registry *r, const struct prep_stmt *s);
/* Forgets s (it was closed). */
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
	PX_DEALLOC,    /* before the PX_QUERY of a Query with DEALLOCATE name: `count` more
	                * CommandCompletes, then its own; if an error comes first it did not run */
};

struct prep_expect_ent {
	uint8_t kind;           /* enum prep_expect */
	uint32_t count;         /* PX_DEALLOC: CommandCompletes of earlier statements still due
	                         * (plain pushes leave it unset) */
	struct prep_stmt *stmt; /* Parse kinds, PX_DEALLOC, PX_CLOSE_FAKE: the statement; PX_BIND,
	                         * PX_DESCRIBE: the named statement; PX_CLOSE_HIDE: the statement
	                         * closed; PX_SYNC: see prep_client_message (a reference each) */
	char *name;             /* PX_PARSE, PX_PARSE_FAKE, PX_DEALLOC, PX_CLOSE_FAKE: the
	                         * client's name (malloc'd); PX_PARSE_DUP: idem, for the renamed
	                         * error */
};

struct prep_ring {
	struct prep_expect_ent *v;
	uint32_t head, len, cap; /* cap is a power of two */
	uint32_t plain_cap;      /* prep_ring_push_plain's bound: cap, or 0 while plain_off */
	uint8_t plain_off;       /* why every message takes the full path: PREP_PLAIN_OFF_* */
};

/* A batch is being copied for a replay (struct prep_replay). */
#define PREP_PLAIN_OFF_COPY 1u
/* After an error in an extended-protocol batch whose Sync was not sent yet, the server skips
 * every message up to that Sync: they are forwarded with no entry and no rewriting. */
#define PREP_PLAIN_OFF_SKIP 2u

/* Appends an entry (taking stmt's reference and name); false on OOM. */
bool prep_ring_push(struct prep_ring *q, uint8_t kind, struct prep_stmt *stmt, char *name);
static inline struct prep_expect_ent *prep_ring_head(struct prep_ring *q)
{
	return q->len ? &q->v[q->head] : NULL;
}
/* The entry pushed last (the ring is not empty). */
static inline struct prep_expect_ent *prep_ring_tail(struct prep_ring *q)
{
	return &q->v[(q->head + q->len - 1) & (q->cap - 1)];
}
/* Appends a plain entry (no statement, no name) if there is room and plain pushes are on: the
 * hot path of every relayed message. False: use prep_ring_push. */
static inline bool prep_ring_push_plain(struct prep_ring *q, uint8_t kind)
{
	if (q->len >= q->plain_cap)
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

/* Sets or clears one reason (PREP_PLAIN_OFF_*) to keep plain pushes off. */
static inline void prep_ring_plain_off(struct prep_ring *q, uint8_t why, bool off)
{
	q->plain_off = (uint8_t)(off ? q->plain_off | why : q->plain_off & ~why);
	q->plain_cap = q->plain_off ? 0 : q->cap;
}
static inline bool prep_ring_plain_on(const struct prep_ring *q)
{
	return q->plain_off == 0;
}
/* Removes the head (the caller has taken or released what it points to). */
void prep_ring_pop(struct prep_ring *q);
/* Empties the ring (releasing what entries hold), keeping its memory. */
void prep_ring_clear(struct prep_ring *q, struct prep_registry *r);
void prep_ring_free(struct prep_ring *q, struct prep_registry *r);

/* ---- replaying a batch whose plan went stale ---- */

/* The most of a batch's client messages kept for a replay; beyond it, no replay. */
#define PREP_REPLAY_MAX (64u * 1024u)

enum prep_replay_state {
	PREP_REPLAY_OFF = 0,    /* nothing kept */
	PREP_REPLAY_ARMED,      /* the batch's first message's answer is awaited */
	PREP_REPLAY_RECOVERING, /* that answer was 0A000, hidden; so will the batch's 'Z' be */
	PREP_REPLAY_DUE,        /* 'Z' hidden: send the copy again (after the server's pump) */
};

struct prep_replay {
	uint8_t state;          /* enum prep_replay_state */
	bool synced;            /* the copy ends with the batch's Sync (no more copying) */
	bool flushed;           /* a Flush came before it: the client may be waiting for answers */
	struct prep_stmt *stmt; /* what the batch's first message binds or describes (a ref) */
	struct pbuf copy;       /* the client's messages from that one on, as the client sent them
	                         * (Flush left out) */
	struct pbuf held;       /* the first Describe's ParameterDescription, held until its
	                         * RowDescription or error says whether it stands */
	struct pbuf error;      /* the hidden error, for when the replay cannot happen after all */
};

/* Starts a copy with msg, the batch's first message (about s, referenced); false if it does
 * not fit or on OOM (nothing kept). */
bool prep_replay_start(struct prep_replay *r, struct prep_stmt *s, const uint8_t *msg,
                       uint32_t len);
bool prep_replay_append_slow(struct prep_replay *r, const uint8_t *msg, uint32_t len);
/* Appends msg to the copy; false if that goes beyond PREP_REPLAY_MAX or on OOM. */
static inline bool prep_replay_append(struct prep_replay *r, const uint8_t *msg, uint32_t len)
{
	struct pbuf *b = &r->copy;
	if (len >= PROTO_HEADER_LEN && len <= b->cap - b->len && len <= PREP_REPLAY_MAX - b->len) {
		memcpy(b->data + b->len, msg, len);
		b->len += len;
		return true;
	}
	return prep_replay_append_slow(r, msg, len);
}
/*
 * The hot path while a batch is copied (plain pushes off for that reason alone): a plain
 * message's bytes go into the copy and its plain entry into the ring; its Sync ends the copy.
 * False: take the full path (prep_client_message), which also stops a copy that cannot go on.
 */
static inline bool prep_push_copied(struct prep_ring *q, struct prep_replay *r, uint8_t kind,
                                    const uint8_t *msg, uint32_t len)
{
	/* (That reason is set exactly while r is ARMED and not synced.) */
	if (q->plain_off != PREP_PLAIN_OFF_COPY || q->len == q->cap || kind == PX_QUERY ||
	    !prep_replay_append(r, msg, len))
		return false;
	struct prep_expect_ent *e = &q->v[(q->head + q->len) & (q->cap - 1)];
	e->kind = kind;
	e->stmt = NULL;
	e->name = NULL;
	q->len++;
	if (kind == PX_SYNC) {
		r->synced = true;
		prep_ring_plain_off(q, PREP_PLAIN_OFF_COPY, false);
	}
	return true;
}

/* Walks the messages of a copy: *off starts at 0; false after the last. */
bool prep_replay_next(const struct pbuf *copy, size_t *off, const uint8_t **msg, uint32_t *len);
/* Back to PREP_REPLAY_OFF, dropping what is kept (small buffers stay for the next batch). */
void prep_replay_reset(struct prep_replay *r, struct prep_registry *reg);
void prep_replay_free(struct prep_replay *r, struct prep_registry *reg);

/* True if an ErrorResponse body is 0A000 "cached plan must not change result type" (told by
 * its routine field when the message is translated). */
bool prep_is_cached_plan_error(const uint8_t *body, size_t len);

/* ---- DEALLOCATE in a simple Query ---- */

/* Cheap first look: false if sql cannot hold a DEALLOCATE (the word, in any case). */
bool prep_mentions_deallocate(const char *sql, size_t len);

/* One DEALLOCATE [PREPARE] name statement of a simple Query. */
struct prep_dealloc {
	size_t name_off, name_len;       /* where the name is written in the Query text */
	size_t before;                   /* statements of the Query before this one */
	char name[SQLSCAN_NAME_MAX + 1]; /* the name as PostgreSQL reads it */
};
typedef bool (*prep_dealloc_fn)(void *arg, const struct prep_dealloc *d);
/*
 * Calls fn for each DEALLOCATE [PREPARE] name statement of sql in order (fn returns false to
 * stop), up to a DEALLOCATE [PREPARE] ALL: names after it are gone already when they run.
 * Statements are counted as PostgreSQL runs them (empty ones are not statements).
 */
void prep_find_deallocates(const char *sql, size_t len, prep_dealloc_fn fn, void *arg);

#endif
