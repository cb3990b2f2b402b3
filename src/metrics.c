/*
 * The live side of the statistics (see metrics.h): the stats_period tick, and the Prometheus
 * endpoint. The endpoint is a deliberately small HTTP/1.1 responder on the io layer rather
 * than libevent's evhttp: one request per connection (Connection: close), a request head of
 * at most METRICS_MAX_REQUEST bytes, at most METRICS_MAX_CONNS connections (beyond that the
 * listening sockets are not read and new connections wait in the kernel's backlog), and an
 * absolute deadline per connection. evhttp in libevent 2.1 has no connection limit and only
 * per-read timeouts, so a client trickling header bytes could hold a connection for hours;
 * here nothing a scraper does keeps a connection past METRICS_CONN_TIMEOUT_USEC.
 */
#include "pgtide/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "pgtide/client.h"
#include "pgtide/config.h"
#include "pgtide/io.h"
#include "pgtide/listener.h"
#include "pgtide/log.h"
#include "pgtide/pgtide.h"
#include "pgtide/pool.h"
#include "pgtide/server.h"
#include "pgtide/stats.h"

/* Listening sockets per address ("*" and names may give one per family). */
#define METRICS_MAX_LISTENERS 8
/* Connections accepted per readiness event. */
#define METRICS_ACCEPT_BATCH 16

struct metrics_conn {
	TAILQ_ENTRY(metrics_conn) link; /* m->conns while open, m->zombies once closed */
	struct metrics *m;
	struct io io;
	struct event *deadline; /* METRICS_CONN_TIMEOUT_USEC after accept */
	bool responded;         /* the response is written or queued; reading only discards */
	bool peer_eof;          /* the scraper closed its side: close once the response is out */
	bool closed;
};

TAILQ_HEAD(metrics_conn_list, metrics_conn);

struct metrics_listener {
	int fd;
	struct event *ev;
};

struct metrics {
	struct pt_ctx *ctx;
	struct metrics_listener ls[METRICS_MAX_LISTENERS];
	int n_ls;
	struct metrics_conn_list conns;   /* open scrape connections */
	struct metrics_conn_list zombies; /* closed, freed by the reaper */
	int n_conns;
	bool paused; /* METRICS_MAX_CONNS reached: the listening sockets are not watched */
	int64_t last_accept_warn; /* rate limit for accept errors (monotonic usec) */
};

static void set_accepting(struct metrics *m, bool on)
{
	if (m->paused == !on)
		return;
	m->paused = !on;
	for (int i = 0; i < m->n_ls; i++) {
		if (on)
			event_add(m->ls[i].ev, NULL);
		else
			event_del(m->ls[i].ev);
	}
}

/* ---- the stats_period tick ---- */

void metrics_collect(struct pt_ctx *ctx)
{
	struct client *c;
	TAILQ_FOREACH(c, &ctx->clients, all_link)
	client_stats_fold(c);
}

void metrics_janitor(struct pt_ctx *ctx, int64_t now)
{
	struct metrics *m = ctx->metrics;
	if (m && m->paused && m->n_conns < METRICS_MAX_CONNS)
		set_accepting(m, true); /* after an accept error */
	int64_t period = (int64_t)ctx->cfg.stats_period * 1000000;
	if (now - ctx->stats_tick < period)
		return;
	metrics_collect(ctx);
	struct stats_counts sum = {0};
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		stats_counts_delta(&p->stats_period, &p->stats, &p->stats_mark);
		p->stats_mark = p->stats;
		stats_counts_add(&sum, &p->stats_period);
	}
	ctx->stats_period_usec = now - ctx->stats_tick;
	ctx->stats_tick = now;
	if (ctx->cfg.log_stats) {
		struct stats_counts avg;
		stats_average(&avg, &sum, ctx->stats_period_usec);
		log_info("stats: %" PRIu64 " xacts/s, %" PRIu64 " queries/s, in %" PRIu64
		         " B/s, out %" PRIu64 " B/s, xact %" PRIu64 " us, query %" PRIu64
		         " us, wait %" PRIu64 " us",
		         avg.xact_count, avg.query_count, avg.bytes_received, avg.bytes_sent,
		         avg.xact_time, avg.query_time, avg.wait_time);
	}
}

/* ---- rendering: the Prometheus text format 0.0.4 ---- */

static void put_text(struct pbuf *b, const char *s)
{
	pbuf_put(b, s, strlen(s));
}

static void put_u64(struct pbuf *b, uint64_t v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
	pbuf_put(b, buf, (size_t)n);
}

/* Microseconds as seconds, exactly (no binary floating point on the way). */
static void put_seconds(struct pbuf *b, uint64_t usec)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64, usec / 1000000,
	                 usec % 1000000);
	pbuf_put(b, buf, (size_t)n);
}

/* A label value: names come from clients, so backslash, quote and newline are escaped. */
static void put_label_value(struct pbuf *b, const char *s)
{
	pbuf_put_u8(b, '"');
	for (; *s; s++) {
		if (*s == '\\' || *s == '"') {
			pbuf_put_u8(b, '\\');
			pbuf_put_u8(b, (uint8_t)*s);
		} else if (*s == '\n') {
			pbuf_put(b, "\\n", 2);
		} else {
			pbuf_put_u8(b, (uint8_t)*s);
		}
	}
	pbuf_put_u8(b, '"');
}

static void put_family(struct pbuf *b, const char *name, const char *type, const char *help)
{
	put_text(b, "# HELP ");
	put_text(b, name);
	pbuf_put_u8(b, ' ');
	put_text(b, help);
	put_text(b, "\n# TYPE ");
	put_text(b, name);
	pbuf_put_u8(b, ' ');
	put_text(b, type);
	pbuf_put_u8(b, '\n');
}

/* name{database="...",user="..."[,kind="..."]} */
static void put_sample_start(struct pbuf *b, const char *name, const char *database,
                             const char *user, const char *kind)
{
	put_text(b, name);
	if (database) {
		put_text(b, "{database=");
		put_label_value(b, database);
		put_text(b, ",user=");
		put_label_value(b, user);
		if (kind) {
			put_text(b, ",kind=");
			put_label_value(b, kind);
		}
		pbuf_put_u8(b, '}');
	}
	pbuf_put_u8(b, ' ');
}

/* One sample line. usec: the value is microseconds, shown as seconds. */
static void put_sample(struct pbuf *b, const char *name, const char *database, const char *user,
                       const char *kind, uint64_t v, bool usec)
{
	put_sample_start(b, name, database, user, kind);
	if (usec)
		put_seconds(b, v);
	else
		put_u64(b, v);
	pbuf_put_u8(b, '\n');
}

/* Figures of one pool, in the order of pool_families. */
enum pool_figure {
	PF_CL_ACTIVE = 0,
	PF_CL_WAITING,
	PF_CL_PINNED,
	PF_CL_IN_TXN,
	PF_SV_ACTIVE,
	PF_SV_IDLE,
	PF_SV_USED,
	PF_SV_LOGIN,
	PF_MAXWAIT,
	PF_POOL_SIZE,
	PF_SV_PREPARED,
	PF_XACTS,
	PF_QUERIES,
	PF_RECEIVED,
	PF_SENT,
	PF_XACT_TIME,
	PF_QUERY_TIME,
	PF_WAIT_TIME,
	PF_TXN_BLOCKS,
	PF_TXN_COMMITS,
	PF_TXN_ROLLBACKS,
	PF_TXN_PREPARED,
	PF_TXN_SAVEPOINTS,
	PF_TXN_RELEASES,
	PF_TXN_ROLLBACKS_TO,
	PF_TXN_RESYNCS,
	PF_TXN_MAX_DEPTH,
	PF_N,
};

static const struct {
	const char *name;
	const char *type;
	bool usec; /* microseconds inside, seconds outside */
	const char *help;
} pool_families[PF_N] = {
        [PF_CL_ACTIVE] = {"pgtide_pool_clients_active", "gauge", false,
                          "Logged-in clients, linked to a server or idle (SHOW POOLS "
                          "cl_active)."},
        [PF_CL_WAITING] = {"pgtide_pool_clients_waiting", "gauge", false,
                           "Clients queued for a server, at login or with work (SHOW POOLS "
                           "cl_waiting)."},
        [PF_CL_PINNED] = {"pgtide_pool_clients_pinned", "gauge", false,
                          "Clients kept on their server by session state (SHOW POOLS "
                          "cl_pinned)."},
        [PF_CL_IN_TXN] = {"pgtide_pool_clients_in_transaction", "gauge", false,
                          "Clients inside a transaction block now (SHOW TRANSACTIONS "
                          "in_transaction)."},
        [PF_SV_ACTIVE] = {"pgtide_pool_servers_active", "gauge", false,
                          "Server connections linked to a client (SHOW POOLS sv_active)."},
        [PF_SV_IDLE] = {"pgtide_pool_servers_idle", "gauge", false,
                        "Server connections idle in the pool (SHOW POOLS sv_idle)."},
        [PF_SV_USED] = {"pgtide_pool_servers_used", "gauge", false,
                        "Server connections being reset or drained (SHOW POOLS sv_used)."},
        [PF_SV_LOGIN] = {"pgtide_pool_servers_login", "gauge", false,
                         "Server connections logging in (SHOW POOLS sv_login)."},
        [PF_MAXWAIT] = {"pgtide_pool_maxwait_seconds", "gauge", true,
                        "How long the oldest queued client has waited (SHOW POOLS maxwait)."},
        [PF_POOL_SIZE] = {"pgtide_pool_size", "gauge", false,
                          "Server connections the pool may open (pool_size)."},
        [PF_SV_PREPARED] = {"pgtide_pool_server_prepared_statements", "gauge", false,
                            "Named statements prepared on the pool's server connections, "
                            "summed over them."},
        [PF_XACTS] = {"pgtide_transactions_total", "counter", false,
                      "Transactions: ReadyForQuery 'I' at the end of a client's request "
                      "(SHOW STATS total_xact_count)."},
        [PF_QUERIES] = {"pgtide_queries_total", "counter", false,
                        "Queries: client requests ended by ReadyForQuery (SHOW STATS "
                        "total_query_count)."},
        [PF_RECEIVED] = {"pgtide_client_received_bytes_total", "counter", false,
                         "Bytes received from clients after their login (SHOW STATS "
                         "total_received)."},
        [PF_SENT] = {"pgtide_client_sent_bytes_total", "counter", false,
                     "Bytes sent to clients after their login (SHOW STATS total_sent)."},
        [PF_XACT_TIME] = {"pgtide_transaction_seconds_total", "counter", true,
                          "Time spent in transactions (SHOW STATS total_xact_time)."},
        [PF_QUERY_TIME] = {"pgtide_query_seconds_total", "counter", true,
                           "Time spent running queries (SHOW STATS total_query_time)."},
        [PF_WAIT_TIME] = {"pgtide_client_wait_seconds_total", "counter", true,
                          "Time clients spent queued for a server (SHOW STATS "
                          "total_wait_time)."},
        [PF_TXN_BLOCKS] = {"pgtide_txn_blocks_total", "counter", false,
                           "Transaction blocks begun (BEGIN, START TRANSACTION, AND CHAIN)."},
        [PF_TXN_COMMITS] = {"pgtide_txn_commits_total", "counter", false,
                            "Transaction blocks ended by a COMMIT that committed."},
        [PF_TXN_ROLLBACKS] = {"pgtide_txn_rollbacks_total", "counter", false,
                              "Transaction blocks rolled back (ROLLBACK, COMMIT of a failed "
                              "transaction, a client that left)."},
        [PF_TXN_PREPARED] = {"pgtide_txn_prepared_total", "counter", false,
                             "Transaction blocks ended by PREPARE TRANSACTION."},
        [PF_TXN_SAVEPOINTS] = {"pgtide_txn_savepoints_total", "counter", false,
                               "SAVEPOINTs that succeeded."},
        [PF_TXN_RELEASES] = {"pgtide_txn_releases_total", "counter", false,
                             "RELEASE SAVEPOINTs that succeeded."},
        [PF_TXN_ROLLBACKS_TO] = {"pgtide_txn_rollbacks_to_savepoint_total", "counter", false,
                                 "ROLLBACK TO SAVEPOINTs that succeeded."},
        [PF_TXN_RESYNCS] = {"pgtide_txn_resyncs_total", "counter", false,
                            "Times the transaction tracker lost the statement order and "
                            "followed ReadyForQuery alone."},
        [PF_TXN_MAX_DEPTH] = {"pgtide_txn_max_depth", "gauge", false,
                              "Deepest transaction nesting seen (1 = a block, 2 = a savepoint "
                              "in it, ...)."},
};

static uint64_t count_in_transaction(const struct client_list *l)
{
	uint64_t n = 0;
	const struct client *c;
	TAILQ_FOREACH(c, l, link)
	n += c->txn.depth > 0;
	return n;
}

static uint64_t servers_prepared(const struct pool *p)
{
	const struct server_list *lists[] = {&p->idle, &p->active, &p->used};
	uint64_t n = 0;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const struct server *s;
		TAILQ_FOREACH(s, lists[i], link)
		n += s->prep_cache.n;
	}
	return n;
}

static uint64_t pool_figure(const struct pool *p, enum pool_figure f, int64_t now)
{
	const struct txn_counts *t = &p->txn;
	switch (f) {
	case PF_CL_ACTIVE:
		return (uint64_t)(p->n_idle_clients + p->n_active_clients);
	case PF_CL_WAITING:
		return (uint64_t)(p->n_waiting_clients + p->n_login_wait);
	case PF_CL_PINNED:
		return (uint64_t)p->n_pinned;
	case PF_CL_IN_TXN:
		return count_in_transaction(&p->active_clients) +
		       count_in_transaction(&p->idle_clients);
	case PF_SV_ACTIVE:
		return (uint64_t)p->n_active;
	case PF_SV_IDLE:
		return (uint64_t)p->n_idle;
	case PF_SV_USED:
		return (uint64_t)p->n_used;
	case PF_SV_LOGIN:
		return (uint64_t)p->n_connecting;
	case PF_MAXWAIT: {
		const struct client *first = TAILQ_FIRST(&p->waiting_clients);
		return first && now > first->wait_start ? (uint64_t)(now - first->wait_start) : 0;
	}
	case PF_POOL_SIZE:
		return (uint64_t)p->pool_size;
	case PF_SV_PREPARED:
		return servers_prepared(p);
	case PF_XACTS:
		return p->stats.xact_count;
	case PF_QUERIES:
		return p->stats.query_count;
	case PF_RECEIVED:
		return p->stats.bytes_received;
	case PF_SENT:
		return p->stats.bytes_sent;
	case PF_XACT_TIME:
		return p->stats.xact_time;
	case PF_QUERY_TIME:
		return p->stats.query_time;
	case PF_WAIT_TIME:
		return p->stats.wait_time;
	case PF_TXN_BLOCKS:
		return t->transactions;
	case PF_TXN_COMMITS:
		return t->commits;
	case PF_TXN_ROLLBACKS:
		return t->rollbacks;
	case PF_TXN_PREPARED:
		return t->prepared;
	case PF_TXN_SAVEPOINTS:
		return t->savepoints;
	case PF_TXN_RELEASES:
		return t->releases;
	case PF_TXN_ROLLBACKS_TO:
		return t->rollbacks_to;
	case PF_TXN_RESYNCS:
		return t->resyncs;
	case PF_TXN_MAX_DEPTH:
		return t->max_depth;
	case PF_N:
		break;
	}
	return 0;
}

void metrics_render(struct pt_ctx *ctx, struct pbuf *b)
{
	int64_t now = pt_now();
	const struct pool *p;

	put_family(b, "pgtide_info", "gauge", "Always 1; the version in a label.");
	put_text(b, "pgtide_info{version=");
	put_label_value(b, PACKAGE_VERSION);
	put_text(b, "} 1\n");

	uint64_t servers = 0;
	TAILQ_FOREACH(p, &ctx->pools, link)
	servers += (uint64_t)pool_server_count(p);
	put_family(b, "pgtide_client_connections", "gauge",
	           "Client connections, logging in and admin console ones included.");
	put_sample(b, "pgtide_client_connections", NULL, NULL, NULL, ctx->n_clients, false);
	put_family(b, "pgtide_client_connections_limit", "gauge", "max_client_conn.");
	put_sample(b, "pgtide_client_connections_limit", NULL, NULL, NULL,
	           (uint64_t)ctx->cfg.max_client_conn, false);
	put_family(b, "pgtide_admin_client_connections", "gauge",
	           "Clients logged in to the admin console.");
	put_sample(b, "pgtide_admin_client_connections", NULL, NULL, NULL,
	           (uint64_t)ctx->n_admin_clients, false);
	put_family(b, "pgtide_server_connections", "gauge",
	           "Server connections in every state, logging in included.");
	put_sample(b, "pgtide_server_connections", NULL, NULL, NULL, servers, false);
	put_family(b, "pgtide_prepared_statement_texts", "gauge",
	           "Distinct named prepared statements (texts) clients hold.");
	put_sample(b, "pgtide_prepared_statement_texts", NULL, NULL, NULL, ctx->prep.n, false);

	for (int f = 0; f < PF_N; f++) {
		put_family(b, pool_families[f].name, pool_families[f].type, pool_families[f].help);
		TAILQ_FOREACH(p, &ctx->pools, link)
		put_sample(b, pool_families[f].name, p->db_name, p->user_name, NULL,
		           pool_figure(p, (enum pool_figure)f, now), pool_families[f].usec);
	}

	put_family(b, "pgtide_errors_total", "counter",
	           "ErrorResponses clients received, by MappedError kind (SHOW ERRORS).");
	const struct stats_errors *t = &ctx->errors;
	for (size_t i = 0; i < t->n; i++) {
		for (int k = 0; k < ERRMAP_N_KINDS; k++) {
			uint64_t n = t->v[i].counts[k];
			if (n)
				put_sample(b, "pgtide_errors_total", t->v[i].database, t->v[i].user,
				           errmap_kind_name((enum errmap_kind)k), n, false);
		}
	}
}

/* ---- HTTP ---- */

static void conn_close(struct metrics_conn *mc)
{
	if (mc->closed)
		return;
	struct metrics *m = mc->m;
	mc->closed = true;
	int fd = mc->io.fd;
	io_close(&mc->io);
	if (fd >= 0)
		close(fd);
	mc->io.fd = -1;
	if (mc->deadline) {
		event_free(mc->deadline);
		mc->deadline = NULL;
	}
	TAILQ_REMOVE(&m->conns, mc, link);
	TAILQ_INSERT_TAIL(&m->zombies, mc, link);
	m->n_conns--;
	set_accepting(m, true);
	pt_schedule_reaper(m->ctx);
}

/* The response is out: half-close and wait for the scraper's EOF (or the deadline), so that
 * bytes it sent after its request cannot turn the close into a reset that loses ours. */
static void conn_finish(struct metrics_conn *mc)
{
	if (!mc->closed && (mc->peer_eof || shutdown(mc->io.fd, SHUT_WR) != 0))
		conn_close(mc);
}

static void respond(struct metrics_conn *mc, int status, const char *reason, const char *headers,
                    const struct pbuf *body, bool head_only)
{
	struct pbuf b = {0};
	char line[256];
	size_t body_len = body ? body->len : 0;
	int n = snprintf(line, sizeof(line),
	                 "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n", status,
	                 reason, body_len);
	pbuf_put(&b, line, (size_t)n);
	put_text(&b, headers);
	put_text(&b, "\r\n");
	if (body && !head_only)
		pbuf_put(&b, body->data, body->len);
	mc->responded = true;
	if (io_in_len(&mc->io) > 0)
		io_consume(&mc->io, io_in_len(&mc->io));
	if (b.oom) {
		pbuf_free(&b);
		conn_close(mc);
		return;
	}
	io_write(&mc->io, b.data, b.len);
	pbuf_free(&b);
	if (mc->closed || mc->io.failed)
		return; /* a write failure closes it through on_end */
	if (io_outq_len(&mc->io) > 0)
		io_notify_drained(&mc->io);
	else
		conn_finish(mc);
}

static void respond_text(struct metrics_conn *mc, int status, const char *reason, const char *extra,
                         const char *text, bool head_only)
{
	struct pbuf body = {0};
	put_text(&body, text);
	char headers[256];
	snprintf(headers, sizeof(headers), "Content-Type: text/plain; charset=utf-8\r\n%s", extra);
	respond(mc, status, reason, headers, &body, head_only);
	pbuf_free(&body);
}

/* Finds the end of the request head: returns its length, 0 if not there yet. */
static size_t head_length(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (d[i] != '\n')
			continue;
		if (i >= 1 && d[i - 1] == '\n')
			return i + 1;
		if (i >= 2 && d[i - 1] == '\r' && d[i - 2] == '\n')
			return i + 1;
	}
	return 0;
}

/* A token of the request line: visible ASCII without spaces. */
static size_t token_length(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && s[i] > ' ' && s[i] < 0x7f)
		i++;
	return i;
}

static void handle_request(struct metrics_conn *mc, const char *req, size_t n)
{
	/* Request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 3) */
	const char *end = memchr(req, '\n', n);
	size_t line = (size_t)(end - req);
	if (line > 0 && req[line - 1] == '\r')
		line--;
	size_t ml = token_length(req, line);
	const char *target = req + ml + 1;
	size_t tl = ml < line ? token_length(target, line - ml - 1) : 0;
	const char *version = target + tl + 1;
	size_t vl = ml + 1 + tl < line ? line - ml - 1 - tl - 1 : 0;
	if (ml == 0 || tl == 0 || vl != 8 || req[ml] != ' ' || target[tl] != ' ' ||
	    memcmp(version, "HTTP/1.", 7) != 0 || (version[7] != '0' && version[7] != '1')) {
		respond_text(mc, 400, "Bad Request", "", "bad request\n", false);
		return;
	}
	bool get = ml == 3 && memcmp(req, "GET", 3) == 0;
	bool head = ml == 4 && memcmp(req, "HEAD", 4) == 0;
	if (!get && !head) {
		respond_text(mc, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
		             "only GET and HEAD\n", false);
		return;
	}
	const char *q = memchr(target, '?', tl);
	size_t path_len = q ? (size_t)(q - target) : tl;
	if (path_len != 8 || memcmp(target, "/metrics", 8) != 0) {
		respond_text(mc, 404, "Not Found", "", "not found: the metrics are at /metrics\n",
		             head);
		return;
	}
	struct pt_ctx *ctx = mc->m->ctx;
	struct pbuf body = {0};
	metrics_collect(ctx);
	metrics_render(ctx, &body);
	if (body.oom) {
		pbuf_free(&body);
		respond_text(mc, 500, "Internal Server Error", "", "out of memory\n", head);
		return;
	}
	respond(mc, 200, "OK", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", &body,
	        head);
	pbuf_free(&body);
}

static void conn_on_readable(void *owner)
{
	struct metrics_conn *mc = owner;
	if (mc->closed)
		return;
	uint32_t n = io_in_len(&mc->io);
	if (mc->responded) {
		io_consume(&mc->io, n); /* lingering: discard until EOF */
		return;
	}
	const uint8_t *d = io_in_data(&mc->io);
	size_t look = n < METRICS_MAX_REQUEST ? n : METRICS_MAX_REQUEST;
	size_t len = head_length(d, look);
	if (len > 0)
		handle_request(mc, (const char *)d, len);
	else if (n >= METRICS_MAX_REQUEST)
		respond_text(mc, 431, "Request Header Fields Too Large", "",
		             "request head too large\n", false);
}

static enum pump_action conn_on_message(void *owner, char type, const uint8_t *msg, uint32_t len,
                                        bool whole)
{
	(void)owner;
	(void)type;
	(void)msg;
	(void)len;
	(void)whole;
	return PUMP_HOLD; /* never pumped: HTTP is not framed as protocol messages */
}

static void conn_on_bad_frame(void *owner)
{
	conn_close(owner);
}

static void conn_on_end(void *owner, enum io_end why, int err)
{
	struct metrics_conn *mc = owner;
	(void)err;
	if (why == IO_END_EOF && mc->responded && !mc->io.failed && io_outq_len(&mc->io) > 0) {
		/* Half-closed after its request: the rest of the response still goes out. */
		mc->peer_eof = true;
		return;
	}
	conn_close(mc);
}

static void conn_on_drained(void *owner)
{
	conn_finish(owner);
}

static const struct io_ops conn_io_ops = {
        .on_readable = conn_on_readable,
        .on_message = conn_on_message,
        .on_bad_frame = conn_on_bad_frame,
        .on_end = conn_on_end,
        .on_drained = conn_on_drained,
};

static void conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_close(arg);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct metrics *m = arg;
	(void)what;
	for (int i = 0; i < METRICS_ACCEPT_BATCH; i++) {
		if (m->n_conns >= METRICS_MAX_CONNS) {
			/* The rest wait in the backlog until a connection closes. */
			set_accepting(m, false);
			return;
		}
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			/* Out of descriptors or the like: the socket stays readable, so stop
			 * watching it (the janitor looks again) instead of spinning the loop. */
			int64_t now = pt_now();
			if (now - m->last_accept_warn > 5 * 1000000) {
				log_warn("metrics: accept: %s", strerror(errno));
				m->last_accept_warn = now;
			}
			set_accepting(m, false);
			return;
		}
		struct metrics_conn *mc = calloc(1, sizeof(*mc));
		if (!mc) {
			close(fd);
			continue;
		}
		mc->m = m;
		mc->deadline = evtimer_new(m->ctx->base, conn_deadline, mc);
		struct timeval tv = {METRICS_CONN_TIMEOUT_USEC / 1000000,
		                     METRICS_CONN_TIMEOUT_USEC % 1000000};
		if (!mc->deadline || evtimer_add(mc->deadline, &tv) != 0 ||
		    !io_init(&mc->io, m->ctx, fd, &conn_io_ops, mc)) {
			if (mc->deadline)
				event_free(mc->deadline);
			free(mc);
			close(fd);
			continue;
		}
		TAILQ_INSERT_TAIL(&m->conns, mc, link);
		m->n_conns++;
	}
}

/* ---- listening ---- */

static void close_listeners(struct metrics_listener *ls, int n)
{
	for (int i = 0; i < n; i++) {
		if (ls[i].ev)
			event_free(ls[i].ev);
		close(ls[i].fd);
	}
}

/* Binds addr (HOST:PORT) into ls; returns how many sockets, or -1 (logged). */
static int bind_address(struct metrics *m, const char *addr, struct metrics_listener *ls)
{
	char host[CONFIG_HOST_MAX];
	int port;
	if (!config_split_host_port(addr, host, sizeof(host), &port)) {
		log_error("metrics_listen %s: not HOST:PORT", addr);
		return -1;
	}
	int fds[METRICS_MAX_LISTENERS];
	char descs[METRICS_MAX_LISTENERS][LISTENER_DESC_MAX];
	int n = listener_bind_tcp("metrics_listen", host, port, 16, false, fds, descs,
	                          METRICS_MAX_LISTENERS);
	for (int i = 0; i < n; i++) {
		ls[i].fd = fds[i];
		ls[i].ev = event_new(m->ctx->base, fds[i], EV_READ | EV_PERSIST, on_accept, m);
		if (!ls[i].ev || (!m->paused && event_add(ls[i].ev, NULL) != 0)) {
			close_listeners(ls, i + 1);
			while (++i < n)
				close(fds[i]);
			log_error("metrics: could not set up events");
			return -1;
		}
		log_info("metrics: serving http://%s/metrics", descs[i]);
	}
	return n;
}

static struct metrics *metrics_get(struct pt_ctx *ctx)
{
	if (!ctx->metrics) {
		struct metrics *m = calloc(1, sizeof(*m));
		if (!m)
			return NULL;
		m->ctx = ctx;
		TAILQ_INIT(&m->conns);
		TAILQ_INIT(&m->zombies);
		ctx->metrics = m;
	}
	return ctx->metrics;
}

bool metrics_open(struct pt_ctx *ctx)
{
	const char *addr = ctx->cfg.metrics_listen;
	if (!addr || !addr[0])
		return true;
	struct metrics *m = metrics_get(ctx);
	if (!m)
		return false;
	int n = bind_address(m, addr, m->ls);
	if (n < 0)
		return false;
	m->n_ls = n;
	return true;
}

void metrics_stop_listening(struct pt_ctx *ctx)
{
	struct metrics *m = ctx->metrics;
	if (!m)
		return;
	close_listeners(m->ls, m->n_ls);
	m->n_ls = 0;
	m->paused = false; /* listeners bound later start watched */
}

void metrics_reload(struct pt_ctx *ctx, const char *old)
{
	const char *addr = ctx->cfg.metrics_listen ? ctx->cfg.metrics_listen : "";
	if (strcmp(addr, old ? old : "") == 0)
		return;
	struct metrics *m = metrics_get(ctx);
	if (!m)
		return;
	if (!addr[0]) {
		metrics_stop_listening(ctx);
		log_info("metrics: metrics_listen is empty, endpoint off");
		return;
	}
	struct metrics_listener ls[METRICS_MAX_LISTENERS];
	int n = bind_address(m, addr, ls);
	if (n < 0 && m->n_ls > 0) {
		/* The new address may overlap the old one (same port, another host): free the
		 * port and try once more, taking the old address back if that fails too. */
		metrics_stop_listening(ctx);
		n = bind_address(m, addr, ls);
		if (n < 0) {
			n = old && old[0] ? bind_address(m, old, ls) : -1;
			log_error("metrics: keeping metrics_listen = %s", n > 0 ? old : "(none)");
			if (n > 0) {
				memcpy(m->ls, ls, sizeof(ls[0]) * (size_t)n);
				m->n_ls = n;
			}
			return;
		}
	} else if (n < 0) {
		log_error("metrics: metrics_listen = %s could not be bound, endpoint off", addr);
		return;
	}
	metrics_stop_listening(ctx);
	memcpy(m->ls, ls, sizeof(ls[0]) * (size_t)n);
	m->n_ls = n;
}

void metrics_reap(struct pt_ctx *ctx)
{
	struct metrics *m = ctx->metrics;
	if (!m)
		return;
	struct metrics_conn *mc;
	while ((mc = TAILQ_FIRST(&m->zombies)) != NULL) {
		TAILQ_REMOVE(&m->zombies, mc, link);
		free(mc);
	}
}

void metrics_free(struct pt_ctx *ctx)
{
	struct metrics *m = ctx->metrics;
	if (!m)
		return;
	metrics_stop_listening(ctx);
	struct metrics_conn *mc;
	while ((mc = TAILQ_FIRST(&m->conns)) != NULL)
		conn_close(mc);
	metrics_reap(ctx);
	free(m);
	ctx->metrics = NULL;
}
