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
	if (!st && !name && q->len < q->cap) { /* the common case: a plain entry, room left */
		struct prep_expect_ent *e = &q->v[(q->head + q->len) & (q->cap - 1)];
		e->kind = kind;
		e->stmt = NULL;
		e->name = NULL;
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

/* Records that the server gets st, closing the least recently used statement first if the
 * cache is full (that Close goes into b, its reply hidden). False on OOM. */
static bool cache_insert(struct server *s, struct prep_stmt *st, struct pbuf *b)
{
	bool oom;
	struct prep_stmt *old = prep_cache_add(&s->prep_cache, st,
	                                       (uint32_t)s->ctx->cfg.max_prepared_statements, &oom);
	if (oom)
		return false;
	if (!old)
		return true;
	put_close(b, old->name);
	prep_unref(&s->ctx->prep, old);
	return push(s, PX_CLOSE_HIDE, NULL, NULL);
}

/* Makes sure the server has st: if not, a Parse for it goes into b (its reply hidden). */
static bool ensure_prepared(struct server *s, struct prep_stmt *st, struct pbuf *b)
{
	if (prep_cache_has(&s->prep_cache, st))
		return true;
	if (!cache_insert(s, st, b))
		return false;
	put_parse(b, st->name, st->query, st->query_len, st->types, st->n_types);
	return push(s, PX_PARSE_HIDE, st, NULL);
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
	if (prep_cache_has(&s->prep_cache, st)) {
		/* The server has it already: answer ParseComplete ourselves, in its place. */
		bool ok = push(s, PX_PARSE_FAKE, st, p.name);
		prep_unref(&ctx->prep, st);
		if (!ok)
			goto fail;
		pbuf_free(&b);
		emit_fakes(s);
		return PUMP_DROP;
	}
	if (!cache_insert(s, st, &b)) {
		prep_unref(&ctx->prep, st);
		goto fail;
	}
	put_parse(&b, st->name, p.query, p.query_len, p.types, p.n_types);
	bool ok = push(s, PX_PARSE, st, p.name);
	prep_unref(&ctx->prep, st);
	return send_instead(c, s, &b, ok);
fail:
	pbuf_free(&b);
	return oom(c);
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
			st->pin_probe = pin_text_wants_probe(st->query, st->query_len) ? 2 : 1;
		if (st->pin_probe == 2)
			s->probe_wanted = true;
	}
	struct pbuf b = {0};
	if (!ensure_prepared(s, st, &b))
		return send_instead(c, s, &b, false);
	size_t off = proto_msg_begin(&b, msg[0]);
	pbuf_put(&b, body, name_off);
	pbuf_put_str(&b, st->name);
	pbuf_put(&b, nul + 1, (size_t)(body + blen - (nul + 1)));
	proto_msg_end(&b, off);
	return send_instead(c, s, &b, push(s, kind, NULL, NULL));
}

/* DEALLOCATE [PREPARE] name | ALL, DISCARD ALL as a whole simple Query. */
static enum pump_action on_query(struct client *c, struct server *s, const uint8_t *msg,
                                 uint32_t len)
{
	const char *sql = (const char *)msg + PROTO_HEADER_LEN;
	size_t n = len - PROTO_HEADER_LEN;
	if (n > 0 && sql[n - 1] == 0)
		n--;
	const char *p = sql, *end = sql + n;
	char name[SQLSCAN_NAME_MAX + 1];
	struct prep_stmt *st = NULL;
	if (c->prep.n && n >= 7 && sqlscan_single(sql, n)) {
		if (sqlscan_word(&p, end, "deallocate")) {
			/* DEALLOCATE ALL and DISCARD ALL clear the client's names when the server
			 * reports them done (prep_server_forget_all). */
			(void)sqlscan_word(&p, end, "prepare");
			if (!sqlscan_word(&p, end, "all") && sqlscan_ident(&p, end, name) &&
			    c->txn.status != 'E') {
				/* In a failed transaction PostgreSQL refuses it (25P02): the
				 * server says so. */
				p = sqlscan_skip_space(p, end);
				if (p == end ||
				    (*p == ';' && sqlscan_skip_space(p + 1, end) == end))
					st = prep_names_get(&c->prep, name);
			}
		}
	}
	if (!st)
		return push(s, PX_QUERY, NULL, NULL) ? PUMP_FORWARD : oom(c);
	/* The client's name goes, and the server statement with it (DEALLOCATE of its
	 * server-side name, prepared first where missing), so the reply is PostgreSQL's. */
	struct pbuf b = {0};
	prep_ref(st);
	prep_names_del(&c->prep, &c->ctx->prep, name);
	bool ok = ensure_prepared(s, st, &b) && push(s, PX_QUERY, NULL, NULL);
	if (ok) {
		size_t off = proto_msg_begin(&b, 'Q');
		pbuf_put(&b, "DEALLOCATE ", 11);
		pbuf_put_str(&b, st->name);
		proto_msg_end(&b, off);
		prep_cache_del(&s->prep_cache, &c->ctx->prep, st);
	}
	prep_unref(&c->ctx->prep, st);
	return send_instead(c, s, &b, ok);
}

enum pump_action prep_client_message(struct client *c, struct server *s, char type,
                                     const uint8_t *msg, uint32_t len, bool whole)
{
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
			/* The client's name goes; the server keeps the statement for others. */
			prep_names_del(&c->prep, &c->ctx->prep, name);
			if (!push(s, PX_CLOSE_FAKE, NULL, NULL))
				return oom(c);
			emit_fakes(s);
			return PUMP_DROP;
		}
		return push(s, PX_CLOSE, NULL, NULL) ? PUMP_FORWARD : oom(c);
	}
	case 'E':
		return push(s, PX_EXECUTE, NULL, NULL) ? PUMP_FORWARD : oom(c);
	case 'S':
		return push(s, PX_SYNC, NULL, NULL) ? PUMP_FORWARD : oom(c);
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

/* A Parse that did not happen: forget what it would have made. */
static void parse_undone(struct server *s, struct prep_expect_ent *e)
{
	struct pt_ctx *ctx = s->ctx;
	if ((e->kind == PX_PARSE || e->kind == PX_PARSE_HIDE) && e->stmt)
		prep_cache_del(&s->prep_cache, &ctx->prep, e->stmt);
	if ((e->kind == PX_PARSE || e->kind == PX_PARSE_FAKE) && e->name && s->client &&
	    prep_names_get(&s->client->prep, e->name) == e->stmt)
		prep_names_del(&s->client->prep, &ctx->prep, e->name);
}

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

enum prep_reply prep_server_reply(struct server *s, char type, const uint8_t *msg, uint32_t len,
                                  bool whole)
{
	struct prep_expect_ent *h = prep_ring_head(&s->prep_ring);
	if (!h)
		return PREP_R_PASS;
	bool hide = false;
	switch (type) {
	case '1':
	case '2':
	case '3':
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
	switch (type) {
	case '1':
		if (h->kind != PX_PARSE && h->kind != PX_PARSE_HIDE && h->kind != PX_PARSE_DUP)
			break;
		hide = h->kind == PX_PARSE_HIDE;
		drop_head(s);
		break;
	case '2':
		if (h->kind == PX_BIND)
			drop_head(s);
		break;
	case '3':
		if (h->kind != PX_CLOSE && h->kind != PX_CLOSE_HIDE)
			break;
		hide = h->kind == PX_CLOSE_HIDE;
		drop_head(s);
		break;
	case 'T':
	case 'n':
		if (h->kind == PX_DESCRIBE)
			drop_head(s);
		break;
	case 'C':
	case 'I':
	case 's':
		if (h->kind == PX_EXECUTE)
			drop_head(s);
		break;
	case 'Z':
		if (h->kind == PX_SYNC || h->kind == PX_QUERY)
			drop_head(s);
		break;
	case 'E': {
		if (h->kind == PX_QUERY || h->kind == PX_SYNC)
			break; /* an error inside a Query, or at Sync: ReadyForQuery follows */
		bool renamed = h->kind == PX_PARSE_DUP && h->name &&
		               rename_dup_error(s, msg, len, h->name);
		parse_undone(s, h);
		drop_head(s);
		/* The server skips everything up to the Sync. */
		while ((h = prep_ring_head(&s->prep_ring)) != NULL && h->kind != PX_SYNC) {
			parse_undone(s, h);
			drop_head(s);
		}
		return renamed ? PREP_R_SENT : PREP_R_PASS;
	}
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

void prep_server_unlink(struct server *s)
{
	bool unsure = false;
	struct prep_expect_ent *h;
	while ((h = prep_ring_head(&s->prep_ring)) != NULL) {
		if (h->kind == PX_PARSE || h->kind == PX_PARSE_HIDE || h->kind == PX_PARSE_DUP)
			unsure = true;
		drop_head(s);
	}
	/* A Parse whose reply nobody will read may or may not have happened: the cache cannot
	 * say what the server has, so the server is not reused. */
	if (unsure) {
		prep_cache_clear(&s->prep_cache, &s->ctx->prep);
		s->close_when_idle = true;
	}
}

void prep_server_free(struct server *s)
{
	prep_ring_free(&s->prep_ring, &s->ctx->prep);
	prep_cache_clear(&s->prep_cache, &s->ctx->prep);
}

void prep_client_free(struct client *c)
{
	prep_names_clear(&c->prep, &c->ctx->prep);
}
