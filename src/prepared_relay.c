/* Named prepared statements on the relay path (see prepared_relay.h and prepared.h). */
#include "pgtide/prepared_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgtide/client.h"
#include "pgtide/errmap.h"
#include "pgtide/log.h"
#include "pgtide/pgtide.h"
#include "pgtide/pin.h"
#include "pgtide/pool.h"
#include "pgtide/prepared.h"
#include "pgtide/server.h"
#include "pgtide/sqlscan.h"

bool prep_active(const struct client *c)
{
	return c->pool && c->pool->pool_mode != POOL_MODE_SESSION &&
	       c->ctx->cfg.max_prepared_statements > 0;
}

/* ---- small message builders ---- */

static void put_parse(struct pbuf *b, const char *name, const char *query, size_t query_len,
                      const uint8_t *types, uint16_t n)
{
	size_t off = proto_msg_begin(b, 'P');
	pbuf_put_str(b, name);
	pbuf_put(b, query, query_len);
	pbuf_put_u8(b, 0);
	pbuf_put_u16(b, n);
	pbuf_put(b, types, (size_t)n * 4);
	proto_msg_end(b, off);
}

static void put_close(struct pbuf *b, const char *name)
{
	size_t off = proto_msg_begin(b, 'C');
	pbuf_put_u8(b, 'S');
	pbuf_put_str(b, name);
	proto_msg_end(b, off);
}

static void put_empty(struct pbuf *b, char type)
{
	size_t off = proto_msg_begin(b, type);
	proto_msg_end(b, off);
}

/* Sends b to the server (after whatever the client already had forwarded) and resets it. */
static void send_server(struct server *s, struct pbuf *b)
{
	if (!b->oom)
		io_write(&s->io, b->data, b->len);
	pbuf_reset(b);
}

static bool push(struct server *s, uint8_t kind, struct prep_stmt *st, const char *name)
{
	struct prep_ring *q = &s->prep_ring;
	if (!name && q->len < q->cap) { /* the common case: no name, room left */
		struct prep_expect_ent *e = &q->v[(q->head + q->len) & (q->cap - 1)];
		e->kind = kind;
		e->count = 0;
		e->stmt = st;
		e->name = NULL;
		if (st)
			prep_ref(st);
		q->len++;
		return true;
	}
	char *n = NULL;
	if (name && !(n = strdup(name)))
		return false;
	if (st)
		prep_ref(st);
	if (!prep_ring_push(&s->prep_ring, kind, st, n)) {
		free(n);
		prep_unref(&s->ctx->prep, st);
		return false;
	}
	return true;
}

/* Emits the replies pgtide answers itself while they are at the head of the ring. */
static void emit_fakes(struct server *s)
{
	struct prep_expect_ent *h;
	struct pbuf b = {0};
	while ((h = prep_ring_head(&s->prep_ring)) != NULL &&
	       (h->kind == PX_PARSE_FAKE || h->kind == PX_CLOSE_FAKE)) {
		put_empty(&b, h->kind == PX_PARSE_FAKE ? '1' : '3');
		prep_unref(&s->ctx->prep, h->stmt);
		free(h->name);
		prep_ring_pop(&s->prep_ring);
	}
	if (b.len && !b.oom && s->client)
		io_write(&s->client->io, b.data, b.len);
	pbuf_free(&b);
}

/* Records that the server gets st, closing the least recently used statements first if the
 * cache is full (those Closes go into b, their replies hidden). False on OOM. */
static bool cache_insert(struct server *s, struct prep_stmt *st, struct pbuf *b)
{
	if (!prep_cache_add(&s->prep_cache, st))
		return false;
	uint32_t max = (uint32_t)s->ctx->cfg.max_prepared_statements;
	struct prep_stmt *old;
	while ((old = prep_cache_evict(&s->prep_cache, max, st)) != NULL) {
		put_close(b, old->name);
		bool ok = push(s, PX_CLOSE_HIDE, old, NULL);
		prep_unref(&s->ctx->prep, old);
		if (!ok)
			return false;
	}
	return true;
}

/*
 * Makes room for a Parse of st, which the server does not have current (`hit`, from
 * prep_cache_lookup): records it in the cache, and if the server has a stale copy (its plan had
 * to change result type), a Close of that goes into b first (reply hidden). False on OOM.
 */
static bool make_room(struct server *s, struct prep_stmt *st, struct pbuf *b,
                      enum prep_cache_hit hit)
{
	if (hit == PREP_MISS)
		return cache_insert(s, st, b);
	put_close(b, st->name);
	prep_cache_refresh(&s->prep_cache, st);
	return push(s, PX_CLOSE_HIDE, st, NULL);
}

/* Makes sure the server has st: if not, a Parse for it goes into b (its reply hidden). */
static bool ensure_prepared(struct server *s, struct prep_stmt *st, struct pbuf *b)
{
	enum prep_cache_hit hit = prep_cache_lookup(&s->prep_cache, st);
	if (hit == PREP_HIT)
		return true;
	if (!make_room(s, st, b, hit))
		return false;
	put_parse(b, st->name, st->query, st->query_len, st->types, st->n_types);
	return push(s, PX_PARSE_HIDE, st, NULL);
}

/* ---- the copy of a batch, for a replay ---- */

/* No replay for this batch (any more): the copy goes, plain pushes are back. */
static void replay_off(struct server *s)
{
	if (s->prep_replay.state != PREP_REPLAY_OFF)
		prep_replay_reset(&s->prep_replay, &s->ctx->prep);
	prep_ring_plain_off(&s->prep_ring, PREP_PLAIN_OFF_COPY, false);
}

/* The batch's first message is not answered yet. */
static bool replay_armed(const struct server *s)
{
	return s->prep_replay.state == PREP_REPLAY_ARMED;
}

/* Sends the client what was held back (its first Describe's ParameterDescription). */
static void release_held(struct server *s)
{
	struct pbuf *h = &s->prep_replay.held;
	if (h->len && s->client)
		io_write(&s->client->io, h->data, h->len);
	pbuf_free(h);
}

/* A replay after a hidden error cannot happen after all: PostgreSQL's error now. */
static void give_up(struct server *s)
{
	struct prep_replay *r = &s->prep_replay;
	release_held(s);
	struct pbuf err = r->error;
	r->error = (struct pbuf){0};
	replay_off(s);
	if (err.len && s->client)
		server_relay_held_error(s, err.data, (uint32_t)err.len);
	pbuf_free(&err);
}

/* Copies a message of the batch, up to its Sync. */
static void replay_copy(struct server *s, char type, const uint8_t *msg, uint32_t len, bool whole)
{
	struct prep_replay *r = &s->prep_replay;
	bool hidden = r->state == PREP_REPLAY_RECOVERING;
	if (type == 'H') {
		/* The client may wait for the answers now: an error kept back must go out. */
		if (hidden)
			give_up(s);
		else
			r->flushed = true;
		return;
	}
	/* A Query or FunctionCall inside a batch, or a batch beyond the bound: no replay. */
	if (!whole || type == 'Q' || type == 'F' || !prep_replay_append(r, msg, len)) {
		if (hidden)
			give_up(s);
		else
			replay_off(s);
		return;
	}
	if (type == 'S') {
		r->synced = true;
		prep_ring_plain_off(&s->prep_ring, PREP_PLAIN_OFF_COPY, false);
	}
}

void prep_replay_run(struct server *s)
{
	struct prep_replay *r = &s->prep_replay;
	struct client *c = s->client;
	if (r->state != PREP_REPLAY_DUE)
		return;
	/* The state stays DUE while the copy is sent, so that it is not copied or armed again:
	 * one replay per batch. */
	struct pbuf copy = r->copy;
	r->copy = (struct pbuf){0};
	if (c)
		log_msg(LOG_LEVEL_LOG,
		        "%s/%s s%llu: the plan of a prepared statement had to change result type "
		        "(0A000): statement prepared again, batch sent again",
		        s->pool->db_name, s->pool->user_name, (unsigned long long)s->id);
	size_t off = 0;
	const uint8_t *m;
	uint32_t n;
	/* Through the same rewriting as the first time (the stale statement is Closed and Parsed
	 * on the way); the client's messages were counted then, so client.c is not involved. */
	while (c && prep_replay_next(&copy, &off, &m, &n)) {
		enum pump_action act = prep_client_message(c, s, (char)m[0], m, n, true);
		if (act == PUMP_CLOSED)
			break;
		if (act == PUMP_FORWARD)
			io_write(&s->io, m, n);
	}
	pbuf_free(&copy);
	replay_off(s);
}

/* ---- client messages ---- */

struct parse_msg {
	const char *name;
	const char *query;
	size_t query_len;
	const uint8_t *types;
	uint16_t n_types;
};

static bool read_parse(const uint8_t *msg, uint32_t len, struct parse_msg *p)
{
	const char *b = (const char *)msg + PROTO_HEADER_LEN, *e = (const char *)msg + len;
	const char *n1 = memchr(b, 0, (size_t)(e - b));
	if (!n1)
		return false;
	const char *q = n1 + 1;
	const char *n2 = memchr(q, 0, (size_t)(e - q));
	if (!n2 || e - (n2 + 1) < 2)
		return false;
	const uint8_t *t = (const uint8_t *)n2 + 1;
	uint16_t n = (uint16_t)(t[0] << 8 | t[1]);
	if ((size_t)(e - (const char *)t) < 2 + (size_t)n * 4)
		return false;
	p->name = b;
	p->query = q;
	p->query_len = (size_t)(n2 - q);
	p->types = t + 2;
	p->n_types = n;
	return true;
}

static enum pump_action oom(struct client *c)
{
	client_close(c, "53200", "out of memory");
	return PUMP_CLOSED;
}

/* Sends what was built in b in place of the client's message (ok), or fails on OOM. */
static enum pump_action send_instead(struct client *c, struct server *s, struct pbuf *b, bool ok)
{
	if (ok)
		send_server(s, b);
	pbuf_free(b);
	return ok ? PUMP_DROP : oom(c);
}

static enum pump_action on_parse(struct client *c, struct server *s, const uint8_t *msg,
                                 uint32_t len)
{
	struct pt_ctx *ctx = c->ctx;
	struct parse_msg p;
	if (len <= PROTO_HEADER_LEN || msg[PROTO_HEADER_LEN] == 0 || !read_parse(msg, len, &p))
		return push(s, PX_PARSE, NULL, NULL) ? PUMP_FORWARD : oom(c);
	struct pbuf b = {0};
	struct prep_stmt *old = prep_names_get(&c->prep, p.name);
	if (old) {
		/* PostgreSQL parses the text, then refuses the name (42P05). The server does the
		 * same for the name `old` has there; the error is renamed on its way back. */
		if (!ensure_prepared(s, old, &b))
			goto fail;
		put_parse(&b, old->name, p.query, p.query_len, p.types, p.n_types);
		return send_instead(c, s, &b, push(s, PX_PARSE_DUP, NULL, p.name));
	}
	struct prep_stmt *st = prep_intern(&ctx->prep, p.query, p.query_len, p.types, p.n_types);
	if (!st)
		goto fail;
	if (!prep_names_add(&c->prep, p.name, st)) {
		prep_unref(&ctx->prep, st);
		goto fail;
	}
	bool ok;
	enum prep_cache_hit hit = prep_cache_lookup(&s->prep_cache, st);
	if (hit == PREP_HIT) {
		/* The server has it already: answer ParseComplete ourselves, in its place. */
		ok = push(s, PX_PARSE_FAKE, st, p.name);
		prep_unref(&ctx->prep, st);
		if (!ok)
			goto fail;
		pbuf_free(&b);
		emit_fakes(s);
		return PUMP_DROP;
	}
	if (!make_room(s, st, &b, hit)) {
		prep_unref(&ctx->prep, st);
		goto fail;
	}
	put_parse(&b, st->name, p.query, p.query_len, p.types, p.n_types);
	ok = push(s, PX_PARSE, st, p.name);
	prep_unref(&ctx->prep, st);
	return send_instead(c, s, &b, ok);
fail:
	pbuf_free(&b);
	return oom(c);
}

/*
 * With nothing in flight (q->len == 0): true if no Parse, Bind, Describe, Execute or Close came
 * since the last Sync or Query. The entry pushed last is still in its slot and says what came
 * last (a message the server skipped after an error has none, and changes nothing here).
 */
static bool batch_starts(const struct prep_ring *q)
{
	if (!q->cap)
		return true;
	uint8_t last = q->v[(q->head - 1) & (q->cap - 1)].kind;
	return last == PX_SYNC || last == PX_QUERY;
}

/*
 * Bind and Describe of a named statement: the same message with the server-side name, after a
 * Parse if the server lacks it. `name_off` is where the statement name starts in the body.
 */
static enum pump_action rename_stmt(struct client *c, struct server *s, const uint8_t *msg,
                                    uint32_t len, size_t name_off, uint8_t kind)
{
	const char *body = (const char *)msg + PROTO_HEADER_LEN;
	size_t blen = len - PROTO_HEADER_LEN;
	const char *name = body + name_off;
	const char *nul = name_off < blen ? memchr(name, 0, blen - name_off) : NULL;
	struct prep_stmt *st = nul && name[0] ? prep_names_get(&c->prep, name) : NULL;
	if (!st) /* unnamed, malformed, or unknown (the server answers 26000 with this name) */
		return push(s, kind, NULL, NULL) ? PUMP_FORWARD : oom(c);
	if (kind == PX_BIND) {
		/* A statement that may take or drop session state (pin.h), run again. */
		if (!st->pin_probe)
			st->pin_probe =
			        (uint8_t)(1 + pin_text_wants_probe(st->query, st->query_len));
		if (st->pin_probe > 1)
			s->probe_wanted = true;
		if ((st->pin_probe - 1) & PIN_TEXT_SET_CONFIG)
			pin_set_config_names(st->query, st->query_len, server_note_set_config, s);
	}
	struct prep_replay *r = &s->prep_replay;
	if (r->state == PREP_REPLAY_OFF && s->prep_ring.len == 0 && s->txn_status == 'I' &&
	    batch_starts(&s->prep_ring) && prep_replay_start(r, st, msg, len)) {
		/* The first message of a batch, nothing in flight, outside a transaction block: if
		 * its answer is that the plan must change result type, nothing of the batch has
		 * reached the client and it can be sent again. Copied up to its Sync. */
		r->state = PREP_REPLAY_ARMED;
		prep_ring_plain_off(&s->prep_ring, PREP_PLAIN_OFF_COPY, true);
	}
	struct pbuf b = {0};
	if (!ensure_prepared(s, st, &b))
		return send_instead(c, s, &b, false);
	size_t off = proto_msg_begin(&b, msg[0]);
	pbuf_put(&b, body, name_off);
	pbuf_put_str(&b, st->name);
	pbuf_put(&b, nul + 1, (size_t)(body + blen - (nul + 1)));
	proto_msg_end(&b, off);
	return send_instead(c, s, &b, push(s, kind, st, NULL));
}

/* The DEALLOCATE [PREPARE] name statements of a Query that name the client's statements. */
struct dealloc {
	size_t name_off, name_len, before;
	struct prep_stmt *stmt;
	char name[SQLSCAN_NAME_MAX + 1];
};
struct dealloc_list {
	struct client *c;
	struct dealloc *v;
	size_t n, cap;
	bool oom;
};

static bool collect_dealloc(void *arg, const struct prep_dealloc *d)
{
	struct dealloc_list *l = arg;
	struct prep_stmt *st = prep_names_get(&l->c->prep, d->name);
	if (!st)
		return true; /* unknown: PostgreSQL's 26000 names it as the client wrote it */
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, d->name) == 0)
			return true; /* gone by then: 26000 as well */
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct dealloc *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			l->oom = true;
			return false;
		}
		l->v = v;
		l->cap = cap;
	}
	struct dealloc *e = &l->v[l->n++];
	e->name_off = d->name_off;
	e->name_len = d->name_len;
	e->before = d->before;
	e->stmt = st;
	memcpy(e->name, d->name, sizeof(e->name));
	return true;
}

/* The empty statement the k-th DEALLOCATE of a Query deallocates instead of the client's. */
static void dealloc_name(char out[48], size_t k)
{
	snprintf(out, 48, "pgtide_dealloc_%zu", k);
}

/*
 * A simple Query that may DEALLOCATE [PREPARE] some of the client's names, anywhere among its
 * statements. Each such statement is made to deallocate an empty statement pgtide prepares
 * just before (Close first: one left by a Query that failed earlier goes), so PostgreSQL
 * answers with its own tag, or its own error (25P02 in a failed transaction), in order; the
 * server-side statement stays for the client's other names and other clients. The client's
 * names go now, as later messages must not find them; one whose DEALLOCATE did not run (an
 * error came first) is put back when the server says so (PX_DEALLOC). Unknown names are left
 * as written: PostgreSQL's 26000 names them. DEALLOCATE ALL and DISCARD ALL clear the client's
 * names when the server reports them done (prep_server_forget_all).
 */
static enum pump_action on_query(struct client *c, struct server *s, const uint8_t *msg,
                                 uint32_t len)
{
	const char *sql = (const char *)msg + PROTO_HEADER_LEN;
	size_t n = len - PROTO_HEADER_LEN;
	if (n > 0 && sql[n - 1] == 0)
		n--;
	if (!c->prep.n || !prep_mentions_deallocate(sql, n))
		return push(s, PX_QUERY, NULL, NULL) ? PUMP_FORWARD : oom(c);
	struct dealloc_list l = {.c = c};
	prep_find_deallocates(sql, n, collect_dealloc, &l);
	if (l.oom || !l.n) {
		free(l.v);
		if (l.oom)
			return oom(c);
		return push(s, PX_QUERY, NULL, NULL) ? PUMP_FORWARD : oom(c);
	}
	struct pbuf b = {0};
	char tmp[48];
	bool ok = true;
	for (size_t i = 0; i < l.n && ok; i++) {
		dealloc_name(tmp, i + 1);
		put_close(&b, tmp);
		put_parse(&b, tmp, "", 0, NULL, 0);
		ok = push(s, PX_CLOSE_HIDE, NULL, NULL) && push(s, PX_PARSE_HIDE, NULL, NULL);
	}
	size_t next = 0; /* the first statement after the previous DEALLOCATE */
	for (size_t i = 0; i < l.n && ok; i++) {
		ok = push(s, PX_DEALLOC, l.v[i].stmt, l.v[i].name);
		if (ok)
			prep_ring_tail(&s->prep_ring)->count = (uint32_t)(l.v[i].before - next);
		next = l.v[i].before + 1;
	}
	ok = ok && push(s, PX_QUERY, NULL, NULL);
	size_t off = proto_msg_begin(&b, 'Q'), at = 0;
	for (size_t i = 0; i < l.n; i++) {
		pbuf_put(&b, sql + at, l.v[i].name_off - at);
		dealloc_name(tmp, i + 1);
		pbuf_put(&b, tmp, strlen(tmp));
		at = l.v[i].name_off + l.v[i].name_len;
	}
	pbuf_put(&b, sql + at, n - at);
	pbuf_put_u8(&b, 0);
	proto_msg_end(&b, off);
	ok = ok && !b.oom;
	for (size_t i = 0; i < l.n && ok; i++)
		prep_names_del(&c->prep, &c->ctx->prep, l.v[i].name);
	free(l.v);
	return send_instead(c, s, &b, ok);
}

enum pump_action prep_client_message(struct client *c, struct server *s, char type,
                                     const uint8_t *msg, uint32_t len, bool whole)
{
	struct prep_replay *r = &s->prep_replay;
	if ((r->state == PREP_REPLAY_ARMED || r->state == PREP_REPLAY_RECOVERING) && !r->synced)
		replay_copy(s, type, msg, len, whole);
	if (s->prep_ring.plain_off & PREP_PLAIN_OFF_SKIP) {
		/* After an error the server ignores it, up to Sync: no rewriting, no entry. */
		if (type != 'S')
			return PUMP_FORWARD;
		prep_ring_plain_off(&s->prep_ring, PREP_PLAIN_OFF_SKIP, false);
	}
	switch (type) {
	case 'P':
		if (!whole)
			return PUMP_NEED_WHOLE;
		return on_parse(c, s, msg, len);
	case 'B': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *body = (const char *)msg + PROTO_HEADER_LEN;
		if (len > PROTO_HEADER_LEN + 1 && body[0] == 0 && body[1] == 0)
			return push(s, PX_BIND, NULL, NULL) ? PUMP_FORWARD : oom(c);
		const char *nul = memchr(body, 0, len - PROTO_HEADER_LEN);
		if (!nul)
			return push(s, PX_BIND, NULL, NULL) ? PUMP_FORWARD : oom(c);
		return rename_stmt(c, s, msg, len, (size_t)(nul + 1 - body), PX_BIND);
	}
	case 'D':
		if (!whole)
			return PUMP_NEED_WHOLE;
		if (len > PROTO_HEADER_LEN + 1 && msg[PROTO_HEADER_LEN] == 'S')
			return rename_stmt(c, s, msg, len, 1, PX_DESCRIBE);
		return push(s, PX_DESCRIBE, NULL, NULL) ? PUMP_FORWARD : oom(c);
	case 'C': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *name = (const char *)msg + PROTO_HEADER_LEN + 1;
		if (len > PROTO_HEADER_LEN + 2 && msg[PROTO_HEADER_LEN] == 'S' && name[0] &&
		    memchr(name, 0, len - PROTO_HEADER_LEN - 1)) {
			/* The client's name goes; the server keeps the statement for others. The
			 * entry keeps the name, to put it back if an error makes the server skip
			 * the Close. */
			struct prep_stmt *st = prep_names_get(&c->prep, name);
			if (!push(s, PX_CLOSE_FAKE, st, st ? name : NULL))
				return oom(c);
			if (st)
				prep_names_del(&c->prep, &c->ctx->prep, name);
			emit_fakes(s);
			return PUMP_DROP;
		}
		return push(s, PX_CLOSE, NULL, NULL) ? PUMP_FORWARD : oom(c);
	}
	case 'E':
		return push(s, PX_EXECUTE, NULL, NULL) ? PUMP_FORWARD : oom(c);
	case 'S':
		/* After a hidden error its 'Z' must take the full path: the entry carries the
		 * statement (prep_ring_pop_plain leaves entries with one alone). */
		return push(s, PX_SYNC, r->state == PREP_REPLAY_RECOVERING ? r->stmt : NULL, NULL)
		               ? PUMP_FORWARD
		               : oom(c);
	case 'F':
		return push(s, PX_QUERY, NULL, NULL) ? PUMP_FORWARD : oom(c);
	case 'Q':
		if (!whole)
			return push(s, PX_QUERY, NULL, NULL) ? PUMP_FORWARD : oom(c);
		return on_query(c, s, msg, len);
	default:
		return PUMP_FORWARD;
	}
}

/* ---- server replies ---- */

static void drop_head(struct server *s)
{
	struct prep_ring *q = &s->prep_ring;
	struct prep_expect_ent *h = &q->v[q->head];
	if (h->stmt)
		prep_unref(&s->ctx->prep, h->stmt);
	if (h->name)
		free(h->name);
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
}

/*
 * A message the server did not carry out: it failed, or was skipped after an error in its
 * batch (up to Sync), or a Query stopped before it. Undoes what pgtide recorded when sending.
 */
static void not_done(struct server *s, struct prep_expect_ent *e)
{
	struct pt_ctx *ctx = s->ctx;
	struct client *c = s->client;
	switch (e->kind) {
	case PX_PARSE:
	case PX_PARSE_HIDE:
		if (e->stmt)
			prep_cache_undo(&s->prep_cache, &ctx->prep, e->stmt);
		break;
	case PX_CLOSE_HIDE:
		/* The server keeps it (an older version, maybe): Closed before the next Parse. */
		if (e->stmt && !prep_cache_mark_stale(&s->prep_cache, e->stmt))
			s->close_when_idle = true;
		break;
	case PX_DEALLOC:
	case PX_CLOSE_FAKE:
		/* The name stays, as it does on PostgreSQL (unless the client used it again). */
		if (c && e->name && e->stmt && !prep_names_get(&c->prep, e->name))
			(void)prep_names_add(&c->prep, e->name, e->stmt);
		break;
	default:
		break;
	}
	if ((e->kind == PX_PARSE || e->kind == PX_PARSE_FAKE) && e->name && c &&
	    prep_names_get(&c->prep, e->name) == e->stmt)
		prep_names_del(&c->prep, &ctx->prep, e->name);
}

/* PostgreSQL's 42P05 for the client's name instead of the server-side one. */
static bool rename_dup_error(struct server *s, const uint8_t *msg, uint32_t len,
                             const char *client_name)
{
	struct proto_error e;
	if (!proto_parse_error(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN, &e) || !e.sqlstate ||
	    strcmp(e.sqlstate, "42P05") != 0)
		return false;
	char text[512];
	snprintf(text, sizeof(text), "prepared statement \"%s\" already exists", client_name);
	if (!s->client)
		return false;
	struct pbuf out = {0};
	client_own_error(s->client, "ERROR", "42P05", text, &out);
	bool ok = !out.oom;
	if (ok)
		io_write(&s->client->io, out.data, out.len);
	pbuf_free(&out);
	return ok;
}

/* True if the first Sync in the ring is its last entry: the client sent nothing after the
 * batch at the head, so a replay of it would come in its place. */
static bool batch_alone(const struct prep_ring *q)
{
	for (uint32_t i = 0; i < q->len; i++)
		if (q->v[(q->head + i) & (q->cap - 1)].kind == PX_SYNC)
			return i == q->len - 1;
	return false;
}

static enum prep_reply on_error(struct server *s, const uint8_t *msg, uint32_t len)
{
	struct prep_replay *r = &s->prep_replay;
	struct prep_expect_ent *h = prep_ring_head(&s->prep_ring);
	if (h->kind == PX_DEALLOC) {
		/* The Query stopped before these DEALLOCATEs ran. */
		do {
			not_done(s, h);
			drop_head(s);
		} while ((h = prep_ring_head(&s->prep_ring)) != NULL && h->kind == PX_DEALLOC);
		return PREP_R_PASS;
	}
	if (h->kind == PX_QUERY || h->kind == PX_SYNC)
		return PREP_R_PASS; /* an error inside a Query, or at Sync: ReadyForQuery follows */
	bool changed = (h->kind == PX_BIND || h->kind == PX_DESCRIBE) && h->stmt &&
	               prep_is_cached_plan_error(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN);
	bool recover = false;
	if (replay_armed(s)) {
		/* The batch's first message failed and its 'Z' will come without the client
		 * waiting for this error first (its Sync is sent with nothing after it, or not yet
		 * and no Flush asked for answers): hide it, keeping it in case the replay cannot
		 * happen after all. */
		recover = changed && h->stmt == r->stmt && s->client &&
		          (r->synced ? batch_alone(&s->prep_ring) : !r->flushed);
		if (recover) {
			pbuf_put(&r->error, msg, len);
			recover = !r->error.oom;
		}
		if (!recover) {
			release_held(s);
			replay_off(s);
		}
	}
	/* Every server re-prepares it before its next use. */
	if (changed)
		prep_stmt_changed(&s->prep_cache, h->stmt);
	bool renamed = !recover && h->kind == PX_PARSE_DUP && h->name &&
	               rename_dup_error(s, msg, len, h->name);
	not_done(s, h);
	drop_head(s);
	/* The server skips everything up to the Sync, and what the client sends until then. */
	while ((h = prep_ring_head(&s->prep_ring)) != NULL && h->kind != PX_SYNC) {
		not_done(s, h);
		drop_head(s);
	}
	if (!h)
		prep_ring_plain_off(&s->prep_ring, PREP_PLAIN_OFF_SKIP, true);
	if (recover) {
		r->state = PREP_REPLAY_RECOVERING;
		if (h) {
			/* Its 'Z' takes the full path (see the Sync in prep_client_message). */
			prep_ref(r->stmt);
			h->stmt = r->stmt;
		}
		return PREP_R_HIDE;
	}
	return renamed ? PREP_R_SENT : PREP_R_PASS;
}

/* The ReadyForQuery of a batch whose 0A000 was hidden. */
static enum prep_reply on_recovering_ready(struct server *s, const uint8_t *msg, uint32_t len)
{
	struct prep_replay *r = &s->prep_replay;
	struct prep_expect_ent *h = prep_ring_head(&s->prep_ring);
	char status = len > PROTO_HEADER_LEN ? (char)msg[PROTO_HEADER_LEN] : 'I';
	bool alone = h->kind == PX_SYNC && s->prep_ring.len == 1;
	if (h->kind == PX_SYNC)
		drop_head(s);
	if (alone && status == 'I' && s->client && r->synced) {
		r->state = PREP_REPLAY_DUE; /* prep_replay_run, after this pump */
		return PREP_R_HIDE;
	}
	/* The client sent more meanwhile, which the replay would come after: PostgreSQL's error
	 * after all, then this ReadyForQuery. */
	release_held(s);
	struct pbuf err = r->error;
	r->error = (struct pbuf){0};
	replay_off(s);
	r->error = err;
	return PREP_R_ERROR_FIRST;
}

enum prep_reply prep_server_reply(struct server *s, char type, const uint8_t *msg, uint32_t len,
                                  bool whole)
{
	struct prep_expect_ent *h = prep_ring_head(&s->prep_ring);
	if (!h)
		return PREP_R_PASS;
	/* The common case here: the BindComplete of a named statement. */
	if (type == '2' && h->kind == PX_BIND && whole) {
		if (replay_armed(s) && h->stmt == s->prep_replay.stmt)
			replay_off(s); /* bound: the batch will not be replayed */
		drop_head(s);
		return PREP_R_PASS;
	}
	bool hide = false;
	switch (type) {
	case '1':
	case '2':
	case '3':
	case 't':
	case 'T':
	case 'n':
	case 'C':
	case 'I':
	case 's':
	case 'Z':
	case 'E':
		/* Replies that end a message's answer: looked at once, whole. */
		if (!whole)
			return PREP_R_NEED_WHOLE;
		break;
	default:
		return PREP_R_PASS;
	}
	bool first = replay_armed(s) && h->stmt && h->stmt == s->prep_replay.stmt;
	switch (type) {
	case '1':
		if (h->kind != PX_PARSE && h->kind != PX_PARSE_HIDE && h->kind != PX_PARSE_DUP)
			break;
		hide = h->kind == PX_PARSE_HIDE;
		drop_head(s);
		break;
	case '2':
		if (h->kind != PX_BIND)
			break;
		if (first)
			replay_off(s); /* bound: the batch will not be replayed */
		drop_head(s);
		break;
	case '3':
		if (h->kind != PX_CLOSE && h->kind != PX_CLOSE_HIDE)
			break;
		hide = h->kind == PX_CLOSE_HIDE;
		drop_head(s);
		break;
	case 't':
		/* The first Describe's ParameterDescription comes before its error, if any: held
		 * until the RowDescription shows there is none. */
		if (first && h->kind == PX_DESCRIBE) {
			pbuf_put(&s->prep_replay.held, msg, len);
			if (!s->prep_replay.held.oom)
				return PREP_R_HIDE;
			replay_off(s);
		}
		break;
	case 'T':
	case 'n':
		if (h->kind != PX_DESCRIBE)
			break;
		if (first) {
			release_held(s);
			replay_off(s);
		}
		drop_head(s);
		break;
	case 'C':
		if (h->kind == PX_EXECUTE)
			drop_head(s);
		else if (h->kind == PX_DEALLOC && h->count > 0)
			h->count--; /* an earlier statement of its Query */
		else if (h->kind == PX_DEALLOC)
			drop_head(s); /* it ran: the name is gone on PostgreSQL too */
		break;
	case 'I':
	case 's':
		if (h->kind == PX_EXECUTE)
			drop_head(s);
		break;
	case 'Z':
		if (s->prep_replay.state == PREP_REPLAY_RECOVERING)
			return on_recovering_ready(s, msg, len);
		if (replay_armed(s)) {
			release_held(s);
			replay_off(s);
		}
		while (h && h->kind == PX_DEALLOC) { /* not expected: a tag went missing */
			not_done(s, h);
			drop_head(s);
			h = prep_ring_head(&s->prep_ring);
		}
		if (h && (h->kind == PX_SYNC || h->kind == PX_QUERY))
			drop_head(s);
		break;
	case 'E':
		return on_error(s, msg, len);
	}
	return hide ? PREP_R_HIDE : PREP_R_PASS;
}

bool prep_fakes_ready(struct server *s)
{
	struct prep_expect_ent *h = prep_ring_head(&s->prep_ring);
	return h && (h->kind == PX_PARSE_FAKE || h->kind == PX_CLOSE_FAKE);
}

void prep_emit_fakes(struct server *s)
{
	emit_fakes(s);
}

void prep_server_forget_all(struct server *s)
{
	prep_cache_clear(&s->prep_cache, &s->ctx->prep);
	/* The client that ran it loses its names, as it would on PostgreSQL. */
	if (s->client && s->state == SERVER_ACTIVE)
		prep_names_clear(&s->client->prep, &s->ctx->prep);
}

__attribute__((noinline, cold)) static void unlink_pending(struct server *s)
{
	bool unsure = false;
	struct prep_expect_ent *h;
	replay_off(s);
	prep_ring_plain_off(&s->prep_ring, PREP_PLAIN_OFF_SKIP, false);
	while ((h = prep_ring_head(&s->prep_ring)) != NULL) {
		/* A Parse or Close of a server-side statement whose reply nobody will read may or
		 * may not have happened (pgtide's own empty statements for DEALLOCATE don't
		 * matter: they are Closed before each use). */
		if (h->kind == PX_PARSE || h->kind == PX_PARSE_DUP ||
		    ((h->kind == PX_PARSE_HIDE || h->kind == PX_CLOSE_HIDE) && h->stmt))
			unsure = true;
		drop_head(s);
	}
	/* The cache cannot say what the server has, so the server is not reused. */
	if (unsure) {
		prep_cache_clear(&s->prep_cache, &s->ctx->prep);
		s->close_when_idle = true;
	}
}

void prep_server_unlink(struct server *s)
{
	/* At every release: usually nothing in flight, nothing kept. */
	if (s->prep_ring.len | s->prep_replay.state | s->prep_ring.plain_off)
		unlink_pending(s);
}

void prep_server_free(struct server *s)
{
	prep_replay_free(&s->prep_replay, &s->ctx->prep);
	prep_ring_free(&s->prep_ring, &s->ctx->prep);
	prep_cache_clear(&s->prep_cache, &s->ctx->prep);
}

void prep_client_free(struct client *c)
{
	prep_names_clear(&c->prep, &c->ctx->prep);
}
