/*
 * Server connections: libpq connects (every auth method, TLS, multi-host) without blocking the
 * loop; at CONNECTION_OK pgtide takes over the socket and speaks the protocol itself.
 */
#include "pgtide/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "pgtide/cancel.h"
#include "pgtide/client.h"
#include "pgtide/log.h"
#include "pgtide/pin.h"
#include "pgtide/pgtide.h"
#include "pgtide/pool.h"
#include "pgtide/prepared_relay.h"
#include "pgtide/tls.h"

static void server_on_readable(void *arg);
static enum pump_action server_on_message(void *arg, char type, const uint8_t *msg, uint32_t len,
                                          bool whole);
static void server_on_bad_frame(void *arg);
static void server_on_end(void *arg, enum io_end why, int err);

static const struct io_ops server_io_ops = {
        .on_readable = server_on_readable,
        .on_message = server_on_message,
        .on_bad_frame = server_on_bad_frame,
        .on_end = server_on_end,
        .on_drained = NULL,
};

static const char *const state_names[] = {
        "connecting", "idle", "sync", "active", "reset", "drain", "closed",
};

/* PostgreSQL messages are at most 1 GB; anything larger from a server is corruption. */
#define SERVER_MAX_MSG 0x40000000u

#define SLOG(level, s, fmt, ...)                                                                   \
	log_msg(level, "%s/%s s%llu pid=%u " fmt, (s)->pool->db_name, (s)->pool->user_name,        \
	        (unsigned long long)(s)->id, (s)->backend_pid, ##__VA_ARGS__)

/* ---- state and lists ---- */

static struct server_list *list_of(struct server *s, enum server_state st, int **count)
{
	struct pool *p = s->pool;
	switch (st) {
	case SERVER_CONNECTING:
		*count = &p->n_connecting;
		return &p->connecting;
	case SERVER_IDLE:
		*count = &p->n_idle;
		return &p->idle;
	case SERVER_SYNC:
	case SERVER_ACTIVE:
		*count = &p->n_active;
		return &p->active;
	case SERVER_RESET:
	case SERVER_DRAIN:
		*count = &p->n_used;
		return &p->used;
	case SERVER_CLOSED:
		break;
	}
	*count = NULL;
	return NULL;
}

void server_set_state(struct server *s, enum server_state st)
{
	if (s->state == st)
		return;
	if (s->state == SERVER_CLOSED) {
		log_error("server s%llu: refusing move from closed to %s",
		          (unsigned long long)s->id, state_names[st]);
		return;
	}
	if ((st == SERVER_SYNC || st == SERVER_ACTIVE) != (s->client != NULL) &&
	    st != SERVER_CLOSED) {
		log_error("server s%llu: state %s with%s a client", (unsigned long long)s->id,
		          state_names[st], s->client ? "" : "out");
	}
	int *count;
	struct server_list *old = list_of(s, s->state, &count);
	if (old) {
		TAILQ_REMOVE(old, s, link);
		(*count)--;
	}
	struct server_list *nl = list_of(s, st, &count);
	if (nl) {
		/* Idle servers: most recently used first; pool.c hands out the first (the
		 * warmest) or, under server_round_robin, the last. */
		if (st == SERVER_IDLE)
			TAILQ_INSERT_HEAD(nl, s, link);
		else
			TAILQ_INSERT_TAIL(nl, s, link);
		(*count)++;
	} else {
		TAILQ_INSERT_TAIL(&s->ctx->zombie_servers, s, link);
	}
	s->state = st;
	/* Rows for the linked client pass straight through (on_message_active forwards them). */
	s->io.pass_rows = st == SERVER_ACTIVE;
	if (st == SERVER_IDLE)
		s->idle_since = pt_now();
}

/* ---- closing ---- */

void server_close(struct server *s, const char *why)
{
	if (s->state == SERVER_CLOSED)
		return;
	struct pt_ctx *ctx = s->ctx;
	struct pool *p = s->pool;
	SLOG(LOG_LEVEL_LOG, s, "closing server connection: %s", why);
	/* A backend busy with a query does not notice the socket closing: cancel it first. */
	if (s->pg && s->rfq_pending > 0 && (s->state == SERVER_ACTIVE || s->state == SERVER_DRAIN))
		cancel_send(s->pg, NULL);

	struct client *c = s->client;
	/* Read before the unlink below: client_server_lost no longer sees s. */
	bool fatal_forwarded = s->got_fatal;
	bool was_connecting = s->state == SERVER_CONNECTING;
	if (c) {
		io_flush_pending(&s->io);
		s->client = NULL;
		c->server = NULL;
		io_unlink(&c->io, &s->io);
	}
	server_set_state(s, SERVER_CLOSED);
	if (s->poll_ev) {
		event_free(s->poll_ev);
		s->poll_ev = NULL;
	}
	if (s->timer) {
		event_free(s->timer);
		s->timer = NULL;
	}
	if (s->cancel_wait_ev) {
		event_free(s->cancel_wait_ev);
		s->cancel_wait_ev = NULL;
	}
	if (s->io_ready)
		io_close(&s->io);
	if (s->pg) {
		/* Non-blocking so that PQfinish's Terminate never waits on the loop. */
		PQsetnonblocking(s->pg, 1);
		PQfinish(s->pg);
		s->pg = NULL;
	}
	if (c && c->state != CLIENT_CLOSED) {
		c->server = NULL;
		client_server_lost(c, fatal_forwarded, "08006",
		                   "server closed the connection unexpectedly");
	}
	(void)was_connecting;
	pool_kick(p);
	pt_schedule_reaper(ctx);
}

void server_free(struct server *s)
{
	for (int i = 0; i < s->n_restore; i++)
		free(s->restore_names[i]);
	for (int i = 0; i < s->n_custom; i++)
		free(s->custom_names[i]);
	params_free(&s->params);
	params_free(&s->probe_settings);
	cancel_ticket_release(s->cancel_ticket);
	prep_server_free(s);
	free(s);
}

/* ---- connecting ---- */

static void connect_poll(evutil_socket_t fd, short what, void *arg);
static void clear_restores(struct server *s);
static void clear_customs(struct server *s);
static void probe_row(struct server *s, const uint8_t *body, uint32_t len);

/*
 * libpq with PQERRORS_VERBOSE writes "FATAL:  3D000: database "x" does not exist": take the
 * SQLSTATE and message from that, so the client gets PostgreSQL's own error. Anything else
 * (refused, unreachable, timeout) is 08006 with libpq's first line.
 */
static void parse_connect_error(const char *err, char sqlstate[6], char *msg, size_t n)
{
	static const char *const sev[] = {"FATAL:  ", "ERROR:  ", "PANIC:  "};
	for (size_t i = 0; i < 3; i++) {
		const char *p = strstr(err, sev[i]);
		if (!p)
			continue;
		p += strlen(sev[i]);
		if (strlen(p) > 7 && p[5] == ':' && p[6] == ' ') {
			memcpy(sqlstate, p, 5);
			sqlstate[5] = 0;
			p += 7;
		} else {
			strcpy(sqlstate, "08006");
		}
		size_t l = strcspn(p, "\n");
		snprintf(msg, n, "%.*s", (int)l, p);
		return;
	}
	strcpy(sqlstate, "08006");
	size_t l = strcspn(err, "\n");
	snprintf(msg, n, "%.*s", (int)l, err);
	if (!msg[0])
		snprintf(msg, n, "could not connect to server");
}

static void connect_failed(struct server *s, const char *sqlstate, const char *msg)
{
	struct pool *p = s->pool;
	SLOG(LOG_LEVEL_WARNING, s, "server connection failed: %s (%s)", msg, sqlstate);
	server_close(s, "connect failed");
	pool_server_connect_failed(p, sqlstate, msg);
}

/*
 * libpq failed: PostgreSQL's error, or pgtide out of descriptors ("could not create socket: Too
 * many open files"), which says nothing about the server and must not start server_login_retry.
 */
static void connect_failed_libpq(struct server *s, const char *err)
{
	char sqlstate[6], msg[512];
	parse_connect_error(err, sqlstate, msg, sizeof(msg));
	/* strerror's text in pgtide's own locale, as libpq wrote it. */
	bool no_fd = strstr(err, strerror(EMFILE)) || strstr(err, strerror(ENFILE));
	if (!no_fd) {
		connect_failed(s, sqlstate, msg);
		return;
	}
	struct pool *p = s->pool;
	SLOG(LOG_LEVEL_WARNING, s, "server connection failed: %s (raise the open-files limit)",
	     msg);
	server_close(s, "out of file descriptors");
	pool_server_connect_no_fd(p, msg);
}

static void connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	(void)fd;
	(void)what;
	if (s->state == SERVER_CONNECTING) {
		connect_failed(s, "08006", "could not connect to server: timeout expired");
	} else if (s->state == SERVER_DRAIN) {
		server_close(s, "drain timed out (cancel_wait_timeout)");
	}
}

static void notice_during_connect(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res; /* notices while logging in (e.g. from an event trigger) are not the client's */
}

static bool arm_poll(struct server *s, short what)
{
	if (s->poll_ev)
		event_free(s->poll_ev);
	/* libpq may switch sockets (next host, sslmode retry) with the same fd number: always new.
	 */
	s->poll_ev = event_new(s->ctx->base, PQsocket(s->pg), what, connect_poll, s);
	return s->poll_ev && event_add(s->poll_ev, NULL) == 0;
}

/*
 * tcp_socket_buffer on a TCP server socket. libpq has no keyword for it, so it is set once the
 * login is done: the few bytes of the login ran with the kernel's sizes, the sessions' rows run
 * with these. (Keepalives and tcp_user_timeout went to libpq as keywords, pool.c.)
 */
static void tune_socket(struct server *s, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int bytes = s->ctx->cfg.tcp_socket_buffer;
	if (bytes <= 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		return;
	if (!io_set_socket_buffers(fd, bytes))
		SLOG(LOG_LEVEL_WARNING, s, "tcp_socket_buffer: %s", strerror(errno));
}

static void take_over(struct server *s)
{
	struct pt_ctx *ctx = s->ctx;
	PGconn *pg = s->pg;
	size_t n_names;
	const char *const *names = params_reported_names(&n_names);
	for (size_t i = 0; i < n_names; i++) {
		const char *v = PQparameterStatus(pg, names[i]);
		if (v)
			params_set(&s->params, names[i], v);
	}
	s->backend_pid = (uint32_t)PQbackendPID(pg);
	s->txn_status = 'I';
	tune_socket(s, PQsocket(pg));
	if (!io_init(&s->io, ctx, PQsocket(pg), &server_io_ops, s)) {
		connect_failed(s, "53200", "out of memory");
		return;
	}
	s->io_ready = true;
	s->io.max_msg = SERVER_MAX_MSG;
	/* libpq made the TLS connection: keep speaking through its SSL object (it owns it). */
	if (PQsslInUse(pg) && !tls_adopt(&s->io, PQsslStruct(pg, "OpenSSL"))) {
		connect_failed(s, "08006", "could not take over the TLS connection");
		return;
	}
	if (s->timer) {
		event_free(s->timer);
		s->timer = NULL;
	}
	if (io_uses_tls(&s->io)) {
		char tls[128];
		SLOG(LOG_LEVEL_LOG, s, "new server connection tls=%s",
		     tls_describe(&s->io, tls, sizeof(tls)));
	} else {
		SLOG(LOG_LEVEL_LOG, s, "new server connection");
	}
	pool_server_connected(s->pool, s);
}

static void connect_poll(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	(void)fd;
	(void)what;
	switch (PQconnectPoll(s->pg)) {
	case PGRES_POLLING_READING:
		if (!arm_poll(s, EV_READ))
			connect_failed(s, "53200", "out of memory");
		return;
	case PGRES_POLLING_WRITING:
		if (!arm_poll(s, EV_WRITE))
			connect_failed(s, "53200", "out of memory");
		return;
	case PGRES_POLLING_OK:
		event_free(s->poll_ev);
		s->poll_ev = NULL;
		take_over(s);
		return;
	case PGRES_POLLING_FAILED:
	default:
		connect_failed_libpq(s, PQerrorMessage(s->pg));
		return;
	}
}

struct server *server_connect(struct pool *pool)
{
	struct pt_ctx *ctx = pool->ctx;
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ctx = ctx;
	s->pool = pool;
	s->id = ++ctx->next_conn_id;
	s->created_at = pt_now();
	s->state = SERVER_CLOSED; /* set_state below puts it on the connecting list */
	s->io.fd = -1;

	s->pg = PQconnectStartParams((const char *const *)pool->conn_keys,
	                             (const char *const *)pool->conn_values, 0);
	s->state = SERVER_CONNECTING;
	TAILQ_INSERT_TAIL(&pool->connecting, s, link);
	pool->n_connecting++;
	if (!s->pg || PQstatus(s->pg) == CONNECTION_BAD) {
		connect_failed_libpq(s, s->pg ? PQerrorMessage(s->pg) : "out of memory");
		return NULL;
	}
	PQsetnonblocking(s->pg, 1);
	PQsetErrorVerbosity(s->pg, PQERRORS_VERBOSE);
	PQsetNoticeReceiver(s->pg, notice_during_connect, s);
	if (ctx->cfg.server_connect_timeout > 0) {
		s->timer = evtimer_new(ctx->base, connect_timeout, s);
		struct timeval tv = {(time_t)(ctx->cfg.server_connect_timeout / 1000000),
		                     (suseconds_t)(ctx->cfg.server_connect_timeout % 1000000)};
		if (s->timer)
			evtimer_add(s->timer, &tv);
	}
	/* Before the first PQconnectPoll, behave as if it had asked for WRITING. */
	if (!arm_poll(s, EV_WRITE)) {
		connect_failed(s, "53200", "out of memory");
		return NULL;
	}
	return s;
}

/* ---- pgtide's own queries ---- */

static void send_query(struct server *s, const char *sql)
{
	struct pbuf *b = &s->ctx->scratch;
	pbuf_reset(b);
	proto_build_query(b, sql);
	io_write(&s->io, b->data, b->len);
	pbuf_reset(b);
	s->internal_pending++;
}

static bool resets_all_params(const char *q)
{
	return q && (strcasestr(q, "DISCARD ALL") || strcasestr(q, "RESET ALL"));
}

static void cancel_wait_cb(evutil_socket_t fd, short what, void *arg);
static void start_reset(struct server *s);

/*
 * A cancel request sent for s and still on its way would cancel whatever s runs when it lands:
 * pgtide's ROLLBACK or reset query (which then fails, and s is closed for it) or, back in the
 * pool, the next client's statement. While one is, s waits in RESET (cancel_wait_cb checks
 * every 2 ms) and this returns true; after cancel_wait_timeout s is closed instead (also true).
 */
static bool wait_for_cancel(struct server *s)
{
	if (!s->cancel_ticket || cancel_ticket_done(s->cancel_ticket))
		return false;
	int64_t limit = s->ctx->cfg.cancel_wait_timeout > 0 ? s->ctx->cfg.cancel_wait_timeout
	                                                    : 10 * 1000000;
	if (pt_now() - s->cancel_sent_at > limit) {
		server_close(s, "a cancel request for it did not complete");
		return true;
	}
	if (s->state != SERVER_RESET)
		server_set_state(s, SERVER_RESET); /* waits there (cancel_wait_cb) */
	if (!s->cancel_wait_ev)
		s->cancel_wait_ev = evtimer_new(s->ctx->base, cancel_wait_cb, s);
	struct timeval tv = {0, 2000};
	if (!s->cancel_wait_ev || evtimer_add(s->cancel_wait_ev, &tv) != 0)
		server_close(s, "out of memory waiting for a cancel");
	return true;
}

/* The reset is over: the server goes back to the pool once no cancel for it is on its way. */
static void reset_done(struct server *s)
{
	if (wait_for_cancel(s))
		return;
	cancel_ticket_release(s->cancel_ticket);
	s->cancel_ticket = NULL;
	server_set_state(s, SERVER_IDLE);
	pool_kick(s->pool);
}

static void cancel_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	(void)fd;
	(void)what;
	if (s->state != SERVER_RESET || s->internal_pending != 0)
		return;
	if (!s->reset_deferred) {
		reset_done(s);
	} else if (!wait_for_cancel(s)) {
		s->reset_deferred = false;
		if (s->close_when_idle)
			server_close(s, "marked for closing");
		else
			start_reset(s);
	}
}

/* A query of the reset: the server is in RESET from the first one until their replies are in. */
static void reset_query(struct server *s, const char *q)
{
	if (s->state != SERVER_RESET)
		server_set_state(s, SERVER_RESET);
	send_query(s, q);
}

/* After the client is gone and nothing is in flight: ROLLBACK if needed, then the reset query.
 * With nothing to undo the server goes straight back to the pool, never entering RESET. */
static void start_reset(struct server *s)
{
	struct config *cfg = &s->ctx->cfg;
	if (wait_for_cancel(s)) {
		s->reset_deferred = s->state == SERVER_RESET; /* not if it was closed */
		return;
	}
	if (s->txn_status != 'I')
		reset_query(s, "ROLLBACK");
	bool session = s->pool->pool_mode == POOL_MODE_SESSION;
	const char *q = cfg->server_reset_query;
	bool reset_all = false;
	if (q && q[0] && (session || cfg->server_reset_query_always)) {
		reset_query(s, q);
		reset_all = resets_all_params(q);
		/* DISCARD ALL and DEALLOCATE drop pgtide's named statements too. */
		if (strcasestr(q, "discard") || strcasestr(q, "deallocate"))
			prep_server_forget_all(s);
	}
	if ((s->state_kinds || s->probe_wanted) && !reset_all) {
		/* Session state (pin.h) the client left, or may have left: DISCARD ALL drops every
		 * kind of it (advisory locks, LISTEN, temporary tables, cursors, SQL PREPAREs, SET
		 * ROLE) and pgtide's named statements with it. */
		reset_query(s, "DISCARD ALL");
		prep_server_forget_all(s);
		reset_all = true;
	}
	s->state_kinds = 0;
	s->probe_wanted = false;
	s->probing = false; /* a probe its client left during has been drained */
	params_free(&s->probe_settings);
	if (s->session_dirty && !reset_all) {
		/* A client changed the session (SET, RESET, DISCARD ALL): back to the defaults. */
		reset_query(s, "RESET ALL");
		reset_all = true;
	}
	if (reset_all) {
		/* RESET ALL drops what pgtide SET; reported values come back as ParameterStatus. */
		for (size_t i = 0; i < s->params.n;) {
			if (s->params.v[i].set_by_us)
				params_remove(&s->params, s->params.v[i].name);
			else
				i++;
		}
		s->synced_sig = 0;
	}
	s->session_dirty = false;
	if (s->internal_pending == 0)
		reset_done(s); /* the common case in transaction pooling: nothing to undo */
	else if (s->state != SERVER_RESET)
		server_set_state(s, SERVER_RESET);
}

/*
 * Brings s's parameters in line with c's: sends the hidden set_config/RESET query and enters
 * SYNC (true), or finds nothing to change and records that s matches c (false).
 */
static bool start_sync(struct server *s, struct client *c)
{
	struct pbuf sql = {0};
	size_t n = params_sync_sql(&c->params->p, &s->params, &sql);
	bool started = n > 0 && !sql.oom;
	if (started) {
		pbuf_put_u8(&sql, 0);
		server_set_state(s, SERVER_SYNC);
		send_query(s, (const char *)sql.data);
	} else {
		s->synced_sig = c->params->sig;
	}
	pbuf_free(&sql);
	return started;
}

void server_link(struct server *s, struct client *c)
{
	s->client = c;
	c->server = s;
	io_link(&s->io, &c->io);
	s->n_linked++;
	s->rfq_pending = 0;
	s->simple_sent = false;
	s->saw_rowdesc = false;
	s->unsynced = false;
	s->copy_in = false;
	s->syncs_since_execute = 0;
	s->got_fatal = false;
	s->sync_failed = false;

	if (log_debug_enabled())
		SLOG(LOG_LEVEL_DEBUG, s, "linked to client c%llu", (unsigned long long)c->id);
	s->benign_sets = 0;
	clear_restores(s);
	clear_customs(s);
	s->probe_wanted = false;
	s->holding_ready = false;
	/* The common case: the server is already in exactly this client's parameter state. */
	if (!s->session_dirty && s->synced_sig != 0 && s->synced_sig == c->params->sig) {
		server_set_state(s, SERVER_ACTIVE);
		return;
	}
	if (!start_sync(s, c))
		server_set_state(s, SERVER_ACTIVE);
}

void server_release(struct server *s, bool client_gone)
{
	struct client *c = s->client;
	if (s->state == SERVER_CLOSED)
		return;
	bool mid_message = c && c->io.stream_left > 0 && c->io.stream_action == PUMP_FORWARD;
	if (log_debug_enabled())
		SLOG(LOG_LEVEL_DEBUG, s,
		     "released by client c%llu (%s, status %c, %d replies pending)",
		     c ? (unsigned long long)c->id : 0ull,
		     client_gone ? "client gone" : "client done",
		     s->txn_status ? s->txn_status : '?', s->rfq_pending);
	if (c) {
		io_flush_pending(&c->io);
		prep_server_unlink(s);
		s->client = NULL;
		c->server = NULL;
		io_unlink(&c->io, &s->io);
	}
	if (mid_message) {
		server_close(s, "client left in the middle of a message");
		return;
	}
	if (s->close_when_idle && s->rfq_pending == 0 && s->internal_pending == 0 && !s->copy_in &&
	    !s->unsynced) {
		server_close(s, "marked for closing");
		return;
	}
	int copy_failed = 0;
	if (s->copy_in) {
		/* CopyFail ends COPY FROM STDIN; the server answers ErrorResponse, ReadyForQuery.
		 */
		copy_failed = 1;
		struct pbuf *b = &s->ctx->scratch;
		pbuf_reset(b);
		size_t off = proto_msg_begin(b, 'f');
		pbuf_put_str(b, "client disconnected during COPY");
		proto_msg_end(b, off);
		io_write(&s->io, b->data, b->len);
		pbuf_reset(b);
		s->copy_in = false;
	}
	if (s->unsynced) {
		/*
		 * The client left inside an extended-protocol batch. A plain Sync would COMMIT its
		 * implicit transaction: first make the batch fail (Execute of a portal that cannot
		 * exist; if the batch already failed the server discards it), so that the Sync
		 * rolls it back, as PostgreSQL does when the client disconnects.
		 */
		struct pbuf *b = &s->ctx->scratch;
		pbuf_reset(b);
		size_t off = proto_msg_begin(b, 'E');
		pbuf_put_str(b, "pgtide: client left before Sync");
		pbuf_put_u32(b, 0);
		proto_msg_end(b, off);
		off = proto_msg_begin(b, 'S');
		proto_msg_end(b, off);
		io_write(&s->io, b->data, b->len);
		pbuf_reset(b);
		s->unsynced = false;
		s->rfq_pending++;
	}
	if (s->rfq_pending > 0 || s->internal_pending > 0) {
		server_set_state(s, SERVER_DRAIN);
		/* Cancel what still runs; a COPY the CopyFail ends runs no more (a cancel would
		 * only race pgtide's ROLLBACK), unless more replies than its are awaited. */
		if (client_gone && s->rfq_pending > copy_failed) {
			SLOG(LOG_LEVEL_LOG, s,
			     "client left with a statement running: cancelling it");
			server_cancel_query(s);
		}
		int64_t t = s->ctx->cfg.cancel_wait_timeout;
		if (t <= 0)
			t = 10 * 1000000;
		if (!s->timer)
			s->timer = evtimer_new(s->ctx->base, connect_timeout, s);
		struct timeval tv = {(time_t)(t / 1000000), (suseconds_t)(t % 1000000)};
		if (s->timer)
			evtimer_add(s->timer, &tv);
		return;
	}
	start_reset(s);
}

/* An address as text and port; Unix sockets are "unix" (the port is libpq's). */
static void sock_text(const struct sockaddr_storage *ss, char *host, size_t n, int *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)n);
		*port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)n);
		*port = ntohs(in6->sin6_port);
	} else {
		snprintf(host, n, "unix");
	}
}

void server_addrs(const struct server *s, char *addr, size_t n, int *port, char *laddr, size_t ln,
                  int *lport)
{
	PGconn *pg = s->pg;
	int fd = pg ? PQsocket(pg) : -1;
	const char *pp = pg ? PQport(pg) : NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	*port = pp && pp[0] ? atoi(pp) : 0;
	*lport = 0;
	snprintf(addr, n, "%s", pg && PQhost(pg) ? PQhost(pg) : "");
	snprintf(laddr, ln, "%s", "");
	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		sock_text(&ss, addr, n, port);
	sl = sizeof(ss);
	if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		sock_text(&ss, laddr, ln, lport);
}

bool server_cancel_query(struct server *s)
{
	if (!s->pg)
		return false;
	if (s->cancel_ticket) {
		if (!cancel_ticket_done(s->cancel_ticket))
			return true; /* one is on its way already */
		cancel_ticket_release(s->cancel_ticket);
		s->cancel_ticket = NULL;
	}
	s->cancel_sent_at = pt_now();
	return cancel_send(s->pg, &s->cancel_ticket);
}

/* ---- relaying ---- */

static enum pump_action on_message_internal(struct server *s, char type, const uint8_t *msg,
                                            uint32_t len, bool whole)
{
	switch (type) {
	case 'Z':
		if (!whole)
			return PUMP_NEED_WHOLE;
		s->txn_status = len > PROTO_HEADER_LEN ? (char)msg[PROTO_HEADER_LEN] : 'I';
		if (s->state == SERVER_DRAIN && s->internal_pending == 0) {
			if (s->rfq_pending > 0)
				s->rfq_pending--;
		} else if (s->internal_pending > 0) {
			s->internal_pending--;
		}
		return PUMP_DROP;
	case 'E': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		struct proto_error e;
		if (!proto_parse_error(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN, &e))
			memset(&e, 0, sizeof(e));
		if (s->probing) {
			SLOG(LOG_LEVEL_WARNING, s, "session state probe failed: %s (%s)",
			     e.message ? e.message : "?", e.sqlstate ? e.sqlstate : "?");
			s->probe_failed = true;
			return PUMP_DROP;
		}
		if (s->state == SERVER_SYNC) {
			/* The client's parameters were refused; PostgreSQL would refuse the
			 * connection, so the client gets this error as FATAL. */
			if (!s->sync_failed) {
				s->sync_failed = true;
				snprintf(s->sync_sqlstate, sizeof(s->sync_sqlstate), "%s",
				         e.sqlstate ? e.sqlstate : "08P01");
				snprintf(s->sync_message, sizeof(s->sync_message), "%s",
				         e.message ? e.message : "invalid startup parameter");
			}
			return PUMP_DROP;
		}
		if (s->state == SERVER_RESET) {
			SLOG(LOG_LEVEL_WARNING, s, "reset query failed: %s (%s)",
			     e.message ? e.message : "?", e.sqlstate ? e.sqlstate : "?");
			s->close_when_idle = true;
		}
		if (e.severity_nl &&
		    (strcmp(e.severity_nl, "FATAL") == 0 || strcmp(e.severity_nl, "PANIC") == 0))
			s->close_when_idle = true;
		return PUMP_DROP;
	}
	case 'S': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *name, *value;
		if (proto_parse_parameter_status(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN,
		                                 &name, &value)) {
			params_set(&s->params, name, value);
			if (s->client) {
				client_param_changed(s->client, name, value);
				/* Before AuthenticationOk the login itself reports the values. */
				return s->client->login_pending ? PUMP_DROP : PUMP_FORWARD;
			}
		}
		return PUMP_DROP;
	}
	case 'D':
		if (s->probing) {
			if (!whole)
				return PUMP_NEED_WHOLE;
			probe_row(s, msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN);
		}
		return PUMP_DROP;
	default:
		return PUMP_DROP;
	}
}

/*
 * A client's SET, RESET or DISCARD ALL changes the session beyond what pgtide tracks: the server
 * gets RESET ALL before anyone else uses it, so no setting leaks from one client to the next.
 * (SET TRANSACTION / SET LOCAL ... were counted as harmless when the client sent them.)
 */
static void clear_restores(struct server *s)
{
	for (int i = 0; i < s->n_restore; i++)
		free(s->restore_names[i]);
	s->n_restore = 0;
	s->restore_all = false;
}

/* Sends the ReadyForQuery held while the client's login values were being restored. */
static void release_held_ready(struct server *s)
{
	if (!s->holding_ready)
		return;
	s->holding_ready = false;
	if (s->client) {
		struct pbuf *b = &s->ctx->scratch;
		pbuf_reset(b);
		proto_build_ready(b, s->held_status);
		io_write(&s->client->io, b->data, b->len);
		pbuf_reset(b);
	}
}

/*
 * After the client's RESET ALL, DISCARD ALL, RESET x or SET x TO DEFAULT: the server went back to
 * *its* defaults; PostgreSQL would have gone back to the client's startup values. Put the client's
 * login values back (hidden, like a link-time sync), then release its ReadyForQuery.
 */
static void start_restore(struct server *s)
{
	struct client *c = s->client;
	struct pset_table *t = &s->ctx->psets;
	if (s->restore_all) {
		for (size_t i = 0; i < s->params.n;) {
			if (s->params.v[i].set_by_us)
				params_remove(&s->params, s->params.v[i].name);
			else
				i++;
		}
		c->login_params->refs++;
		pset_release(t, c->params);
		c->params = c->login_params;
	} else {
		for (int i = 0; i < s->n_restore; i++) {
			const char *name = s->restore_names[i];
			struct param *sp = params_find(&s->params, name);
			if (sp && sp->set_by_us)
				params_remove(&s->params, name);
			const char *v = params_get(&c->login_params->p, name);
			if (v)
				c->params = pset_with(t, c->params, name, v);
			else /* a value the client SET earlier (see finish_probe) is gone */
				c->params = pset_without(t, c->params, name);
		}
	}
	clear_restores(s);
	s->synced_sig = 0;
	if (!start_sync(s, c))
		release_held_ready(s);
}

/*
 * True if session state is watched on s (pin.h): outside session pooling, whatever
 * pin_session_state says (off pins nothing, but the state is still dropped before another
 * client gets the server).
 */
static bool pin_watched(const struct server *s)
{
	return s->pool->pool_mode != POOL_MODE_SESSION;
}

/* True if a client of s that holds session state keeps s. */
static bool pin_pins(const struct server *s)
{
	return pin_watched(s) && pin_mode_of(s->ctx->cfg.pin_session_state) != PIN_MODE_OFF;
}

/*
 * What a CommandComplete tag says about the session: a SET, RESET or DISCARD ALL changed
 * settings (captured by the probe at the end of the transaction, see start_probe), and tags
 * that may create or drop session state ask for the probe.
 */
static void note_command_tag(struct server *s, const char *tag, uint32_t len)
{
	size_t n = len > 0 && tag[len - 1] == '\0' ? len - 1 : strnlen(tag, len);
	/* SELECT n with no RowDescription in a simple Query: SELECT INTO or CREATE TABLE AS made a
	 * table, perhaps a temporary one, anywhere in a multi-statement text. */
	if (!s->saw_rowdesc && s->simple_sent && n > 7 && memcmp(tag, "SELECT ", 7) == 0 &&
	    pin_watched(s))
		s->probe_wanted = true;
	s->saw_rowdesc = false;
	unsigned eff = pin_tag_effect(tag, n);
	if (!eff)
		return; /* SELECT, INSERT, BEGIN, COMMIT ... */
	if (n == 3) {   /* SET */
		if (s->benign_sets > 0) {
			s->benign_sets--;
			return;
		}
		s->session_dirty = true;
	} else if (n == 5 || (n == 11 && memcmp(tag, "DISCARD ALL", 11) == 0)) { /* RESET */
		s->session_dirty = true;
		if (tag[0] == 'D')
			prep_server_forget_all(s);
	} else if (n == 14 && memcmp(tag, "DEALLOCATE ALL", 14) == 0) {
		prep_server_forget_all(s);
	}
	if (pin_watched(s) && ((eff & PIN_TAG_CREATES) || (s->client && s->client->pin_kinds)))
		s->probe_wanted = true;
}

static enum pump_action relay_reply(struct server *s, char type, const uint8_t *msg, uint32_t len,
                                    bool whole, bool sent);

/*
 * A reply for the linked client. With named statements in play the ring first matches it to
 * what was sent: replies to pgtide's own messages are hidden, and replies pgtide makes itself
 * go out right after the one that precedes them.
 */
static enum pump_action on_message_active(struct server *s, char type, const uint8_t *msg,
                                          uint32_t len, bool whole)
{
	/* Data rows and the like never end a message's answer: no need to ask the ring. */
	if (s->prep_ring.len == 0 || type == 'D' || type == 'N' || type == 'S' || type == 'A' ||
	    type == 'd')
		return relay_reply(s, type, msg, len, whole, false);
	/* The hot path: the reply ends a plain entry (or is part of a Query's answer) and no
	 * answer of pgtide's own follows. */
	if (whole && prep_ring_pop_plain(&s->prep_ring, type)) {
		enum pump_action act = relay_reply(s, type, msg, len, whole, false);
		if (act != PUMP_FORWARD || s->state != SERVER_ACTIVE || !s->client ||
		    !prep_fakes_ready(s))
			return act;
		io_write(&s->client->io, msg, len);
		prep_emit_fakes(s);
		return PUMP_DROP;
	}
	enum prep_reply pr = prep_server_reply(s, type, msg, len, whole);
	if (pr == PREP_R_NEED_WHOLE)
		return PUMP_NEED_WHOLE;
	if (pr == PREP_R_ERROR_FIRST) {
		/* The error hidden for a replay that could not happen: PostgreSQL's after all. */
		struct pbuf err = s->prep_replay.error;
		s->prep_replay.error = (struct pbuf){0};
		if (err.len)
			server_relay_held_error(s, err.data, (uint32_t)err.len);
		pbuf_free(&err);
		pr = PREP_R_PASS;
	}
	enum pump_action act = PUMP_DROP;
	if (pr != PREP_R_HIDE)
		act = relay_reply(s, type, msg, len, whole, pr == PREP_R_SENT);
	if (act == PUMP_CLOSED || s->state != SERVER_ACTIVE || !s->client || !prep_fakes_ready(s))
		return act;
	if (act == PUMP_FORWARD) {
		io_write(&s->client->io, msg, len); /* whole: prep_server_reply saw to it */
		act = PUMP_DROP;
	}
	prep_emit_fakes(s);
	return act;
}

void server_relay_held_error(struct server *s, const uint8_t *msg, uint32_t len)
{
	if (s->client && relay_reply(s, 'E', msg, len, true, false) == PUMP_FORWARD)
		io_write(&s->client->io, msg, len);
}

static enum pump_action relay_reply(struct server *s, char type, const uint8_t *msg, uint32_t len,
                                    bool whole, bool sent)
{
	switch (type) {
	case 'Z': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		char st = len > PROTO_HEADER_LEN ? (char)msg[PROTO_HEADER_LEN] : 'I';
		int64_t now = pt_now();
		if (s->txn_status == 'I' && st != 'I')
			s->txn_start = now;
		s->txn_status = st;
		s->last_ready = now;
		txn_on_ready(&s->client->txn, st);
		if (s->rfq_pending > 0) {
			/* A request of the client's is done: a query, and at 'I' a transaction. */
			struct stats_counts *sc = &s->pool->stats;
			sc->query_count++;
			sc->query_time += (uint64_t)(now - s->query_start);
			if (st == 'I') {
				sc->xact_count++;
				sc->xact_time += (uint64_t)(now - s->xact_start);
			}
			if (--s->rfq_pending == 0)
				s->simple_sent = false;
			else {
				/* The next pipelined request is running now. */
				s->query_start = now;
				s->query_cancel_sent = false;
				if (st == 'I')
					s->xact_start = now;
			}
		}
		s->copy_in = false;
		if (s->rfq_pending == 0 && (s->restore_all || s->n_restore > 0)) {
			if (st == 'E') {
				/* The RESET failed or will be rolled back with its transaction. */
				clear_restores(s);
				return PUMP_FORWARD;
			}
			/* Held until the client's login values are back (after_pump). */
			s->holding_ready = true;
			s->held_status = st;
			return PUMP_DROP;
		}
		if (s->rfq_pending == 0 && st == 'I' && (s->probe_wanted || s->session_dirty) &&
		    s->pool->pool_mode != POOL_MODE_SESSION && !s->unsynced) {
			/* Held until the probe says what the session holds (after_pump). */
			s->holding_ready = true;
			s->held_status = st;
			return PUMP_DROP;
		}
		return PUMP_FORWARD;
	}
	case 'S': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *name, *value;
		if (proto_parse_parameter_status(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN,
		                                 &name, &value)) {
			params_set(&s->params, name, value);
			client_param_changed(s->client, name, value);
			s->synced_sig = s->client->params->sig; /* both changed alike */
		}
		return PUMP_FORWARD;
	}
	case 'E': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		struct proto_error e;
		struct client *c = s->client;
		s->copy_in = false;
		if (!proto_parse_error(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN, &e))
			return PUMP_FORWARD;
		const char *sev = e.severity_nl ? e.severity_nl : e.severity;
		if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
			s->got_fatal = true;
		else
			txn_on_error(&c->txn);
		if (sent)
			return PUMP_DROP; /* pgtide sent its own version (counted there) */
		struct pbuf *out = &s->ctx->scratch;
		pbuf_reset(out);
		if (client_refused_error(c, &e, out)) {
			io_write(&c->io, out->data, out->len);
			pbuf_reset(out);
			return PUMP_DROP;
		}
		if (!client_error_seen(c, msg, len, &e, out))
			return PUMP_FORWARD;
		io_write(&c->io, out->data, out->len); /* after what was decided before it */
		pbuf_reset(out);
		return PUMP_DROP;
	}
	case 'I': /* EmptyQueryResponse */
	case 's': /* PortalSuspended */
		txn_on_no_effect(&s->client->txn);
		return PUMP_FORWARD;
	case 'G':
		/*
		 * COPY FROM STDIN started. A Sync the client pipelined after the Execute that
		 * started it reached the server in copy-in mode, where PostgreSQL ignores Sync:
		 * it will bring no ReadyForQuery (libpq sends another after CopyDone).
		 */
		s->copy_in = true;
		s->rfq_pending -= s->syncs_since_execute;
		if (s->rfq_pending < 0)
			s->rfq_pending = 0;
		s->syncs_since_execute = 0;
		return PUMP_FORWARD;
	case 'C':
		if (!whole)
			return PUMP_NEED_WHOLE;
		s->copy_in = false;
		note_command_tag(s, (const char *)msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN);
		if (len > PROTO_HEADER_LEN)
			txn_on_command_complete(&s->client->txn,
			                        (const char *)msg + PROTO_HEADER_LEN,
			                        strnlen((const char *)msg + PROTO_HEADER_LEN,
			                                len - PROTO_HEADER_LEN));
		return PUMP_FORWARD;
	case 'T':
		s->saw_rowdesc = true;
		return PUMP_FORWARD;
	default:
		return PUMP_FORWARD;
	}
}

static enum pump_action server_on_message(void *arg, char type, const uint8_t *msg, uint32_t len,
                                          bool whole)
{
	struct server *s = arg;
	switch (s->state) {
	case SERVER_ACTIVE:
		return on_message_active(s, type, msg, len, whole);
	case SERVER_SYNC:
	case SERVER_RESET:
	case SERVER_DRAIN:
		return on_message_internal(s, type, msg, len, whole);
	case SERVER_IDLE:
		if (type == 'S' || type == 'N' || type == 'A')
			return on_message_internal(s, type, msg, len, whole);
		if (type == 'E' && !whole)
			return PUMP_NEED_WHOLE;
		if (type == 'E') {
			struct proto_error e;
			if (proto_parse_error(msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN, &e))
				SLOG(LOG_LEVEL_LOG, s, "idle server sent: %s (%s)",
				     e.message ? e.message : "?", e.sqlstate ? e.sqlstate : "?");
		}
		server_close(s, "unexpected message from an idle server");
		return PUMP_CLOSED;
	case SERVER_CONNECTING:
	case SERVER_CLOSED:
		break;
	}
	return PUMP_DROP;
}

/*
 * Transaction and statement pooling: the server goes back to the pool at ReadyForQuery 'I' once
 * nothing the client sent is still in flight (a pipelined batch, an extended-protocol batch
 * without its Sync, a COPY, or a message half-forwarded).
 */
bool server_fast_close(struct server *s)
{
	struct client *c = s->client;
	if (!s->close_when_idle || !s->ctx->cfg.server_fast_close || !c ||
	    s->pool->pool_mode != POOL_MODE_SESSION || s->state != SERVER_ACTIVE)
		return false;
	/* Only between transactions, with nothing in flight: no work is lost, only the
	 * session (PgBouncer's promise for this setting). */
	if (c->login_pending || s->txn_status != 'I' || s->rfq_pending > 0 ||
	    s->internal_pending > 0 || s->unsynced || s->copy_in || s->holding_ready ||
	    c->io.stream_left > 0)
		return false;
	/* 57P01, as PostgreSQL ends a session an administrator's action ends. */
	client_close(c, "57P01",
	             "terminating connection: its server connection is being replaced "
	             "(server_fast_close); reconnect");
	return true;
}

static void maybe_release(struct server *s)
{
	struct client *c = s->client;
	enum pool_mode mode = s->pool->pool_mode;
	if (mode == POOL_MODE_SESSION && server_fast_close(s))
		return;
	if (!c || mode == POOL_MODE_SESSION || c->login_pending)
		return;
	if (s->rfq_pending > 0 || s->unsynced || s->copy_in)
		return;
	if (s->txn_status != 'I') {
		if (mode == POOL_MODE_STATEMENT)
			client_close(c, "0A000",
			             "transaction blocks not allowed in statement pooling mode");
		return;
	}
	if (c->io.stream_left > 0 || c->pin_kinds)
		return; /* a pinned client keeps its server (pin.h) */
	server_release(s, false);
	client_set_state(c, CLIENT_IDLE);
}

/* ---- session state (pin.h) ---- */

static void clear_customs(struct server *s)
{
	for (int i = 0; i < s->n_custom; i++)
		free(s->custom_names[i]);
	s->n_custom = 0;
	s->custom_overflow = false;
}

void server_note_set_config(void *arg, const char *name, size_t n)
{
	struct server *s = arg;
	char buf[128];
	if (!name || n == 0 || n >= sizeof(buf)) {
		s->custom_overflow = true; /* a name not known: RESET ALL before reuse */
		return;
	}
	memcpy(buf, name, n);
	buf[n] = '\0';
	if (memchr(buf, '.', n))
		server_note_custom_setting(s, buf); /* not in pg_settings: the probe asks */
}

void server_note_custom_setting(struct server *s, const char *name)
{
	for (int i = 0; i < s->n_custom; i++)
		if (strcasecmp(s->custom_names[i], name) == 0)
			return;
	if (s->n_custom == (int)(sizeof(s->custom_names) / sizeof(s->custom_names[0]))) {
		s->custom_overflow = true; /* the probe misses it: RESET ALL before reuse */
		return;
	}
	char *n = strdup(name);
	if (n)
		s->custom_names[s->n_custom++] = n;
}

/* Settings the probe captures: what SET changed that ParameterStatus does not report. */
static bool capturable(const char *name)
{
	return !params_is_reported(name) && strncasecmp(name, "transaction_", 12) != 0;
}

/*
 * Sends the probe (pin.h) with the ReadyForQuery held: state SYNC until its own ReadyForQuery,
 * then finish_probe. If it cannot be sent, the server is closed when its client lets it go
 * and the held ReadyForQuery goes out.
 */
static void start_probe(struct server *s)
{
	struct client *c = s->client;
	char *names[64];
	size_t n = 0;
	for (int i = 0; i < s->n_custom; i++)
		names[n++] = s->custom_names[i];
	/* Dotted settings the client already has: a RESET of one must be seen too. */
	for (size_t i = 0; i < c->params->p.n && n < sizeof(names) / sizeof(names[0]); i++) {
		char *name = c->params->p.v[i].name;
		if (strchr(name, '.'))
			names[n++] = name;
	}
	struct pbuf sql = {0};
	pin_probe_sql(&sql, names, n);
	params_free(&s->probe_settings);
	s->probe_failed = false;
	s->probe_got_state = false;
	if (sql.oom) {
		pbuf_free(&sql);
		SLOG(LOG_LEVEL_WARNING, s, "out of memory for the session state probe");
		s->close_when_idle = true;
		s->probe_wanted = false;
		s->session_dirty = true;
		release_held_ready(s);
		return;
	}
	server_set_state(s, SERVER_SYNC);
	s->probing = true;
	send_query(s, (const char *)sql.data);
	pbuf_free(&sql);
}

static void probe_row(struct server *s, const uint8_t *body, uint32_t len)
{
	struct pin_row r;
	if (!pin_read_row(body, len, &r)) {
		s->probe_failed = true;
		return;
	}
	if (r.kind == 'p') {
		s->state_kinds = r.kinds;
		s->probe_got_state = true;
		return;
	}
	char name[128], value[1024];
	if (r.name_len >= sizeof(name) || r.value_len >= sizeof(value)) {
		s->probe_failed = true; /* not replayable as pgtide keeps settings */
		return;
	}
	memcpy(name, r.name, r.name_len);
	name[r.name_len] = '\0';
	memcpy(value, r.value, r.value_len);
	value[r.value_len] = '\0';
	if (capturable(name) && !params_set(&s->probe_settings, name, value))
		s->probe_failed = true;
}

/*
 * The probe's rows are in. Settings: the client's set takes the session's values (they follow
 * it to its next server), and the server records them as pgtide's own (the next client gets
 * them RESET). State: the client is pinned while its session holds any (unless
 * pin_session_state = off), and the server gets DISCARD ALL before anyone else uses it.
 */
static void finish_probe(struct server *s)
{
	struct client *c = s->client;
	struct pt_ctx *ctx = s->ctx;
	s->probing = false;
	s->probe_wanted = false;
	if (s->probe_failed || !s->probe_got_state) {
		/* Unknown: the client keeps its server (as in session pooling) until a later
		 * probe succeeds, and the server is closed, not reused, when it is let go. */
		s->close_when_idle = true;
		s->session_dirty = true;
		if (pin_pins(s)) {
			client_set_pin(c, c->pin_kinds ? c->pin_kinds : PIN_UNKNOWN);
			s->probe_wanted = true;
		}
	} else {
		struct params want = {0};
		bool ok = params_copy(&want, &c->params->p);
		for (size_t i = 0; ok && i < want.n;) {
			const char *name = want.v[i].name;
			if (!capturable(name) || params_find(&s->probe_settings, name)) {
				i++;
				continue;
			}
			/* Back at the server's own value: the client's login value, or none. */
			const char *lv = params_get(&c->login_params->p, name);
			if (lv) {
				ok = params_set(&want, name, lv);
				i++;
			} else {
				params_remove(&want, name);
			}
		}
		for (size_t i = 0; ok && i < s->probe_settings.n; i++)
			ok = params_set(&want, s->probe_settings.v[i].name,
			                s->probe_settings.v[i].value);
		struct pset *np = ok ? pset_intern(&ctx->psets, &want) : NULL;
		if (!ok)
			params_free(&want);
		if (np) {
			pset_release(&ctx->psets, c->params);
			c->params = np;
			for (size_t i = 0; i < s->params.n;) {
				struct param *sp = &s->params.v[i];
				if (sp->set_by_us && capturable(sp->name) &&
				    !params_find(&s->probe_settings, sp->name))
					params_remove(&s->params, sp->name);
				else
					i++;
			}
			for (size_t i = 0; i < s->probe_settings.n; i++) {
				const struct param *pp = &s->probe_settings.v[i];
				struct param *sp;
				if (params_set(&s->params, pp->name, pp->value) &&
				    (sp = params_find(&s->params, pp->name)) != NULL)
					sp->set_by_us = true;
				else
					s->session_dirty = true;
			}
			s->synced_sig = c->params->sig;
			s->session_dirty = s->custom_overflow;
		} else {
			s->session_dirty = true; /* out of memory: RESET ALL before reuse */
		}
		if (pin_pins(s))
			client_set_pin(c, s->state_kinds);
	}
	clear_customs(s);
	params_free(&s->probe_settings);
	server_set_state(s, SERVER_ACTIVE);
	release_held_ready(s);
	client_server_ready(c);
	if (s->state == SERVER_ACTIVE)
		maybe_release(s);
}

/* State changes that wait until the pump is done with this buffer. */
static void after_pump(struct server *s)
{
	switch (s->state) {
	case SERVER_ACTIVE:
		if (s->prep_replay.state == PREP_REPLAY_DUE) {
			prep_replay_run(s);
			if (s->state != SERVER_ACTIVE)
				return;
		}
		if (s->holding_ready) {
			if (s->restore_all || s->n_restore > 0)
				start_restore(s);
			else
				start_probe(s);
			if (s->state != SERVER_ACTIVE)
				return; /* SYNC: continues when its ReadyForQuery arrives */
		}
		maybe_release(s);
		return;
	case SERVER_SYNC:
		if (s->internal_pending > 0)
			return;
		if (s->probing) {
			finish_probe(s);
			return;
		}
		if (s->sync_failed && s->holding_ready) {
			/* A login value the server took at login is refused now: keep the session
			 * as it is, reset it before reuse, and let the client go on. */
			SLOG(LOG_LEVEL_WARNING, s, "restoring login values failed: %s (%s)",
			     s->sync_message, s->sync_sqlstate);
			s->sync_failed = false;
			s->session_dirty = true;
			server_set_state(s, SERVER_ACTIVE);
			release_held_ready(s);
			client_server_ready(s->client);
			if (s->state == SERVER_ACTIVE)
				maybe_release(s);
			return;
		}
		if (s->sync_failed) {
			struct client *c = s->client;
			s->close_when_idle = true; /* its parameters are half-applied */
			if (c)
				client_close(c, s->sync_sqlstate, "%s", s->sync_message);
			else
				server_close(s, "parameter sync failed");
			return;
		}
		struct client *c = s->client;
		params_sync_done(&c->params->p, &s->params);
		/* A reported value that came back unchanged was already the canonical one. */
		for (size_t i = 0; i < c->params->p.n; i++) {
			const struct param *cp = &c->params->p.v[i];
			if (!params_is_reported(cp->name) || params_is_server_fact(cp->name))
				continue;
			const char *sv = params_get(&s->params, cp->name);
			if (sv && strcmp(sv, cp->value) != 0) {
				struct pset *before = c->params;
				c->params = pset_with(&s->ctx->psets, c->params, cp->name, sv);
				if (c->params != before)
					i = (size_t)-1; /* a new set: walk it again */
			}
		}
		s->synced_sig = c->params->sig;
		server_set_state(s, SERVER_ACTIVE);
		if (s->holding_ready && s->held_status == 'I' &&
		    (s->probe_wanted || s->session_dirty)) {
			start_probe(s); /* the restore done, the probe next */
			if (s->state != SERVER_ACTIVE)
				return;
		}
		if (s->holding_ready) {
			release_held_ready(s);
			client_server_ready(c);
			if (s->state == SERVER_ACTIVE)
				maybe_release(s);
			return;
		}
		client_server_ready(c);
		return;
	case SERVER_DRAIN:
		if (s->rfq_pending == 0 && s->internal_pending == 0) {
			if (s->timer)
				evtimer_del(s->timer);
			if (s->close_when_idle)
				server_close(s, "marked for closing");
			else
				start_reset(s);
		}
		return;
	case SERVER_RESET:
		if (s->internal_pending > 0 || s->reset_deferred)
			return; /* a deferred reset has sent nothing yet: cancel_wait_cb starts it
			         */
		if (s->close_when_idle) {
			server_close(s, "marked for closing");
			return;
		}
		reset_done(s);
		return;
	default:
		return;
	}
}

static void server_on_readable(void *arg)
{
	struct server *s = arg;
	if (s->ctx->pause_mode == PT_SUSPENDED) {
		io_set_want_read(&s->io, false); /* SUSPEND: read again at RESUME */
		return;
	}
	if (!io_pump(&s->io))
		return;
	if (s->state != SERVER_CLOSED)
		after_pump(s);
}

static void server_on_bad_frame(void *arg)
{
	struct server *s = arg;
	server_close(s, "invalid message length from server");
}

static void server_on_end(void *arg, enum io_end why, int err)
{
	struct server *s = arg;
	if (why == IO_END_EOF)
		server_close(s, "server closed the connection");
	else {
		char buf[128];
		snprintf(buf, sizeof(buf), "server connection failed: %s", strerror(err));
		server_close(s, buf);
	}
}
