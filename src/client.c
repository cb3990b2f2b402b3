/* Client connections: startup, authentication, login, then relaying to a linked server. */
#include "pgtide/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "pgtide/admin.h"
#include "pgtide/auth.h"
#include "pgtide/cancel.h"
#include "pgtide/errmap.h"
#include "pgtide/log.h"
#include "pgtide/pin.h"
#include "pgtide/pgtide.h"
#include "pgtide/pool.h"
#include "pgtide/prepared_relay.h"
#include "pgtide/server.h"
#include "pgtide/sqlscan.h"
#include "pgtide/tls.h"

/* Longest message accepted while authenticating (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH). */
#define CLIENT_AUTH_MAX_MSG 65535u
/* Parse messages up to this size are buffered whole to be inspected; larger ones stream. */
#define CLIENT_PARSE_WHOLE_MAX (1024u * 1024u)
/* SSLRequest and GSSENCRequest may each come once before the StartupMessage. */
#define CLIENT_MAX_NEGOTIATIONS 2

static void client_on_readable(void *arg);
static enum pump_action client_on_message(void *arg, char type, const uint8_t *msg, uint32_t len,
                                          bool whole);
static void client_on_bad_frame(void *arg);
static void client_on_end(void *arg, enum io_end why, int err);
static void client_on_handshake(void *arg, const char *error);

static const struct io_ops client_io_ops = {
        .on_handshake = client_on_handshake,
        .on_readable = client_on_readable,
        .on_message = client_on_message,
        .on_bad_frame = client_on_bad_frame,
        .on_end = client_on_end,
        .on_drained = NULL,
};

static const char *const state_names[] = {
        "startup", "auth", "login_wait", "idle", "waiting", "active", "closed",
};

void client_addr(const struct client *c, char *host, size_t n, int *port)
{
	*port = 0;
	snprintf(host, n, "unix");
	if (c->addr.sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &c->addr.in.sin_addr, host, (socklen_t)n);
		*port = ntohs(c->addr.in.sin_port);
	} else if (c->addr.sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &c->addr.in6.sin6_addr, host, (socklen_t)n);
		*port = ntohs(c->addr.in6.sin6_port);
	}
}

/* The peer as text ("127.0.0.1:53412", "[::1]:53412" or "unix"), made only when logged. */
static void describe_addr(const struct client *c, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";
	switch (c->addr.sa.sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &c->addr.in.sin_addr, host, sizeof(host));
		snprintf(out, n, "%s:%d", host, ntohs(c->addr.in.sin_port));
		return;
	case AF_INET6:
		inet_ntop(AF_INET6, &c->addr.in6.sin6_addr, host, sizeof(host));
		snprintf(out, n, "[%s]:%d", host, ntohs(c->addr.in6.sin6_port));
		return;
	default:
		snprintf(out, n, "unix");
		return;
	}
}

const char *client_prefix(const struct client *c, char *buf, size_t n)
{
	char addr[INET6_ADDRSTRLEN + 16];
	describe_addr(c, addr, sizeof(addr));
	snprintf(buf, n, "%s/%s@%s c%llu", c->database ? c->database : "?", c->user ? c->user : "?",
	         addr, (unsigned long long)c->id);
	return buf;
}

#define CLOG(level, c, fmt, ...)                                                                   \
	do {                                                                                       \
		if (log_enabled(level)) {                                                          \
			char pfx_[256];                                                            \
			log_msg(level, "%s " fmt, client_prefix(c, pfx_, sizeof(pfx_)),            \
			        ##__VA_ARGS__);                                                    \
		}                                                                                  \
	} while (0)

/* ---- state and lists ---- */

static struct client_list *list_of(struct client *c, enum client_state s, int **count)
{
	struct pool *p = c->pool;
	*count = NULL;
	switch (s) {
	case CLIENT_STARTUP:
	case CLIENT_AUTH:
		return &c->ctx->login_clients;
	case CLIENT_LOGIN_WAIT:
		*count = &p->n_login_wait;
		return &p->login_wait;
	case CLIENT_IDLE:
		if (c->admin) {
			*count = &c->ctx->n_admin_clients;
			return &c->ctx->admin_clients;
		}
		*count = &p->n_idle_clients;
		return &p->idle_clients;
	case CLIENT_WAITING:
		*count = &p->n_waiting_clients;
		return &p->waiting_clients;
	case CLIENT_ACTIVE:
		*count = &p->n_active_clients;
		return &p->active_clients;
	case CLIENT_CLOSED:
		return NULL;
	}
	return NULL;
}

void client_set_pin(struct client *c, unsigned kinds)
{
	if (kinds == c->pin_kinds)
		return;
	if (!c->pin_kinds != !kinds && c->pool)
		c->pool->n_pinned += kinds ? 1 : -1;
	if (log_debug_enabled()) {
		char what[160];
		CLOG(LOG_LEVEL_DEBUG, c, "%s%s", kinds ? "pinned to its server by: " : "unpinned",
		     pin_kinds_text(kinds, what, sizeof(what)));
	}
	c->pin_kinds = kinds;
}

void client_set_state(struct client *c, enum client_state s)
{
	if (c->state == s)
		return;
	if (c->state == CLIENT_CLOSED) {
		log_error("client c%llu: refusing move from closed to %s",
		          (unsigned long long)c->id, state_names[s]);
		return;
	}
	if (s >= CLIENT_LOGIN_WAIT && s <= CLIENT_ACTIVE && !c->pool &&
	    !(c->admin && s == CLIENT_IDLE)) {
		log_error("client c%llu: state %s needs a pool", (unsigned long long)c->id,
		          state_names[s]);
		return;
	}
	int *count;
	struct client_list *old = list_of(c, c->state, &count);
	if (old) {
		TAILQ_REMOVE(old, c, link);
		if (count)
			(*count)--;
	}
	struct client_list *nl = list_of(c, s, &count);
	if (nl) {
		TAILQ_INSERT_TAIL(nl, c, link);
		if (count)
			(*count)++;
	}
	c->state = s;
}

/* ---- sending ---- */

static void send_scratch(struct client *c)
{
	struct pbuf *b = &c->ctx->scratch;
	if (!b->oom)
		io_write(&c->io, b->data, b->len);
	pbuf_reset(b);
}

/* The level log_error_kinds names, or -1 for off. */
static int error_log_level(const char *name)
{
	if (strcasecmp(name, "debug") == 0)
		return LOG_LEVEL_DEBUG;
	if (strcasecmp(name, "log") == 0)
		return LOG_LEVEL_LOG;
	if (strcasecmp(name, "warning") == 0)
		return LOG_LEVEL_WARNING;
	return -1;
}

bool client_error_seen(struct client *c, const uint8_t *msg, uint32_t len,
                       const struct proto_error *e, struct pbuf *out)
{
	struct pt_ctx *ctx = c->ctx;
	struct pbuf *json = &ctx->scratch_json;
	pbuf_reset(json);
	enum errmap_kind kind = errmap_classify(e, json);
	pbuf_put_u8(json, 0);
	if (c->error_row < 0)
		c->error_row = stats_error_row(&ctx->errors, c->database, c->user);
	stats_count_error(&ctx->errors, c->error_row, kind);
	int level = error_log_level(ctx->cfg.log_error_kinds);
	if (level >= 0)
		CLOG((enum log_level)level, c, "error %s %s: %s", e->sqlstate ? e->sqlstate : "?",
		     errmap_kind_name(kind), e->message ? e->message : "");
	const char *field = ctx->cfg.error_kind_field;
	if (!field || !field[0] || json->oom)
		return false;
	return errmap_add_field(msg, len, field[0], (const char *)json->data, out) && !out->oom;
}

void client_own_error(struct client *c, const char *severity, const char *sqlstate,
                      const char *message, struct pbuf *out)
{
	struct pbuf plain = {0};
	proto_build_error(&plain, severity, sqlstate, message, NULL, NULL);
	struct proto_error e = {.severity = severity,
	                        .severity_nl = severity,
	                        .sqlstate = sqlstate,
	                        .message = message};
	if (!plain.oom && !client_error_seen(c, plain.data, (uint32_t)plain.len, &e, out))
		pbuf_put(out, plain.data, plain.len);
	pbuf_free(&plain);
}

static void send_fatal(struct client *c, const char *sqlstate, const char *msg)
{
	struct pbuf *b = &c->ctx->scratch;
	pbuf_reset(b);
	client_own_error(c, "FATAL", sqlstate, msg, b);
	send_scratch(c);
}

/* ---- closing ---- */

void client_close(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	if (c->state == CLIENT_CLOSED)
		return;
	struct pt_ctx *ctx = c->ctx;
	char why[512] = "";
	bool logged_in = c->state >= CLIENT_LOGIN_WAIT;
	bool log_it = (sqlstate && ctx->cfg.log_pooler_errors && log_enabled(LOG_LEVEL_WARNING)) ||
	              (ctx->cfg.log_disconnections && (logged_in || sqlstate) &&
	               log_enabled(LOG_LEVEL_LOG));
	if (fmt && (sqlstate || log_it)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
	}
	if (sqlstate && ctx->cfg.log_pooler_errors)
		CLOG(LOG_LEVEL_WARNING, c, "pooler error: %s (%s)", why, sqlstate);
	if (ctx->cfg.log_disconnections && (logged_in || sqlstate))
		CLOG(LOG_LEVEL_LOG, c, "closing because: %s (age=%llds)",
		     why[0] ? why : "client close request",
		     (long long)((pt_now() - c->connect_time) / 1000000));

	if (sqlstate && !c->io.closed && !c->io.failed)
		send_fatal(c, sqlstate, why);

	client_stats_fold(c);
	/* Its server will roll back whatever transaction the client left open. */
	if (c->txn.depth > 0 && c->txn.counts)
		c->txn.counts->rollbacks++;
	client_set_pin(c, 0); /* its server is cleaned (DISCARD ALL) before reuse */
	/* Bytes already decided for the server go out before it is unlinked. */
	io_flush_pending(&c->io);
	if (c->server)
		server_release(c->server, true);
	if (c->cancel_registered) {
		cancel_unregister(ctx->cancels, c->cancel_pid, c->cancel_key);
		c->cancel_registered = false;
	}
	/* Every way out passes here: the slot is free for the next login at once. */
	climit_release(&ctx->db_clients, c->db_count);
	climit_release(&ctx->user_clients, c->user_count);
	c->db_count = c->user_count = NULL;
	client_set_state(c, CLIENT_CLOSED);
	TAILQ_REMOVE(&ctx->clients, c, all_link);
	TAILQ_INSERT_TAIL(&ctx->zombie_clients, c, all_link);
	ctx->n_clients--;
	/* Try once more to get the error out, then close: the client gets EOF next. */
	if (io_outq_len(&c->io) > 0 && !c->io.failed) {
		struct iovec iov = {c->io.outq.data + c->io.outq_off, io_outq_len(&c->io)};
		(void)c->io.tp->writev(&c->io, &iov, 1);
	}
	io_close(&c->io);
	if (c->io.fd >= 0)
		close(c->io.fd);
	c->io.fd = -1;
	if (c->auth) {
		auth_free(c->auth);
		c->auth = NULL;
	}
	pt_schedule_reaper(ctx);
}

void client_stats_fold(struct client *c)
{
	if (!c->stats_on || !c->pool)
		return;
	struct stats_counts *sc = &c->pool->stats;
	sc->bytes_received += c->io.bytes_in - c->stats_in;
	c->stats_in = c->io.bytes_in;
	/* stats_out is ahead of bytes_out while login bytes are still queued. */
	if (c->io.bytes_out > c->stats_out) {
		sc->bytes_sent += c->io.bytes_out - c->stats_out;
		c->stats_out = c->io.bytes_out;
	}
}

void client_free(struct client *c)
{
	admin_client_free(c);
	txn_free(&c->txn);
	prep_client_free(c);
	params_free(&c->startup);
	pset_release(&c->ctx->psets, c->params);
	pset_release(&c->ctx->psets, c->login_params);
	free(c->user);
	free(c->database);
	free(c);
}

void client_fail(struct client *c, const char *sqlstate, const char *msg)
{
	client_close(c, sqlstate, "%s", msg);
}

void client_server_lost(struct client *c, bool fatal_forwarded, const char *sqlstate,
                        const char *msg)
{
	struct server *s = c->server;
	if (s) {
		s->client = NULL;
		c->server = NULL;
		io_unlink(&c->io, &s->io);
	}
	if (fatal_forwarded)
		client_close(c, NULL, "server sent FATAL and closed");
	else
		client_close(c, sqlstate, "%s", msg);
}

/* ---- accept ---- */

void client_accept(struct pt_ctx *ctx, int fd, const struct sockaddr *addr, socklen_t addrlen,
                   bool is_unix)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctx = ctx;
	c->id = ++ctx->next_conn_id;
	c->connect_time = c->last_active = pt_now();
	c->state = CLIENT_STARTUP;
	c->error_row = -1;
	txn_init(&c->txn, NULL);
	if (!is_unix && addrlen <= sizeof(c->addr))
		memcpy(&c->addr, addr, addrlen);
	else
		c->addr.sa.sa_family = AF_UNIX;
	if (!io_init(&c->io, ctx, fd, &client_io_ops, c)) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&ctx->clients, c, all_link);
	TAILQ_INSERT_TAIL(&ctx->login_clients, c, link);
	ctx->n_clients++;
}

/* ---- startup ---- */

static bool add_option_param(const char *name, const char *value, void *arg)
{
	struct client *c = arg;
	return params_set(&c->startup, name, value);
}

static void handle_cancel_request(struct client *c, uint32_t pid, uint32_t key)
{
	struct client *target = cancel_lookup(c->ctx->cancels, pid, key);
	if (!target) {
		CLOG(LOG_LEVEL_LOG, c, "cancel request with an unknown key ignored");
	} else if (target->admin) {
		admin_cancel(target); /* a console command that waits (PAUSE, ...) */
	} else if (target->server && target->server->rfq_pending > 0) {
		CLOG(LOG_LEVEL_LOG, c, "cancel request for c%llu forwarded to its server",
		     (unsigned long long)target->id);
		server_cancel_query(target->server);
	}
	/* PostgreSQL answers a CancelRequest with nothing: just close. */
	client_close(c, NULL, "cancel request");
}

static void finish_auth(struct client *c);

static void start_auth(struct client *c)
{
	struct pt_ctx *ctx = c->ctx;
	const struct auth_user *u = auth_userlist_find(&ctx->users, c->user);
	struct pbuf *b = &ctx->scratch;
	pbuf_reset(b);
	enum auth_status st =
	        auth_start(&c->auth, ctx->cfg.auth_type, c->user, u, ctx->cfg.scram_iterations, b);
	if (b->len)
		send_scratch(c);
	switch (st) {
	case AUTH_CONTINUE:
		client_set_state(c, CLIENT_AUTH);
		return;
	case AUTH_OK:
		finish_auth(c);
		return;
	case AUTH_FAIL:
		client_close(c, auth_fail_sqlstate(c->auth), "%s", auth_fail_message(c->auth));
		return;
	}
}

/*
 * max_db_client_connections and max_user_client_connections, checked as soon as the startup
 * packet names the database and the user, before authentication, as PgBouncer checks them and
 * as max_client_conn is checked just before: a client of a full database or user is told so
 * (53300) without being asked for a password, no password exchange (round trips, hashing) is
 * spent on a login that would be refused anyway, and the slot it takes is held while it
 * authenticates, as its max_client_conn slot is, at most client_login_timeout. The price: a
 * client that does not know the password also holds a slot until it fails (PostgreSQL's own
 * per-role and per-database limits count only after authentication).
 *
 * Admin console connections are neither counted nor refused here: the console is where an
 * operator sees a database or a user at its limit (SHOW DATABASES, SHOW USERS) and acts on it
 * (KILL_CLIENT), so a full one must not lock the operator out; max_client_conn still bounds
 * them.
 *
 * The limits are read from the configuration in force at each login, so a reload or SET
 * applies to new connections; clients already in stay, even above a lowered limit.
 */
static bool admit_client_limits(struct client *c)
{
	struct pt_ctx *ctx = c->ctx;
	if (admin_is_console_db(c->database))
		return true;
	int db_limit = config_db_client_limit(&ctx->cfg, c->database);
	int user_limit = config_user_client_limit(&ctx->cfg, c->user);
	switch (climit_admit(&ctx->db_clients, &ctx->user_clients, c->database, db_limit, c->user,
	                     user_limit, &c->db_count, &c->user_count)) {
	case CLIMIT_OK:
		return true;
	case CLIMIT_DB_FULL:
		client_close(c, "53300", "no more connections allowed (max_db_client_connections)");
		return false;
	case CLIMIT_USER_FULL:
		client_close(c, "53300",
		             "no more connections allowed (max_user_client_connections)");
		return false;
	case CLIMIT_OOM:
		break;
	}
	client_close(c, "53200", "out of memory");
	return false;
}

static void process_startup(struct client *c, struct proto_startup *st)
{
	struct pt_ctx *ctx = c->ctx;
	c->user = strdup(st->user);
	c->database = strdup(st->database);
	if (!c->user || !c->database) {
		client_close(c, "53200", "out of memory");
		return;
	}
	if (ctx->tls.client_mode >= CONFIG_SSLMODE_REQUIRE && !io_uses_tls(&c->io) &&
	    c->addr.sa.sa_family != AF_UNIX) {
		/* As pg_hba.conf's hostssl refuses: the startup packet came in the clear. */
		char host[INET6_ADDRSTRLEN] = "?";
		int port;
		client_addr(c, host, sizeof(host), &port);
		client_close(c, "28000",
		             "pgtide requires TLS (client_tls_sslmode = %s) for host \"%s\", user "
		             "\"%s\", database \"%s\", no encryption",
		             config_sslmode_name(ctx->tls.client_mode), host, c->user, c->database);
		return;
	}
	if (st->replication && strcasecmp(st->replication, "false") != 0 &&
	    strcasecmp(st->replication, "off") != 0 && strcasecmp(st->replication, "no") != 0 &&
	    strcmp(st->replication, "0") != 0) {
		client_close(c, "0A000", "replication connections are not supported by pgtide");
		return;
	}
	for (size_t i = 0; i < st->n_params; i++) {
		if (!st->names[i][0]) {
			client_close(c, "08P01",
			             "invalid startup packet layout: empty parameter name");
			return;
		}
		if (!params_set(&c->startup, st->names[i], st->values[i])) {
			client_close(c, "53200", "out of memory");
			return;
		}
	}
	if (st->options && st->options[0]) {
		char err[256];
		if (!proto_parse_options(st->options, add_option_param, c, err, sizeof(err))) {
			client_close(c, "42601", "%s", err);
			return;
		}
	}
	/* Protocol 3.x with x > 0, or _pq_ options: say what we speak, as PostgreSQL does. */
	if ((st->version & 0xffff) != 0 || st->n_pq_options > 0) {
		struct pbuf *b = &ctx->scratch;
		pbuf_reset(b);
		proto_build_negotiate_version(b, 0, st->pq_options, st->n_pq_options);
		send_scratch(c);
	}
	if (ctx->phase != PT_RUNNING) {
		client_close(c, "57P03", "the database system is shutting down");
		return;
	}
	if (ctx->n_clients > (uint32_t)ctx->cfg.max_client_conn) {
		client_close(c, "53300", "sorry, too many clients already");
		return;
	}
	if (!admit_client_limits(c))
		return;
	start_auth(c);
}

static void finish_auth(struct client *c)
{
	struct pt_ctx *ctx = c->ctx;
	const char *plain = c->auth ? auth_plain_password(c->auth) : NULL;
	const char *sqlstate = NULL;
	char *msg = NULL;
	if (admin_is_console_db(c->database)) {
		if (c->auth) {
			auth_free(c->auth);
			c->auth = NULL;
		}
		admin_login(c);
		return;
	}
	if (pool_db_disabled(ctx, c->database)) {
		/* DISABLE on the console; PostgreSQL's words for a database refusing logins. */
		client_close(c, "55000", "database \"%s\" is not currently accepting connections",
		             c->database);
		return;
	}
	struct pool *p = pool_get(ctx, c->database, c->user, plain, &sqlstate, &msg);
	if (c->auth) {
		auth_free(c->auth);
		c->auth = NULL;
	}
	if (!p) {
		client_close(c, sqlstate, "%s", msg ? msg : "no pool");
		free(msg);
		return;
	}
	c->pool = p;
	c->txn.counts = &p->txn;
	pool_client_settings(p, c);
	/* Leave the login list: LOGIN_WAIT or IDLE puts it on the pool's lists. */
	if (ctx->cfg.log_connections) {
		char tls[128];
		tls_describe(&c->io, tls, sizeof(tls));
		CLOG(LOG_LEVEL_LOG, c, "login attempt: db=%s user=%s tls=%s", c->database, c->user,
		     tls[0] ? tls : "no");
	}
	if (pool_need_welcome(p, c))
		client_login_complete(c);
}

/* Sends AuthenticationOk, the ParameterStatus set, BackendKeyData and ReadyForQuery. */
static void send_login(struct client *c)
{
	struct pt_ctx *ctx = c->ctx;
	struct pbuf *b = &ctx->scratch;
	pbuf_reset(b);
	proto_build_auth(b, 0, NULL, 0);
	const struct pbuf *status = pset_status_messages(c->params);
	pbuf_put(b, status->data, status->len);
	proto_build_backend_key(b, c->cancel_pid, c->cancel_key);
	proto_build_ready(b, 'I');
	send_scratch(c);
	/* SHOW STATS bytes start here: what follows the login's ReadyForQuery, including a query
	 * already read behind it and login bytes still queued for the socket. */
	c->stats_on = true;
	c->stats_in = c->io.bytes_in - io_in_len(&c->io);
	c->stats_out = c->io.bytes_out + io_outq_len(&c->io);
	c->login_pending = false;
	if (!c->login_params) {
		c->login_params = c->params;
		c->login_params->refs++;
	}
	c->last_active = pt_now();
	if (ctx->cfg.log_connections)
		CLOG(LOG_LEVEL_LOG, c, "login complete");
}

void client_login_complete(struct client *c)
{
	struct pt_ctx *ctx = c->ctx;
	struct pool *p = c->pool;

	/* The client's parameters: the server's defaults, overridden by what it asked for. */
	bool differs;
	if (p->login_pset && params_equal(&c->startup, &p->login_startup)) {
		/* Same startup parameters as the last login here: same set. */
		c->params = p->login_pset;
		c->params->refs++;
		differs = p->login_differs;
		params_free(&c->startup);
	} else {
		struct params wanted = {0};
		if (!params_copy(&wanted, &p->welcome) || !params_copy(&wanted, &c->startup)) {
			params_free(&wanted);
			client_close(c, "53200", "out of memory");
			return;
		}
		c->params = pset_intern(&ctx->psets, &wanted);
		if (!c->params) {
			client_close(c, "53200", "out of memory");
			return;
		}
		differs = params_sync_count(&c->params->p, &p->welcome) > 0;
		pool_forget_login(p);
		p->login_startup = c->startup; /* moved: the pool keeps it */
		memset(&c->startup, 0, sizeof(c->startup));
		p->login_pset = c->params;
		p->login_pset->refs++;
		p->login_differs = differs;
	}

	if (!cancel_register(ctx->cancels, c, &c->cancel_pid, &c->cancel_key)) {
		client_close(c, "53200", "out of memory");
		return;
	}
	c->cancel_registered = true;

	if (!differs) {
		client_set_state(c, CLIENT_IDLE);
		send_login(c);
		/* A client may pipeline its first query behind the startup packet. */
		if (io_in_len(&c->io) > 0)
			io_pump(&c->io);
		return;
	}
	/* Check the parameters on a server first; client_server_ready finishes the login. */
	c->login_pending = true;
	client_set_state(c, CLIENT_IDLE);
	if (pool_acquire(p, c) && c->server && c->server->state == SERVER_ACTIVE)
		client_server_ready(c);
}

/* TLS is offered to this client: configured, and not over a Unix socket (as PostgreSQL). */
static bool tls_offered(const struct client *c)
{
	return c->ctx->tls.accept_ctx && c->addr.sa.sa_family != AF_UNIX;
}

/* A TLS record starts with its content type; a ClientHello travels in a handshake record. */
#define TLS_HANDSHAKE_RECORD 0x16

static void client_on_handshake(void *arg, const char *error)
{
	struct client *c = arg;
	if (error) {
		/* Nothing can be said to the client: there is no channel yet, plain or TLS. */
		CLOG(LOG_LEVEL_LOG, c, "TLS handshake failed: %s", error);
		client_close(c, NULL, "TLS handshake failed: %s", error);
		return;
	}
	if (c->tls_direct && !tls_alpn_selected(&c->io)) {
		/* PostgreSQL 17 refuses the same way: direct TLS is only for clients that know it.
		 */
		client_close(c, "08P01",
		             "received direct TLS connection request without ALPN protocol "
		             "negotiation extension");
		return;
	}
	if (log_debug_enabled()) {
		char tls[128];
		CLOG(LOG_LEVEL_DEBUG, c, "TLS established: %s",
		     tls_describe(&c->io, tls, sizeof(tls)));
	}
}

/* Switches c to TLS; the startup packet then comes over TLS, through read_startup again. */
static void start_tls(struct client *c, const uint8_t *prefix, uint32_t len)
{
	if (!tls_accept(&c->ctx->tls, &c->io, prefix, len)) {
		client_close(c, NULL, "could not start TLS");
		return;
	}
	if (len)
		io_consume(&c->io, len);
}

/* Reads the untyped first packet(s): SSLRequest, GSSENCRequest, CancelRequest, StartupMessage. */
static void read_startup(struct client *c)
{
	while (c->state == CLIENT_STARTUP && io_in_len(&c->io) > 0) {
		/*
		 * PostgreSQL 17's direct TLS: the connection opens with a ClientHello instead of an
		 * SSLRequest. Without TLS configured it is just a bad length word, refused below.
		 */
		if (c->n_negotiations == 0 && !io_uses_tls(&c->io) &&
		    io_in_data(&c->io)[0] == TLS_HANDSHAKE_RECORD && tls_offered(c)) {
			c->tls_direct = true;
			c->n_negotiations = 1; /* counts as the SSLRequest it replaces */
			start_tls(c, io_in_data(&c->io), io_in_len(&c->io));
			return;
		}
		uint32_t len;
		enum proto_frame fr =
		        proto_frame_startup(io_in_data(&c->io), io_in_len(&c->io), &len);
		if (fr == PROTO_FRAME_PARTIAL)
			return;
		if (fr == PROTO_FRAME_BAD_LEN) {
			client_close(c, "08P01", "invalid length of startup packet");
			return;
		}
		uint8_t pkt[PROTO_STARTUP_MAX];
		memcpy(pkt, io_in_data(&c->io), len);
		io_consume(&c->io, len);
		struct proto_startup st;
		proto_parse_startup(pkt, len, &st);
		switch (st.kind) {
		case PROTO_STARTUP_SSL:
		case PROTO_STARTUP_GSSENC:
			if (++c->n_negotiations > CLIENT_MAX_NEGOTIATIONS) {
				client_close(c, "08P01", "too many encryption requests");
				return;
			}
			/*
			 * Bytes that arrived together with the request were sent before our answer:
			 * a client must wait for it (CVE-2021-23214), so this is a violation.
			 */
			if (io_in_len(&c->io) > 0) {
				client_close(c, "08P01",
				             "received unencrypted data after SSL request");
				return;
			}
			if (st.kind == PROTO_STARTUP_SSL && io_uses_tls(&c->io)) {
				/* PostgreSQL reads it as an unknown protocol version too. */
				client_close(c, "0A000",
				             "unsupported frontend protocol %u.%u: server supports "
				             "3.0 to 3.0",
				             st.version >> 16, st.version & 0xffff);
				return;
			}
			if (st.kind == PROTO_STARTUP_SSL && tls_offered(c)) {
				io_write(&c->io, "S", 1);
				start_tls(c, NULL, 0);
				return;
			}
			io_write(&c->io, "N", 1);
			break;
		case PROTO_STARTUP_CANCEL:
			handle_cancel_request(c, st.cancel_pid, st.cancel_key);
			return;
		case PROTO_STARTUP_BAD_VERSION:
			client_close(
			        c, "0A000",
			        "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
			        st.version >> 16, st.version & 0xffff);
			return;
		case PROTO_STARTUP_INVALID:
			client_close(c, "08P01", "%s",
			             st.error ? st.error : "invalid startup packet");
			return;
		case PROTO_STARTUP_MESSAGE:
			process_startup(c, &st);
			return;
		}
	}
}

/* Reads PasswordMessage / SASL responses while authenticating. */
static void read_auth(struct client *c)
{
	while (c->state == CLIENT_AUTH && io_in_len(&c->io) > 0) {
		char type;
		uint32_t len;
		enum proto_frame fr = proto_frame_typed(io_in_data(&c->io), io_in_len(&c->io),
		                                        CLIENT_AUTH_MAX_MSG, &type, &len);
		if (fr == PROTO_FRAME_PARTIAL)
			return;
		if (fr == PROTO_FRAME_BAD_LEN) {
			client_close(c, "08P01", "invalid message length");
			return;
		}
		if (type != 'p') {
			client_close(c, "08P01", "expected password response, got message type %d",
			             (int)(uint8_t)type);
			return;
		}
		if (io_in_len(&c->io) < len)
			return;
		struct pbuf *b = &c->ctx->scratch;
		pbuf_reset(b);
		enum auth_status st = auth_step(c->auth, io_in_data(&c->io) + PROTO_HEADER_LEN,
		                                len - PROTO_HEADER_LEN, b);
		io_consume(&c->io, len);
		if (b->len)
			send_scratch(c);
		if (st == AUTH_FAIL) {
			client_close(c, auth_fail_sqlstate(c->auth), "%s",
			             auth_fail_message(c->auth));
			return;
		}
		if (st == AUTH_OK) {
			finish_auth(c);
			return;
		}
	}
}

/* ---- relaying ---- */

static void client_on_readable(void *arg)
{
	struct client *c = arg;
	switch (c->state) {
	case CLIENT_STARTUP:
		read_startup(c);
		break;
	case CLIENT_AUTH:
		read_auth(c);
		break;
	case CLIENT_LOGIN_WAIT:
	case CLIENT_WAITING:
		break; /* held until a server is ready */
	case CLIENT_IDLE:
	case CLIENT_ACTIVE:
		if (c->ctx->pause_mode == PT_SUSPENDED && !c->admin) {
			io_set_want_read(&c->io, false); /* SUSPEND: read again at RESUME */
			break;
		}
		c->last_active = pt_now();
		io_pump(&c->io);
		break;
	case CLIENT_CLOSED:
		break;
	}
}

void client_server_ready(struct client *c)
{
	if (c->state != CLIENT_ACTIVE)
		return;
	if (c->login_pending) {
		send_login(c);
		/* Outside session pooling the server goes back until the client has work. */
		if (c->pool->pool_mode != POOL_MODE_SESSION && c->server) {
			server_release(c->server, false);
			client_set_state(c, CLIENT_IDLE);
		}
	}
	if (io_in_len(&c->io) > 0)
		io_pump(&c->io);
}

/* Message types a frontend may send after login (PostgreSQL's protocol, section 55.7). */
static bool valid_frontend_type(char t)
{
	switch (t) {
	case 'Q':
	case 'P':
	case 'B':
	case 'D':
	case 'E':
	case 'S':
	case 'H':
	case 'C':
	case 'F':
	case 'X':
	case 'd':
	case 'c':
	case 'f':
	case 'p':
		return true;
	default:
		return false;
	}
}

/* A request that will end with ReadyForQuery went out (Query, FunctionCall, Sync). */
static void request_sent(struct server *s)
{
	if (s->rfq_pending++ == 0) {
		s->query_start = pt_now();
		s->query_cancel_sent = false;
		if (s->txn_status == 'I')
			s->xact_start = s->query_start; /* it starts a transaction (SHOW STATS) */
	}
}

/*
 * A cheap first look: only statements starting with SET, RESET or DISCARD (or with a comment
 * or whitespace before the first word) can change settings.
 */
static inline bool may_touch_settings(const char *sql, uint32_t len)
{
	if (len < 3)
		return false;
	char b = (char)(sql[1] | 0x20), c = (char)(sql[2] | 0x20);
	switch (sql[0]) {
	case 's': /* SET, not SELECT */
	case 'S':
		return b == 'e' && c == 't';
	case 'r': /* RESET */
	case 'R':
		return b == 'e' && c == 's';
	case 'd': /* DISCARD */
	case 'D':
		return b == 'i' && c == 's';
	case ' ':
	case '\t':
	case '\n':
	case '\r':
	case '\f':
	case '-':
	case '/':
		return true;
	default:
		return false;
	}
}

/*
 * True if a simple Query starts with a SET that leaves nothing behind in the session: SET
 * TRANSACTION, SET LOCAL, SET CONSTRAINTS (Prisma sends SET TRANSACTION ISOLATION LEVEL inside
 * its transactions). SET SESSION ... and SET SESSION CHARACTERISTICS do last. The server's "SET"
 * tag for it then does not mark the session dirty.
 */
static bool starts_with_benign_set(const char *sql, uint32_t len)
{
	const char *end = sql + len, *p = sql;
	if (!sqlscan_word(&p, end, "set"))
		return false;
	return sqlscan_word(&p, end, "transaction") || sqlscan_word(&p, end, "local") ||
	       sqlscan_word(&p, end, "constraints");
}

/* Reads a setting name (identifiers joined by '.', as custom settings are) into out. */
static bool read_setting_name(const char **pp, const char *end, char *out, size_t n)
{
	char part[SQLSCAN_NAME_MAX + 1];
	size_t o = 0;
	if (!sqlscan_ident(pp, end, part))
		return false;
	for (;;) {
		int w = snprintf(out + o, n - o, "%s%s", o ? "." : "", part);
		if (w < 0 || (size_t)w >= n - o)
			return false;
		o += (size_t)w;
		const char *q = sqlscan_skip_space(*pp, end);
		if (q >= end || *q != '.')
			return true;
		q++;
		if (!sqlscan_ident(&q, end, part))
			return true;
		*pp = q;
	}
}

static void add_restore(struct server *s, const char *name)
{
	for (int i = 0; i < s->n_restore; i++)
		if (strcmp(s->restore_names[i], name) == 0)
			return;
	if (s->n_restore == (int)(sizeof(s->restore_names) / sizeof(s->restore_names[0]))) {
		s->restore_all = true; /* too many to name: restore every login value */
		return;
	}
	char *n = strdup(name);
	if (n)
		s->restore_names[s->n_restore++] = n;
}

/*
 * RESET and DISCARD ALL return settings to their reset values, which PostgreSQL takes from the
 * server connection's startup packet, not the client's. Notes which settings a statement
 * resets, so that the client's own login values can be put back (see server.c).
 */
static void note_resets(struct server *s, const char *sql, uint32_t len)
{
	const char *end = sql + len, *p = sql;
	char name[128];
	if (sqlscan_word(&p, end, "discard")) {
		if (sqlscan_word(&p, end, "all"))
			s->restore_all = true;
		return;
	}
	if (sqlscan_word(&p, end, "reset")) {
		if (sqlscan_word(&p, end, "all"))
			s->restore_all = true;
		else if (sqlscan_word(&p, end, "time")) {
			if (sqlscan_word(&p, end, "zone"))
				add_restore(s, "timezone");
		} else if (read_setting_name(&p, end, name, sizeof(name)))
			add_restore(s, name);
		return;
	}
	if (!sqlscan_word(&p, end, "set"))
		return;
	if (sqlscan_word(&p, end, "session")) {
		if (sqlscan_word(&p, end, "characteristics") ||
		    sqlscan_word(&p, end, "authorization"))
			return;
	} else if (sqlscan_word(&p, end, "local")) {
		return;
	}
	if (sqlscan_word(&p, end, "time")) {
		if (!sqlscan_word(&p, end, "zone"))
			return;
		if (sqlscan_word(&p, end, "default") || sqlscan_word(&p, end, "local"))
			add_restore(s, "timezone");
		return;
	}
	if (!read_setting_name(&p, end, name, sizeof(name)))
		return;
	if (strchr(name, '.'))
		server_note_custom_setting(s, name); /* not in pg_settings: the probe asks */
	p = sqlscan_skip_space(p, end);
	if (p < end && *p == '=')
		p++;
	else if (!sqlscan_word(&p, end, "to"))
		return;
	if (sqlscan_word(&p, end, "default"))
		add_restore(s, name);
}

/* Marks the stand-in for a refused statement: the server's 34000 error names it. */
#define PIN_REFUSED_MARK "pgtide_refused_"

/*
 * Session state a statement may create (pin.h), looked at outside session pooling. Under
 * pin_session_state = error a statement that would create some is refused: in its place the
 * server gets a CLOSE (simple Query) or an Execute (Parse) of a cursor or portal that cannot
 * exist, so that it fails where the statement would have (aborting a transaction block, skipping
 * to Sync), and that error becomes pgtide's 0A000 (client_refused_error). True: refused, the
 * stand-in is sent. Otherwise a statement that may create or drop state asks for the probe.
 */
static bool pin_check(struct client *c, struct server *s, char type, const char *sql, size_t n)
{
	if (c->pool->pool_mode == POOL_MODE_SESSION)
		return false;
	enum pin_mode pm = pin_mode_of(c->ctx->cfg.pin_session_state);
	unsigned k = pm == PIN_MODE_ERROR ? pin_refusal(sql, n) : 0;
	if (!k) {
		unsigned w = pin_text_wants_probe(sql, n);
		if (w)
			s->probe_wanted = true;
		if (w & PIN_TEXT_SET_CONFIG)
			pin_set_config_names(sql, n, server_note_set_config, s);
		return false;
	}
	int bit = 0;
	while (!(k & (1u << bit)))
		bit++;
	char stand_in[64];
	struct pbuf *b = &c->ctx->scratch;
	pbuf_reset(b);
	if (type == 'Q') {
		snprintf(stand_in, sizeof(stand_in), "CLOSE \"" PIN_REFUSED_MARK "%d\"", bit);
		proto_build_query(b, stand_in);
		txn_on_query(&c->txn, stand_in, strlen(stand_in));
		s->syncs_since_execute = 0;
		request_sent(s);
	} else {
		snprintf(stand_in, sizeof(stand_in), PIN_REFUSED_MARK "%d", bit);
		size_t off = proto_msg_begin(b, 'E');
		pbuf_put_str(b, stand_in);
		pbuf_put_u32(b, 0);
		proto_msg_end(b, off);
		s->unsynced = true;
	}
	/* (After an error in the batch the server skips the stand-in too: nothing to expect.) */
	if (prep_active(c) && !(s->prep_ring.plain_off & PREP_PLAIN_OFF_SKIP) &&
	    !prep_ring_push(&s->prep_ring, type == 'Q' ? PX_QUERY : PX_EXECUTE, NULL, NULL)) {
		pbuf_reset(b);
		client_close(c, "53200", "out of memory");
		return true;
	}
	io_write(&s->io, b->data, b->len);
	pbuf_reset(b);
	return true;
}

bool client_refused_error(struct client *c, const struct proto_error *e, struct pbuf *out)
{
	if (!e->sqlstate || strcmp(e->sqlstate, "34000") != 0 || !e->message)
		return false;
	const char *m = strstr(e->message, "\"" PIN_REFUSED_MARK);
	if (!m)
		return false;
	int bit = m[sizeof(PIN_REFUSED_MARK)] - '0';
	if (bit < 0 || bit >= PIN_N_KINDS)
		return false;
	unsigned k = 1u << bit;
	char msg[512];
	snprintf(msg, sizeof(msg),
	         "%s would leave session state on a pooled server connection, which "
	         "pin_session_state = error refuses; use %s, or a session-mode pool",
	         pin_kind_name(k), pin_kind_alternative(k));
	client_own_error(c, "ERROR", "0A000", msg, out);
	return true;
}

static enum pump_action client_on_message(void *arg, char type, const uint8_t *msg, uint32_t len,
                                          bool whole)
{
	struct client *c = arg;
	(void)msg;
	(void)len;
	(void)whole;
	if (!valid_frontend_type(type)) {
		client_close(c, "08P01", "invalid frontend message type %d", (int)(uint8_t)type);
		return PUMP_CLOSED;
	}
	if (type == 'X') {
		c->terminating = true;
		client_close(c, NULL, "client sent Terminate");
		return PUMP_CLOSED;
	}
	if (c->admin)
		return admin_on_message(c, type, msg, len, whole);
	if (type == 'Q' && c->ctx->cfg.disable_pqexec) {
		/* As PgBouncer: the simple protocol may carry several statements in one message
		 * (an SQL injection vector), so it is refused outright and the session ends.
		 * 08P01, as PostgreSQL refuses a protocol it does not serve on a connection. */
		client_close(c, "08P01", "simple query protocol is disabled (disable_pqexec)");
		return PUMP_CLOSED;
	}
	if (c->login_pending)
		return PUMP_HOLD;
	if (!c->server) {
		if (c->state != CLIENT_IDLE)
			return PUMP_HOLD;
		if (!pool_acquire(c->pool, c))
			return c->state == CLIENT_CLOSED ? PUMP_CLOSED : PUMP_HOLD;
	}
	struct server *s = c->server;
	if (s->state != SERVER_ACTIVE)
		return PUMP_HOLD;

	const char *body = (const char *)msg + PROTO_HEADER_LEN;
	uint32_t blen = len - PROTO_HEADER_LEN;
	bool prep = prep_active(c);
	/* Named statements are rewritten: those messages are handled whole. */
	if (prep && !whole && (type == 'P' || type == 'B' || type == 'D' || type == 'C'))
		return PUMP_NEED_WHOLE;
	switch (type) {
	case 'Q':
		/* Inspected whole when it fits a standard buffer; larger ones stream through. */
		if (!whole && len <= IO_BUF_SIZE)
			return PUMP_NEED_WHOLE;
		if (whole) {
			uint32_t n = blen > 0 ? blen - 1 : 0; /* without the NUL */
			if (pin_check(c, s, 'Q', body, n))
				return c->state == CLIENT_CLOSED ? PUMP_CLOSED : PUMP_DROP;
			if (may_touch_settings(body, n)) {
				if (starts_with_benign_set(body, n))
					s->benign_sets++;
				note_resets(s, body, n);
			}
			txn_on_query(&c->txn, body, n);
		} else {
			txn_on_query_opaque(&c->txn);
		}
		s->syncs_since_execute = 0;
		s->simple_sent = true;
		request_sent(s);
		break;
	case 'F':
		txn_on_sync(&c->txn);
		request_sent(s);
		break;
	case 'S':
		/* PostgreSQL ignores a Sync that arrives in COPY FROM STDIN (see server 'G'). */
		if (!s->copy_in) {
			txn_on_sync(&c->txn);
			request_sent(s);
			s->syncs_since_execute++;
		}
		s->unsynced = false;
		break;
	case 'E': {
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *nul = memchr(body, 0, blen);
		txn_on_execute(&c->txn, nul ? body : "");
		s->syncs_since_execute = 0;
		s->unsynced = true;
		break;
	}
	case 'P': {
		/* Parse: statement name, then the query text, inspected whole unless huge. */
		if (!whole && len > CLIENT_PARSE_WHOLE_MAX) {
			const char *nul = memchr(body, 0, c->io.msg_avail - PROTO_HEADER_LEN);
			txn_on_parse(&c->txn, nul ? body : "", "", 0);
			s->unsynced = true;
			break;
		}
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *nul = memchr(body, 0, blen);
		if (nul && nul + 1 < body + blen) {
			const char *sql = nul + 1;
			const char *end = memchr(sql, 0, (size_t)(body + blen - sql));
			size_t n = end ? (size_t)(end - sql) : (size_t)(body + blen - sql);
			if (pin_check(c, s, 'P', sql, n))
				return c->state == CLIENT_CLOSED ? PUMP_CLOSED : PUMP_DROP;
			if (may_touch_settings(sql, n))
				note_resets(s, sql, (uint32_t)n);
			txn_on_parse(&c->txn, body, sql, n);
		}
		s->unsynced = true;
		break;
	}
	case 'B': {
		/* Bind: portal name, statement name, then parameters (possibly large). */
		uint32_t have = c->io.msg_avail - PROTO_HEADER_LEN;
		const char *n1 = memchr(body, 0, have);
		const char *n2 = n1 ? memchr(n1 + 1, 0, (size_t)(body + have - n1 - 1)) : NULL;
		if (!n2) {
			if (!whole)
				return PUMP_NEED_WHOLE;
		} else {
			txn_on_bind(&c->txn, body, n1 + 1);
		}
		s->unsynced = true;
		break;
	}
	case 'C':
		if (!whole)
			return PUMP_NEED_WHOLE;
		if (blen >= 2 && memchr(body + 1, 0, blen - 1))
			txn_on_close(&c->txn, body[0], body + 1);
		s->unsynced = true;
		break;
	case 'D':
		s->unsynced = true;
		break;
	case 'c':
	case 'f':
		s->copy_in = false;
		break;
	default:
		break;
	}
	if (prep) {
		/* Plain messages go on the ring in place; named ones take the full path. */
		uint8_t k = 0xff;
		switch (type) {
		case 'E':
			k = PX_EXECUTE;
			break;
		case 'S':
			k = PX_SYNC;
			break;
		case 'F':
			k = PX_QUERY;
			break;
		case 'Q':
			if (c->prep.n == 0)
				k = PX_QUERY;
			break;
		case 'D':
			if (blen >= 2 && body[0] == 'P')
				k = PX_DESCRIBE;
			break;
		case 'B':
			if (blen >= 2 && body[0] == 0 && body[1] == 0)
				k = PX_BIND;
			break;
		case 'P':
			if (blen >= 1 && body[0] == 0)
				k = PX_PARSE;
			break;
		case 'H':
			/* The ring need not know, unless a batch is copied or skipped. */
			if (prep_ring_plain_on(&s->prep_ring))
				return PUMP_FORWARD;
			break;
		case 'd':
		case 'c':
		case 'f':
			return PUMP_FORWARD;
		default:
			break;
		}
		if (k != 0xff && (prep_ring_push_plain(&s->prep_ring, k) ||
		                  prep_push_copied(&s->prep_ring, &s->prep_replay, k, msg, len)))
			return PUMP_FORWARD;
		return prep_client_message(c, s, type, msg, len, whole);
	}
	return PUMP_FORWARD;
}

static void client_on_bad_frame(void *arg)
{
	struct client *c = arg;
	client_close(c, "08P01", "invalid message length");
}

static void client_on_end(void *arg, enum io_end why, int err)
{
	struct client *c = arg;
	if (why == IO_END_EOF)
		client_close(c, NULL, "client closed the connection");
	else
		client_close(c, NULL, "client connection failed: %s", strerror(err));
}

void client_notice(struct client *c, const char *msg)
{
	struct pbuf *b = &c->ctx->scratch;
	pbuf_reset(b);
	proto_build_notice(b, "NOTICE", "00000", msg);
	send_scratch(c);
}

void client_check_timeouts(struct client *c, int64_t now)
{
	struct config *cfg = &c->ctx->cfg;
	const struct pool *p = c->pool; /* the timeouts as [users] and [pgtide] set them */
	struct server *s = c->server;
	if (!s || s->state != SERVER_ACTIVE)
		return;
	bool in_txn = s->txn_status == 'T' || s->txn_status == 'E';
	if (p->transaction_timeout > 0 && in_txn && now - s->txn_start > p->transaction_timeout) {
		client_close(c, "25P04", "terminating connection due to transaction timeout");
		return;
	}
	if (s->rfq_pending > 0) {
		if (p->query_timeout > 0 && !s->query_cancel_sent &&
		    now - s->query_start > p->query_timeout) {
			/* PostgreSQL answers the cancel with 57014 "canceling statement due to user
			 * request"; the client and the server both carry on. */
			s->query_cancel_sent = true;
			s->cancel_quiet_since = now;
			s->cancel_bytes_in = s->io.bytes_in;
			CLOG(LOG_LEVEL_LOG, c, "query_timeout: cancelling the running query");
			server_cancel_query(s);
		} else if (s->query_cancel_sent) {
			/*
			 * A server that sends nothing at all after the cancel (a network partition,
			 * a host gone without a FIN) would hold the client until TCP gives up,
			 * minutes later. Silence only counts while pgtide reads: backpressure is
			 * not silence.
			 */
			int64_t wait = cfg->cancel_wait_timeout > 0 ? cfg->cancel_wait_timeout
			                                            : 10 * 1000000;
			if (s->io.bp_paused || s->io.bytes_in != s->cancel_bytes_in) {
				s->cancel_quiet_since = now;
				s->cancel_bytes_in = s->io.bytes_in;
			} else if (now - s->cancel_quiet_since > wait) {
				client_close(c, "08006",
				             "query_timeout: the server did not answer the cancel "
				             "within "
				             "cancel_wait_timeout");
			}
		}
		return;
	}
	if (p->idle_transaction_timeout > 0 && in_txn &&
	    now - s->last_ready > p->idle_transaction_timeout) {
		client_close(c, "25P03",
		             "terminating connection due to idle-in-transaction timeout");
		return;
	}
	if (c->client_idle_timeout > 0 && !in_txn && now - c->last_active > c->client_idle_timeout)
		client_close(c, "57P05", "terminating connection due to idle-session timeout");
}

void client_param_changed(struct client *c, const char *name, const char *value)
{
	c->params = pset_with(&c->ctx->psets, c->params, name, value);
}
