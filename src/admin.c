/*
 * The admin console (see admin.h and docs/admin.md): the simple query protocol, answered from
 * pgtide's own state. Result sets are built whole and written at once; they are small next to
 * the traffic of the clients they describe. The control commands are in admin_control.c.
 */
#include "pgtide/admin.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include "pgtide/admin_int.h"
#include "pgtide/cancel.h"
#include "pgtide/client.h"
#include "pgtide/climit.h"
#include "pgtide/config.h"
#include "pgtide/errmap.h"
#include "pgtide/log.h"
#include "pgtide/metrics.h"
#include "pgtide/pin.h"
#include "pgtide/pgtide.h"
#include "pgtide/pool.h"
#include "pgtide/server.h"
#include "pgtide/sqlscan.h"
#include "pgtide/stats.h"
#include "pgtide/txn.h"

/* Longest admin command accepted (they are one line; this only bounds buffering). */
#define ADMIN_MAX_QUERY 65536u

/* Type OIDs and lengths of the columns the console returns. */
enum admin_type {
	ADMIN_TEXT = 0,
	ADMIN_INT4,
	ADMIN_INT8,
	ADMIN_BOOL,
	ADMIN_TIMESTAMPTZ,
	ADMIN_NUMERIC, /* PgBouncer's type for unsigned 64-bit statistics (SHOW STATS) */
};

static const struct {
	uint32_t oid;
	int16_t len;
} admin_types[] = {
        [ADMIN_TEXT] = {25, -1}, [ADMIN_INT4] = {23, 4},          [ADMIN_INT8] = {20, 8},
        [ADMIN_BOOL] = {16, 1},  [ADMIN_TIMESTAMPTZ] = {1184, 8}, [ADMIN_NUMERIC] = {1700, -1},
};

struct admin_col {
	const char *name;
	enum admin_type type;
};

/* A result set being appended to b: RowDescription, DataRows, CommandComplete. */
struct admin_rs {
	struct pbuf *b;
	size_t row_off;
	uint64_t rows;
	int64_t wall_minus_mono; /* usec, taken once: times in one result set compare exactly */
};

bool admin_is_console_db(const char *name)
{
	return name && (strcmp(name, "pgtide") == 0 || strcmp(name, "pgbouncer") == 0);
}

/* ---- building results ---- */

static void rs_begin(struct admin_rs *r, struct pbuf *b, const struct admin_col *cols, int n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r->b = b;
	r->rows = 0;
	r->wall_minus_mono = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - pt_now();
	size_t off = proto_msg_begin(b, 'T');
	pbuf_put_u16(b, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		pbuf_put_str(b, cols[i].name);
		pbuf_put_u32(b, 0); /* table OID */
		pbuf_put_u16(b, 0); /* column number */
		pbuf_put_u32(b, admin_types[cols[i].type].oid);
		pbuf_put_u16(b, (uint16_t)admin_types[cols[i].type].len);
		pbuf_put_u32(b, 0xffffffffu); /* typmod -1 */
		pbuf_put_u16(b, 0);           /* text format */
	}
	proto_msg_end(b, off);
}

static void rs_row(struct admin_rs *r, int n)
{
	r->row_off = proto_msg_begin(r->b, 'D');
	pbuf_put_u16(r->b, (uint16_t)n);
}

static void rs_text(struct admin_rs *r, const char *v)
{
	if (!v) {
		pbuf_put_u32(r->b, 0xffffffffu); /* NULL */
		return;
	}
	size_t n = strlen(v);
	pbuf_put_u32(r->b, (uint32_t)n);
	pbuf_put(r->b, v, n);
}

static void rs_int(struct admin_rs *r, int64_t v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64, v);
	rs_text(r, buf);
}

static void rs_bool(struct admin_rs *r, bool v)
{
	rs_text(r, v ? "t" : "f");
}

/* A monotonic time as wall-clock text in PostgreSQL's ISO output ("... 01:02:03.000004+00"). */
static void rs_time(struct admin_rs *r, int64_t mono_usec)
{
	int64_t wall = r->wall_minus_mono + mono_usec;
	time_t secs = (time_t)(wall / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[64];
	snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(wall % 1000000));
	rs_text(r, buf);
}

static void rs_row_end(struct admin_rs *r)
{
	proto_msg_end(r->b, r->row_off);
	r->rows++;
}

void admin_put_command_complete(struct pbuf *b, const char *tag)
{
	size_t off = proto_msg_begin(b, 'C');
	pbuf_put_str(b, tag);
	proto_msg_end(b, off);
}

void admin_error(struct client *c, struct pbuf *b, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	client_own_error(c, "ERROR", sqlstate, msg, b);
}

/* ---- SHOW commands ---- */

/*
 * ptr and link: PgBouncer prints object addresses there; pgtide prints the connection id in
 * the same 0x form (KILL_CLIENT takes it, or the id in decimal).
 */
static const char *ptr_text(uint64_t id, char *buf, size_t n)
{
	snprintf(buf, n, "0x%llx", (unsigned long long)id);
	return buf;
}

/* The local end of a socket ("unix" and 0 for a Unix socket). */
static void local_addr(int fd, char *host, size_t n, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	snprintf(host, n, "unix");
	*port = 0;
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)n);
		*port = ntohs(in->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)n);
		*port = ntohs(in6->sin6_port);
	}
}

static void show_help(struct client *c, struct pbuf *b)
{
	(void)c;
	static const char *const lines[] = {
	        "Console usage",
	        "\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION",
	        "\tSHOW LISTS|MEM|STATE",
	        "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES",
	        "\tSHOW ERRORS|TRANSACTIONS",
	        "\tSET key = arg",
	        "\tRELOAD",
	        "\tPAUSE [<db>]",
	        "\tRESUME [<db>]",
	        "\tDISABLE <db>",
	        "\tENABLE <db>",
	        "\tRECONNECT [<db>]",
	        "\tKILL [<db>]",
	        "\tKILL_CLIENT <client_id>",
	        "\tSUSPEND",
	        "\tSHUTDOWN",
	        "\tWAIT_CLOSE [<db>]",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		proto_build_notice(b, "NOTICE", "00000", lines[i]);
	}
	admin_put_command_complete(b, "SHOW");
}

static void show_version(struct client *c, struct pbuf *b)
{
	(void)c;
	static const struct admin_col cols[] = {{"version", ADMIN_TEXT}};
	struct admin_rs r;
	rs_begin(&r, b, cols, 1);
	rs_row(&r, 1);
	rs_text(&r, PGTIDE_VERSION_STRING);
	rs_row_end(&r);
	admin_put_command_complete(b, "SHOW");
}

static int cmp_error_rows(const void *a, const void *b, void *arg)
{
	const struct stats_errors *t = arg;
	const struct stats_error_row *x = &t->v[*(const int *)a], *y = &t->v[*(const int *)b];
	int d = strcmp(x->database, y->database);
	return d ? d : strcmp(x->user, y->user);
}

static int cmp_kinds(const void *a, const void *b)
{
	return strcmp(errmap_kind_name(*(const enum errmap_kind *)a),
	              errmap_kind_name(*(const enum errmap_kind *)b));
}

static void show_errors(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"database", ADMIN_TEXT},
	        {"user", ADMIN_TEXT},
	        {"kind", ADMIN_TEXT},
	        {"count", ADMIN_INT8},
	};
	const struct stats_errors *t = &c->ctx->errors;
	int *order = t->n ? malloc(t->n * sizeof(*order)) : NULL;
	if (t->n && !order) {
		admin_error(c, b, "53200", "out of memory");
		return;
	}
	for (size_t i = 0; i < t->n; i++)
		order[i] = (int)i;
	if (t->n)
		qsort_r(order, t->n, sizeof(*order), cmp_error_rows, (void *)t);
	enum errmap_kind kinds[ERRMAP_N_KINDS];
	for (int k = 0; k < ERRMAP_N_KINDS; k++)
		kinds[k] = (enum errmap_kind)k;
	qsort(kinds, ERRMAP_N_KINDS, sizeof(kinds[0]), cmp_kinds);

	struct admin_rs r;
	rs_begin(&r, b, cols, 4);
	for (size_t i = 0; i < t->n; i++) {
		const struct stats_error_row *row = &t->v[order[i]];
		for (int k = 0; k < ERRMAP_N_KINDS; k++) {
			uint64_t n = row->counts[kinds[k]];
			if (!n)
				continue;
			rs_row(&r, 4);
			rs_text(&r, row->database);
			rs_text(&r, row->user);
			rs_text(&r, errmap_kind_name(kinds[k]));
			rs_int(&r, (int64_t)n);
			rs_row_end(&r);
		}
	}
	free(order);
	admin_put_command_complete(b, "SHOW");
}

static int count_in_transaction(const struct client_list *l)
{
	int n = 0;
	const struct client *c;
	TAILQ_FOREACH(c, l, link)
	if (c->txn.depth > 0)
		n++;
	return n;
}

static void show_transactions(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"database", ADMIN_TEXT},
	        {"user", ADMIN_TEXT},
	        {"transactions", ADMIN_INT8},
	        {"commits", ADMIN_INT8},
	        {"rollbacks", ADMIN_INT8},
	        {"prepared", ADMIN_INT8},
	        {"savepoints", ADMIN_INT8},
	        {"releases", ADMIN_INT8},
	        {"rollbacks_to_savepoint", ADMIN_INT8},
	        {"max_depth", ADMIN_INT8},
	        {"in_transaction", ADMIN_INT8},
	};
	const int n = (int)(sizeof(cols) / sizeof(cols[0]));
	struct admin_rs r;
	rs_begin(&r, b, cols, n);
	const struct pool *p;
	TAILQ_FOREACH(p, &c->ctx->pools, link)
	{
		const struct txn_counts *t = &p->txn;
		rs_row(&r, n);
		rs_text(&r, p->db_name);
		rs_text(&r, p->user_name);
		rs_int(&r, (int64_t)t->transactions);
		rs_int(&r, (int64_t)t->commits);
		rs_int(&r, (int64_t)t->rollbacks);
		rs_int(&r, (int64_t)t->prepared);
		rs_int(&r, (int64_t)t->savepoints);
		rs_int(&r, (int64_t)t->releases);
		rs_int(&r, (int64_t)t->rollbacks_to);
		rs_int(&r, (int64_t)t->max_depth);
		rs_int(&r, count_in_transaction(&p->active_clients) +
		                   count_in_transaction(&p->idle_clients));
		rs_row_end(&r);
	}
	admin_put_command_complete(b, "SHOW");
}

static const char *client_state_text(const struct client *c)
{
	switch (c->state) {
	case CLIENT_STARTUP:
	case CLIENT_AUTH:
	case CLIENT_LOGIN_WAIT:
		return "login";
	case CLIENT_WAITING:
		return "waiting";
	default:
		return "active";
	}
}

/* The columns SHOW CLIENTS and SHOW SERVERS share (PgBouncer 1.18's, in its order). */
#define ADMIN_CONN_COLS                                                                            \
	{"type", ADMIN_TEXT}, {"user", ADMIN_TEXT}, {"database", ADMIN_TEXT},                      \
	        {"state", ADMIN_TEXT}, {"addr", ADMIN_TEXT}, {"port", ADMIN_INT4},                 \
	        {"local_addr", ADMIN_TEXT}, {"local_port", ADMIN_INT4},                            \
	        {"connect_time", ADMIN_TIMESTAMPTZ}, {"request_time", ADMIN_TIMESTAMPTZ},          \
	        {"wait", ADMIN_INT4}, {"wait_us", ADMIN_INT4}, {"close_needed", ADMIN_INT4},       \
	        {"ptr", ADMIN_TEXT}, {"link", ADMIN_TEXT}, {"remote_pid", ADMIN_INT4},             \
	        {"tls", ADMIN_TEXT}, {"application_name", ADMIN_TEXT},                             \
	{                                                                                          \
		"prepared_statements", ADMIN_INT4                                                  \
	}

static void show_clients(struct client *self, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        ADMIN_CONN_COLS,           {"id", ADMIN_INT8},         {"txn_status", ADMIN_TEXT},
	        {"txn_depth", ADMIN_INT4}, {"savepoints", ADMIN_TEXT}, {"isolation", ADMIN_TEXT},
	        {"read_only", ADMIN_BOOL}, {"pinned", ADMIN_TEXT},
	};
	const int n = (int)(sizeof(cols) / sizeof(cols[0]));
	int64_t now = pt_now();
	struct admin_rs r;
	rs_begin(&r, b, cols, n);
	const struct client *c;
	TAILQ_FOREACH(c, &self->ctx->clients, all_link)
	{
		if (c->state == CLIENT_CLOSED)
			continue;
		char host[INET6_ADDRSTRLEN + 8], lhost[INET6_ADDRSTRLEN + 8], buf[64];
		int port, lport;
		client_addr(c, host, sizeof(host), &port);
		local_addr(c->io.fd, lhost, sizeof(lhost), &lport);
		int64_t wait = c->state == CLIENT_WAITING ? now - c->wait_start : 0;
		const char *app = c->params ? params_get(&c->params->p, "application_name")
		                            : params_get(&c->startup, "application_name");
		rs_row(&r, n);
		rs_text(&r, "C");
		rs_text(&r, c->user ? c->user : "");
		rs_text(&r, c->database ? c->database : "");
		rs_text(&r, client_state_text(c));
		rs_text(&r, host);
		rs_int(&r, port);
		rs_text(&r, lhost);
		rs_int(&r, lport);
		rs_time(&r, c->connect_time);
		rs_time(&r, c->last_active);
		rs_int(&r, wait / 1000000);
		rs_int(&r, wait % 1000000);
		rs_int(&r, 0);
		rs_text(&r, ptr_text(c->id, buf, sizeof(buf)));
		rs_text(&r, c->server ? ptr_text(c->server->id, buf, sizeof(buf)) : "");
		rs_int(&r, 0);
		rs_text(&r, tls_describe(&c->io, buf, sizeof(buf)));
		rs_text(&r, app ? app : "");
		rs_int(&r, c->prep.n);
		rs_int(&r, (int64_t)c->id);
		char st[2] = {c->txn.status ? c->txn.status : 'I', 0};
		rs_text(&r, st);
		rs_int(&r, c->txn.depth);
		char names[1024];
		rs_text(&r, txn_savepoint_list(&c->txn, names, sizeof(names)));
		rs_text(&r, txn_isolation_name((enum txn_isolation)c->txn.isolation));
		rs_bool(&r, c->txn.read_only == TXN_FLAG_ON);
		rs_text(&r, pin_kinds_text(c->pin_kinds, names, sizeof(names)));
		rs_row_end(&r);
	}
	admin_put_command_complete(b, "SHOW");
}

/* Named statements prepared on the pool's server connections (each server counts its own). */
static int pool_prepared_count(const struct pool *p)
{
	const struct server_list *lists[] = {&p->idle, &p->active, &p->used};
	int n = 0;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const struct server *s;
		TAILQ_FOREACH(s, lists[i], link)
		n += (int)s->prep_cache.n;
	}
	return n;
}

/* Servers of list with a cancel request still on its way to PostgreSQL (cancel.h). */
static int cancelling(const struct server_list *list)
{
	int n = 0;
	const struct server *s;
	TAILQ_FOREACH(s, list, link)
	n += s->cancel_ticket && !cancel_ticket_done(s->cancel_ticket);
	return n;
}

static void show_pools(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"database", ADMIN_TEXT},
	        {"user", ADMIN_TEXT},
	        {"cl_active", ADMIN_INT4},
	        {"cl_waiting", ADMIN_INT4},
	        {"cl_active_cancel_req", ADMIN_INT4},
	        {"cl_waiting_cancel_req", ADMIN_INT4},
	        {"sv_active", ADMIN_INT4},
	        {"sv_active_cancel", ADMIN_INT4},
	        {"sv_being_canceled", ADMIN_INT4},
	        {"sv_idle", ADMIN_INT4},
	        {"sv_used", ADMIN_INT4},
	        {"sv_tested", ADMIN_INT4},
	        {"sv_login", ADMIN_INT4},
	        {"maxwait", ADMIN_INT4},
	        {"maxwait_us", ADMIN_INT4},
	        {"pool_mode", ADMIN_TEXT},
	        /* pgtide's own */
	        {"cl_pinned", ADMIN_INT4},
	        {"sv_prepared_statements", ADMIN_INT4},
	};
	const int n = (int)(sizeof(cols) / sizeof(cols[0]));
	int64_t now = pt_now();
	struct admin_rs r;
	rs_begin(&r, b, cols, n);
	const struct pool *p;
	TAILQ_FOREACH(p, &c->ctx->pools, link)
	{
		const struct client *first = TAILQ_FIRST(&p->waiting_clients);
		int64_t maxwait = first ? now - first->wait_start : 0;
		rs_row(&r, n);
		rs_text(&r, p->db_name);
		rs_text(&r, p->user_name);
		rs_int(&r, p->n_idle_clients + p->n_active_clients);
		rs_int(&r, p->n_waiting_clients + p->n_login_wait);
		rs_int(&r, 0);
		rs_int(&r, 0);
		rs_int(&r, p->n_active);
		rs_int(&r, cancelling(&p->active));
		rs_int(&r, cancelling(&p->used));
		rs_int(&r, p->n_idle);
		rs_int(&r, p->n_used);
		rs_int(&r, 0);
		rs_int(&r, p->n_connecting);
		rs_int(&r, maxwait / 1000000);
		rs_int(&r, maxwait % 1000000);
		rs_text(&r, config_pool_mode_name(p->pool_mode));
		rs_int(&r, p->n_pinned);
		rs_int(&r, pool_prepared_count(p));
		rs_row_end(&r);
	}
	admin_put_command_complete(b, "SHOW");
}

static const char *server_state_text(const struct server *s)
{
	switch (s->state) {
	case SERVER_CONNECTING:
		return "new";
	case SERVER_IDLE:
		return "idle";
	case SERVER_SYNC:
	case SERVER_ACTIVE:
		return "active";
	default:
		return "used"; /* reset or drain: counted as sv_used in SHOW POOLS */
	}
}

static void show_servers(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        ADMIN_CONN_COLS,
	        {"id", ADMIN_INT8},
	};
	const int n = (int)(sizeof(cols) / sizeof(cols[0]));
	struct admin_rs r;
	rs_begin(&r, b, cols, n);
	const struct pool *p;
	TAILQ_FOREACH(p, &c->ctx->pools, link)
	{
		/* PgBouncer's order: active, idle, used, then those still logging in. */
		const struct server_list *lists[] = {&p->active, &p->idle, &p->used,
		                                     &p->connecting};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			const struct server *s;
			TAILQ_FOREACH(s, lists[i], link)
			{
				char addr[INET6_ADDRSTRLEN + 64], laddr[INET6_ADDRSTRLEN + 8],
				        buf[64];
				int port, lport;
				server_addrs(s, addr, sizeof(addr), &port, laddr, sizeof(laddr),
				             &lport);
				const struct client *cl = s->client;
				const char *app = cl && cl->params ? params_get(&cl->params->p,
				                                                "application_name")
				                                   : NULL;
				rs_row(&r, n);
				rs_text(&r, "S");
				rs_text(&r, p->user_name);
				rs_text(&r, p->db_name);
				rs_text(&r, server_state_text(s));
				rs_text(&r, addr);
				rs_int(&r, port);
				rs_text(&r, laddr);
				rs_int(&r, lport);
				rs_time(&r, s->created_at);
				rs_time(&r, s->query_start ? s->query_start : s->created_at);
				rs_int(&r, 0);
				rs_int(&r, 0);
				rs_int(&r, s->close_when_idle ? 1 : 0);
				rs_text(&r, ptr_text(s->id, buf, sizeof(buf)));
				rs_text(&r, cl ? ptr_text(cl->id, buf, sizeof(buf)) : "");
				rs_int(&r, s->backend_pid);
				rs_text(&r, "");
				rs_text(&r, app ? app : "");
				rs_int(&r, s->prep_cache.n);
				rs_int(&r, (int64_t)s->id);
				rs_row_end(&r);
			}
		}
	}
	admin_put_command_complete(b, "SHOW");
}

/* Servers in the pools of database db. */
static int db_server_count(const struct pt_ctx *ctx, const char *db)
{
	int n = 0;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	if (strcmp(p->db_name, db) == 0)
		n += pool_server_count(p);
	return n;
}

static int user_server_count(const struct pt_ctx *ctx, const char *user)
{
	int n = 0;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	if (strcmp(p->user_name, user) == 0)
		n += pool_server_count(p);
	return n;
}

/* True if an earlier pool has database db (a database made from "*" is listed once). */
static bool db_seen_before(const struct pt_ctx *ctx, const struct pool *upto, const char *db)
{
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		if (p == upto)
			return false;
		if (strcmp(p->db_name, db) == 0)
			return true;
	}
	return false;
}

/*
 * Calls fn for every database SHOW DATABASES lists: the [databases] entries in file order, then
 * the databases clients reached through the "*" entry (which itself is not one).
 */
static void each_database(const struct pt_ctx *ctx,
                          void (*fn)(const struct pt_ctx *ctx, const char *name,
                                     const struct config_db *db, void *arg),
                          void *arg)
{
	const struct config *cfg = &ctx->cfg;
	for (size_t i = 0; i < cfg->n_dbs; i++)
		if (strcmp(cfg->dbs[i].name, "*") != 0)
			fn(ctx, cfg->dbs[i].name, &cfg->dbs[i], arg);
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		const struct config_db *db = config_find_db(cfg, p->db_name);
		if (db && strcmp(db->name, "*") == 0 && !db_seen_before(ctx, p, p->db_name))
			fn(ctx, p->db_name, db, arg);
	}
}

static void database_row(const struct pt_ctx *ctx, const char *name, const struct config_db *db,
                         void *arg)
{
	struct admin_rs *r = arg;
	const struct config *cfg = &ctx->cfg;
	const char *host = config_db_conn_get(db, "host");
	const char *port = config_db_conn_get(db, "port");
	const char *dbname = config_db_conn_get(db, "dbname");
	const char *user = config_db_conn_get(db, "user");
	if (!host)
		host = config_db_conn_get(db, "hostaddr");
	rs_row(r, 16);
	rs_text(r, name);
	rs_text(r, host);
	rs_int(r, port && port[0] ? atoi(port) : 5432);
	rs_text(r, dbname ? dbname : name);
	rs_text(r, user && user[0] ? user : NULL);
	rs_int(r, db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size);
	rs_int(r, db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size);
	rs_int(r, db->reserve_pool >= 0 ? db->reserve_pool : cfg->reserve_pool_size);
	/* Whole seconds, fractions cut off, as PgBouncer shows it. */
	rs_int(r,
	       (db->server_lifetime >= 0 ? db->server_lifetime : cfg->server_lifetime) / 1000000);
	rs_text(r, db->pool_mode != POOL_MODE_UNSET ? config_pool_mode_name(db->pool_mode) : NULL);
	rs_int(r, db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections);
	rs_int(r, db_server_count(ctx, name));
	rs_int(r, config_db_client_limit(cfg, name));
	rs_int(r, climit_current(&ctx->db_clients, name));
	rs_int(r, pool_db_paused(ctx, name) ? 1 : 0);
	rs_int(r, pool_db_disabled(ctx, name) ? 1 : 0);
	rs_row_end(r);
}

static void show_databases(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"name", ADMIN_TEXT},
	        {"host", ADMIN_TEXT},
	        {"port", ADMIN_INT4},
	        {"database", ADMIN_TEXT},
	        {"force_user", ADMIN_TEXT},
	        {"pool_size", ADMIN_INT4},
	        {"min_pool_size", ADMIN_INT4},
	        {"reserve_pool", ADMIN_INT4},
	        {"server_lifetime", ADMIN_INT4},
	        {"pool_mode", ADMIN_TEXT},
	        {"max_connections", ADMIN_INT4},
	        {"current_connections", ADMIN_INT4},
	        {"max_client_connections", ADMIN_INT4},
	        {"current_client_connections", ADMIN_INT4},
	        {"paused", ADMIN_INT4},
	        {"disabled", ADMIN_INT4},
	};
	struct admin_rs r;
	rs_begin(&r, b, cols, 16);
	each_database(c->ctx, database_row, &r);
	admin_put_command_complete(b, "SHOW");
}

static void count_database(const struct pt_ctx *ctx, const char *name, const struct config_db *db,
                           void *arg)
{
	(void)ctx;
	(void)name;
	(void)db;
	(*(int *)arg)++;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The users SHOW USERS lists, sorted and without repeats: those in auth_file, in [users], and
 * those pools log in as. Returns the count; *out (free it) holds pointers into ctx. -1 on OOM.
 */
static int collect_users(const struct pt_ctx *ctx, const char ***out)
{
	size_t cap = ctx->users.n + ctx->cfg.n_users, n = 0;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	cap++;
	const char **v = malloc((cap ? cap : 1) * sizeof(*v));
	if (!v)
		return -1;
	for (size_t i = 0; i < ctx->users.n; i++)
		v[n++] = ctx->users.users[i].name;
	for (size_t i = 0; i < ctx->cfg.n_users; i++)
		v[n++] = ctx->cfg.users[i].name;
	TAILQ_FOREACH(p, &ctx->pools, link)
	v[n++] = p->user_name;
	qsort(v, n, sizeof(*v), cmp_names);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(v[k - 1], v[i]) != 0)
			v[k++] = v[i];
	*out = v;
	return (int)k;
}

/* A [users] override as SHOW USERS shows it: text (PgBouncer's type), NULL if not set. */
static void rs_override(struct admin_rs *r, int v)
{
	char num[16];
	if (v < 0) {
		rs_text(r, NULL);
		return;
	}
	snprintf(num, sizeof(num), "%d", v);
	rs_text(r, num);
}

static void show_users(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"name", ADMIN_TEXT},
	        {"pool_size", ADMIN_TEXT},
	        {"reserve_pool_size", ADMIN_TEXT},
	        {"pool_mode", ADMIN_TEXT},
	        {"max_user_connections", ADMIN_INT4},
	        {"current_connections", ADMIN_INT4},
	        {"max_user_client_connections", ADMIN_INT4},
	        {"current_client_connections", ADMIN_INT4},
	};
	const struct config *cfg = &c->ctx->cfg;
	const char **names;
	int n = collect_users(c->ctx, &names);
	if (n < 0) {
		admin_error(c, b, "53200", "out of memory");
		return;
	}
	struct admin_rs r;
	rs_begin(&r, b, cols, 8);
	for (int i = 0; i < n; i++) {
		const struct config_user *u = config_find_user(cfg, names[i]);
		rs_row(&r, 8);
		rs_text(&r, names[i]);
		rs_override(&r, u ? u->pool_size : -1);
		rs_override(&r, u ? u->reserve_pool_size : -1);
		rs_text(&r, u && u->pool_mode != POOL_MODE_UNSET
		                    ? config_pool_mode_name(u->pool_mode)
		                    : NULL);
		rs_int(&r, u && u->max_user_connections >= 0 ? u->max_user_connections
		                                             : cfg->max_user_connections);
		rs_int(&r, user_server_count(c->ctx, names[i]));
		rs_int(&r, config_user_client_limit(cfg, names[i]));
		rs_int(&r, climit_current(&c->ctx->user_clients, names[i]));
		rs_row_end(&r);
	}
	free(names);
	admin_put_command_complete(b, "SHOW");
}

static void config_row(const struct config_setting_view *v, void *arg)
{
	struct admin_rs *r = arg;
	rs_row(r, 4);
	rs_text(r, v->key);
	rs_text(r, v->value);
	rs_text(r, v->def);
	rs_text(r, v->changeable ? "yes" : "no");
	rs_row_end(r);
}

static void show_config(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"key", ADMIN_TEXT},
	        {"value", ADMIN_TEXT},
	        {"default", ADMIN_TEXT},
	        {"changeable", ADMIN_TEXT},
	};
	struct admin_rs r;
	rs_begin(&r, b, cols, 4);
	config_each_setting_view(&c->ctx->cfg, config_row, &r);
	admin_put_command_complete(b, "SHOW");
}

static int count_servers(const struct pt_ctx *ctx)
{
	int n = 0;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	n += pool_server_count(p);
	return n;
}

static void list_row(struct admin_rs *r, const char *name, int64_t items)
{
	rs_row(r, 2);
	rs_text(r, name);
	rs_int(r, items);
	rs_row_end(r);
}

static void show_lists(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {{"list", ADMIN_TEXT}, {"items", ADMIN_INT4}};
	const struct pt_ctx *ctx = c->ctx;
	int dbs = 0, pools = 0, clients = 0, logins = 0;
	each_database(ctx, count_database, &dbs);
	const char **names;
	int users = collect_users(ctx, &names);
	if (users < 0) {
		admin_error(c, b, "53200", "out of memory");
		return;
	}
	free(names);
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	pools++;
	const struct client *cl;
	TAILQ_FOREACH(cl, &ctx->clients, all_link)
	clients++;
	TAILQ_FOREACH(cl, &ctx->login_clients, link)
	logins++;
	struct admin_rs r;
	rs_begin(&r, b, cols, 2);
	list_row(&r, "databases", dbs);
	list_row(&r, "users", users);
	list_row(&r, "pools", pools);
	list_row(&r, "free_clients", 0); /* pgtide frees a connection's memory when it closes */
	list_row(&r, "used_clients", clients);
	list_row(&r, "login_clients", logins);
	list_row(&r, "free_servers", 0);
	list_row(&r, "used_servers", count_servers(ctx));
	list_row(&r, "dns_names", 0); /* libpq resolves names itself; pgtide keeps no cache */
	list_row(&r, "dns_zones", 0);
	list_row(&r, "dns_queries", 0);
	list_row(&r, "dns_pending", 0);
	admin_put_command_complete(b, "SHOW");
}

static void mem_row(struct admin_rs *r, const char *name, size_t size, size_t used, size_t nfree,
                    size_t total)
{
	/* PgBouncer's columns are int4: a figure beyond it shows as its largest value. */
	const size_t max = 0x7fffffff;
	rs_row(r, 5);
	rs_text(r, name);
	rs_int(r, (int64_t)(size < max ? size : max));
	rs_int(r, (int64_t)(used < max ? used : max));
	rs_int(r, (int64_t)(nfree < max ? nfree : max));
	rs_int(r, (int64_t)(total < max ? total : max));
	rs_row_end(r);
}

static size_t params_bytes(const struct params *p)
{
	size_t n = p->cap * sizeof(*p->v);
	for (size_t i = 0; i < p->n; i++)
		n += strlen(p->v[i].name) + strlen(p->v[i].value) + 2;
	return n;
}

/*
 * pgtide's own allocations by kind: objects in use, their fixed size, and memtotal with what
 * each owns (parameter tables, statement texts). Only the I/O buffers are pooled: their free
 * ones wait for reuse.
 */
static void show_mem(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"name", ADMIN_TEXT}, {"size", ADMIN_INT4},     {"used", ADMIN_INT4},
	        {"free", ADMIN_INT4}, {"memtotal", ADMIN_INT4},
	};
	const struct pt_ctx *ctx = c->ctx;
	size_t clients = 0, pools = 0, servers = (size_t)count_servers(ctx);
	const struct client *cl;
	TAILQ_FOREACH(cl, &ctx->clients, all_link)
	clients++;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	pools++;
	size_t pset_total = 0;
	for (size_t i = 0; i < ctx->psets.n_buckets; i++)
		for (const struct pset *s = ctx->psets.buckets[i]; s; s = s->next)
			pset_total += sizeof(*s) + params_bytes(&s->p) + s->status.cap;
	size_t prep_total = 0;
	for (uint32_t i = 0; i < ctx->prep.n_buckets; i++)
		for (const struct prep_stmt *s = ctx->prep.buckets[i]; s; s = s->next)
			prep_total += sizeof(*s) + s->query_len + 1 + 4u * s->n_types;
	size_t buf_size = sizeof(struct iobuf) + IO_BUF_SIZE;
	struct admin_rs r;
	rs_begin(&r, b, cols, 5);
	mem_row(&r, "client_cache", sizeof(struct client), clients, 0,
	        clients * sizeof(struct client));
	mem_row(&r, "server_cache", sizeof(struct server), servers, 0,
	        servers * sizeof(struct server));
	mem_row(&r, "pool_cache", sizeof(struct pool), pools, 0, pools * sizeof(struct pool));
	mem_row(&r, "pset_cache", sizeof(struct pset), ctx->psets.n, 0, pset_total);
	mem_row(&r, "prepared_statement_cache", sizeof(struct prep_stmt), ctx->prep.n, 0,
	        prep_total);
	mem_row(&r, "iobuf_cache", buf_size, ctx->bufs.n_total - ctx->bufs.n_free, ctx->bufs.n_free,
	        ctx->bufs.n_total * buf_size);
	admin_put_command_complete(b, "SHOW");
}

static void show_state(struct client *c, struct pbuf *b)
{
	static const struct admin_col cols[] = {{"key", ADMIN_TEXT}, {"value", ADMIN_TEXT}};
	static const char *const keys[] = {"active", "paused", "suspended"};
	static const enum pt_pause modes[] = {PT_ACTIVE, PT_PAUSED, PT_SUSPENDED};
	struct admin_rs r;
	rs_begin(&r, b, cols, 2);
	for (size_t i = 0; i < 3; i++) {
		rs_row(&r, 2);
		rs_text(&r, keys[i]);
		rs_text(&r, c->ctx->pause_mode == modes[i] ? "yes" : "no");
		rs_row_end(&r);
	}
	admin_put_command_complete(b, "SHOW");
}

/*
 * Client settings some drivers SHOW or SET on any connection: answered as PgBouncer does (SET
 * is ignored with a NOTICE), with the values the console reported at login.
 */
static const char *const fake_params[][2] = {
        {"client_encoding", "UTF8"},
        {"datestyle", "ISO, MDY"},
        {"timezone", "UTC"},
        {"standard_conforming_strings", "on"},
        {"default_transaction_isolation", "read committed"},
        {"extra_float_digits", "1"},
        {"application_name", NULL},
};

int admin_fake_param(const char *name)
{
	for (size_t i = 0; i < sizeof(fake_params) / sizeof(fake_params[0]); i++)
		if (strcasecmp(name, fake_params[i][0]) == 0)
			return (int)i;
	return -1;
}

static void show_fake_param(struct client *c, struct pbuf *b, int i)
{
	struct admin_col col = {fake_params[i][0], ADMIN_TEXT};
	const char *v = fake_params[i][1];
	if (!v) {
		v = params_get(&c->startup, "application_name");
		if (!v)
			v = "";
	}
	struct admin_rs r;
	rs_begin(&r, b, &col, 1);
	rs_row(&r, 1);
	rs_text(&r, v);
	rs_row_end(&r);
	admin_put_command_complete(b, "SHOW");
}

/* ---- SHOW STATS, STATS_TOTALS, STATS_AVERAGES: per database, as PgBouncer 1.18 ---- */

static void rs_u64(struct admin_rs *r, uint64_t v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	rs_text(r, buf);
}

static int cmp_pool_db(const void *a, const void *b)
{
	const struct pool *x = *(const struct pool *const *)a, *y = *(const struct pool *const *)b;
	return strcmp(x->db_name, y->db_name);
}

/* The counters of one database: its pools' totals and what the last stats_period added. */
struct admin_db_stats {
	const char *name;
	struct stats_counts total;
	struct stats_counts period;
};

/*
 * Sums the pools by database name, in name order. Returns how many databases are in *out
 * (malloc'ed), or -1 on OOM.
 */
static int collect_db_stats(struct pt_ctx *ctx, struct admin_db_stats **out)
{
	metrics_collect(ctx); /* socket bytes up to date */
	size_t n = 0;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	n++;
	*out = NULL;
	if (n == 0)
		return 0;
	const struct pool **v = malloc(n * sizeof(*v));
	struct admin_db_stats *dbs = calloc(n, sizeof(*dbs));
	if (!v || !dbs) {
		free(v);
		free(dbs);
		return -1;
	}
	size_t i = 0;
	TAILQ_FOREACH(p, &ctx->pools, link)
	v[i++] = p;
	qsort(v, n, sizeof(*v), cmp_pool_db);
	int nd = 0;
	for (i = 0; i < n; i++) {
		if (nd == 0 || strcmp(dbs[nd - 1].name, v[i]->db_name) != 0)
			dbs[nd++].name = v[i]->db_name;
		stats_counts_add(&dbs[nd - 1].total, &v[i]->stats);
		stats_counts_add(&dbs[nd - 1].period, &v[i]->stats_period);
	}
	free(v);
	*out = dbs;
	return nd;
}

static void rs_counts(struct admin_rs *r, const struct stats_counts *s)
{
	rs_u64(r, s->xact_count);
	rs_u64(r, s->query_count);
	rs_u64(r, s->bytes_received);
	rs_u64(r, s->bytes_sent);
	rs_u64(r, s->xact_time);
	rs_u64(r, s->query_time);
	rs_u64(r, s->wait_time);
}

/* which: 't' totals, 'a' averages, 's' both (SHOW STATS). */
static void show_stats_of(struct client *c, struct pbuf *b, char which)
{
	static const struct admin_col all[] = {
	        {"database", ADMIN_TEXT},
	        {"total_xact_count", ADMIN_NUMERIC},
	        {"total_query_count", ADMIN_NUMERIC},
	        {"total_received", ADMIN_NUMERIC},
	        {"total_sent", ADMIN_NUMERIC},
	        {"total_xact_time", ADMIN_NUMERIC},
	        {"total_query_time", ADMIN_NUMERIC},
	        {"total_wait_time", ADMIN_NUMERIC},
	        {"avg_xact_count", ADMIN_NUMERIC},
	        {"avg_query_count", ADMIN_NUMERIC},
	        {"avg_recv", ADMIN_NUMERIC},
	        {"avg_sent", ADMIN_NUMERIC},
	        {"avg_xact_time", ADMIN_NUMERIC},
	        {"avg_query_time", ADMIN_NUMERIC},
	        {"avg_wait_time", ADMIN_NUMERIC},
	};
	static const struct admin_col part[] = {
	        {"database", ADMIN_TEXT},       {"xact_count", ADMIN_NUMERIC},
	        {"query_count", ADMIN_NUMERIC}, {"bytes_received", ADMIN_NUMERIC},
	        {"bytes_sent", ADMIN_NUMERIC},  {"xact_time", ADMIN_NUMERIC},
	        {"query_time", ADMIN_NUMERIC},  {"wait_time", ADMIN_NUMERIC},
	};
	const struct admin_col *cols = which == 's' ? all : part;
	int n = which == 's' ? (int)(sizeof(all) / sizeof(all[0]))
	                     : (int)(sizeof(part) / sizeof(part[0]));
	struct admin_db_stats *dbs;
	int nd = collect_db_stats(c->ctx, &dbs);
	if (nd < 0) {
		admin_error(c, b, "53200", "out of memory");
		return;
	}
	struct admin_rs r;
	rs_begin(&r, b, cols, n);
	for (int i = 0; i < nd; i++) {
		struct stats_counts avg;
		stats_average(&avg, &dbs[i].period, c->ctx->stats_period_usec);
		rs_row(&r, n);
		rs_text(&r, dbs[i].name);
		if (which != 'a')
			rs_counts(&r, &dbs[i].total);
		if (which != 't')
			rs_counts(&r, &avg);
		rs_row_end(&r);
	}
	free(dbs);
	admin_put_command_complete(b, "SHOW");
}

static void show_stats(struct client *c, struct pbuf *b)
{
	show_stats_of(c, b, 's');
}

static void show_stats_totals(struct client *c, struct pbuf *b)
{
	show_stats_of(c, b, 't');
}

static void show_stats_averages(struct client *c, struct pbuf *b)
{
	show_stats_of(c, b, 'a');
}

static const struct {
	const char *name;
	void (*fn)(struct client *c, struct pbuf *b);
} admin_shows[] = {
        {"help", show_help},
        {"version", show_version},
        {"config", show_config},
        {"databases", show_databases},
        {"pools", show_pools},
        {"clients", show_clients},
        {"servers", show_servers},
        {"users", show_users},
        {"lists", show_lists},
        {"mem", show_mem},
        {"state", show_state},
        {"stats", show_stats},
        {"stats_totals", show_stats_totals},
        {"stats_averages", show_stats_averages},
        {"errors", show_errors},
        {"transactions", show_transactions},
};

/* ---- parsing ---- */

/* The longest argument accepted (database names are at most 63 bytes in PostgreSQL). */
#define ADMIN_ARG_MAX 256

bool admin_read_token(const char **pp, const char *end, char quote, const char *bare, bool empty_ok,
                      char *out, size_t n)
{
	const char *p = sqlscan_skip_space(*pp, end);
	size_t o = 0;
	if (p < end && *p == quote) {
		for (p++;; p++) {
			if (p >= end)
				return false;
			if (*p == quote) {
				if (p + 1 < end && p[1] == quote)
					p++;
				else
					break;
			}
			if (o + 1 >= n)
				return false;
			out[o++] = *p;
		}
		p++;
		if (o == 0 && !empty_ok)
			return false;
	} else {
		while (p < end && (isalnum((unsigned char)*p) || strchr(bare, *p))) {
			if (o + 1 >= n)
				return false;
			out[o++] = *p++;
		}
		if (o == 0)
			return false;
	}
	out[o] = '\0';
	*pp = p;
	return true;
}

/*
 * A command argument: a "quoted" name ("" for a quote) or a bare word of letters, digits and
 * _ . - $ (database names keep their case, as in PgBouncer).
 */
static bool read_arg(const char **pp, const char *end, char *out, size_t n)
{
	return admin_read_token(pp, end, '"', "_.-$", false, out, n);
}

static void invalid_command(struct client *c, struct pbuf *b, const char *sql, size_t len)
{
	const char *end = sql + len;
	const char *q = sqlscan_skip_space(sql, end);
	size_t n = (size_t)(end - q);
	while (n > 0 &&
	       (q[n - 1] == ' ' || q[n - 1] == '\n' || q[n - 1] == '\t' || q[n - 1] == '\r'))
		n--;
	admin_error(c, b, "42601", "invalid command '%.*s', use SHOW HELP;", n > 80 ? 80 : (int)n,
	            q);
}

static enum admin_result run_show(struct client *c, struct pbuf *b, const char *p, const char *end)
{
	char word[SQLSCAN_NAME_MAX + 1];
	if (!sqlscan_ident(&p, end, word)) {
		admin_error(c, b, "42601", "SHOW needs a subject, use SHOW HELP;");
		return ADMIN_FAILED;
	}
	if (sqlscan_skip_space(p, end) != end) {
		admin_error(c, b, "42601", "unexpected text after SHOW %s", word);
		return ADMIN_FAILED;
	}
	for (size_t i = 0; i < sizeof(admin_shows) / sizeof(admin_shows[0]); i++) {
		if (strcmp(word, admin_shows[i].name) == 0) {
			admin_shows[i].fn(c, b);
			return ADMIN_DONE;
		}
	}
	int f = admin_fake_param(word);
	if (f >= 0) {
		show_fake_param(c, b, f);
		return ADMIN_DONE;
	}
	admin_error(c, b, "42601", "unknown SHOW subject '%s', use SHOW HELP;", word);
	return ADMIN_FAILED;
}

/* Runs one statement of a console query. */
static enum admin_result run_command(struct client *c, struct pbuf *b, const char *sql, size_t len)
{
	const char *p = sql, *end = sql + len;
	if (sqlscan_word(&p, end, "show"))
		return run_show(c, b, p, end);
	if (sqlscan_word(&p, end, "set"))
		return admin_control_set(c, b, p, end);
	char word[SQLSCAN_NAME_MAX + 1];
	const struct admin_cmd *cmd = NULL;
	if (sqlscan_ident(&p, end, word))
		cmd = admin_control_find(word);
	if (!cmd) {
		invalid_command(c, b, sql, len);
		return ADMIN_FAILED;
	}
	char arg[ADMIN_ARG_MAX];
	bool has_arg = cmd->arg != ARG_NONE && read_arg(&p, end, arg, sizeof(arg));
	if (sqlscan_skip_space(p, end) != end) {
		invalid_command(c, b, sql, len);
		return ADMIN_FAILED;
	}
	if (!c->admin_write) {
		/* stats_users may only look. */
		char upper[SQLSCAN_NAME_MAX + 1];
		size_t i = 0;
		for (; word[i]; i++)
			upper[i] = (char)toupper((unsigned char)word[i]);
		upper[i] = '\0';
		admin_error(c, b, "42501", "permission denied for %s: admin access needed", upper);
		return ADMIN_FAILED;
	}
	if (!has_arg && cmd->arg == ARG_DB) {
		admin_error(c, b, "42601", "a database is required");
		return ADMIN_FAILED;
	}
	return cmd->fn(c, b, has_arg ? arg : NULL);
}

/* ---- the simple query protocol ---- */

struct admin_run {
	struct client *c;
	struct pbuf *b;
	const char *end;
	enum admin_result last;
	size_t n;
};

static bool run_one(void *arg, const char *stmt, size_t len)
{
	struct admin_run *run = arg;
	run->n++;
	run->last = run_command(run->c, run->b, stmt, len);
	if (run->last == ADMIN_WAITING) {
		/* What follows runs once the command answers (finish_wait). */
		const char *rest = stmt + len;
		admin_control_keep_rest(run->c, rest, (size_t)(run->end - rest));
	}
	if (run->c->state == CLIENT_CLOSED)
		run->last = ADMIN_GONE;
	return run->last == ADMIN_DONE;
}

enum admin_result admin_run_statements(struct client *c, struct pbuf *b, const char *sql,
                                       size_t len, size_t *n_run)
{
	struct admin_run run = {c, b, sql + len, ADMIN_DONE, 0};
	sqlscan_split(sql, len, run_one, &run);
	if (n_run)
		*n_run = run.n;
	return run.last;
}

/* Answers one Query; false if the console client was closed by it. */
static bool run_query(struct client *c, const char *sql, size_t len)
{
	struct pbuf b = {0};
	size_t n = 0;
	enum admin_result r = admin_run_statements(c, &b, sql, len, &n);
	if (r == ADMIN_GONE) {
		pbuf_free(&b);
		return false;
	}
	if (n == 0) {
		size_t off = proto_msg_begin(&b, 'I'); /* EmptyQueryResponse */
		proto_msg_end(&b, off);
	}
	if (r != ADMIN_WAITING)
		proto_build_ready(&b, 'I');
	if (!b.oom)
		io_write(&c->io, b.data, b.len);
	pbuf_free(&b);
	return true;
}

enum pump_action admin_on_message(struct client *c, char type, const uint8_t *msg, uint32_t len,
                                  bool whole)
{
	if (c->admin_wait)
		return PUMP_HOLD; /* a command is still waiting: the rest comes after its answer */
	c->last_active = pt_now();
	switch (type) {
	case 'Q': {
		if (len > ADMIN_MAX_QUERY) {
			client_close(c, "54000", "admin console command longer than %u bytes",
			             ADMIN_MAX_QUERY);
			return PUMP_CLOSED;
		}
		if (!whole)
			return PUMP_NEED_WHOLE;
		const char *sql = (const char *)msg + PROTO_HEADER_LEN;
		size_t n = len - PROTO_HEADER_LEN;
		if (n > 0 && sql[n - 1] == 0)
			n--;
		c->admin_skip = false;
		return run_query(c, sql, n) ? PUMP_DROP : PUMP_CLOSED;
	}
	case 'S':
		if (whole) {
			struct pbuf b = {0};
			proto_build_ready(&b, 'I');
			if (!b.oom)
				io_write(&c->io, b.data, b.len);
			pbuf_free(&b);
		}
		c->admin_skip = false;
		return PUMP_DROP;
	case 'H':
	case 'd':
	case 'c':
	case 'f':
		return PUMP_DROP;
	default:
		/* Parse, Bind, Describe, Execute, Close, FunctionCall: one error per batch. */
		if (!c->admin_skip) {
			struct pbuf b = {0};
			admin_error(c, &b, "0A000",
			            "the admin console supports the simple query protocol only");
			if (type == 'F')
				proto_build_ready(&b, 'I');
			else
				c->admin_skip = true;
			if (!b.oom)
				io_write(&c->io, b.data, b.len);
			pbuf_free(&b);
		}
		return PUMP_DROP;
	}
}

/* ---- login ---- */

void admin_login(struct client *c)
{
	struct pt_ctx *ctx = c->ctx;
	bool admin = config_list_contains(ctx->cfg.admin_users, c->user);
	bool stats = config_list_contains(ctx->cfg.stats_users, c->user);
	if (!admin && !stats) {
		/* Worded so that adapter-pg's 28000 parsing finds the database. */
		client_close(c, "28000",
		             "permission denied for user \"%s\", database \"%s\", not listed in "
		             "admin_users or stats_users",
		             c->user, c->database);
		return;
	}
	c->admin = true;
	c->admin_write = admin;
	if (!cancel_register(ctx->cancels, c, &c->cancel_pid, &c->cancel_key)) {
		client_close(c, "53200", "out of memory");
		return;
	}
	c->cancel_registered = true;
	client_set_state(c, CLIENT_IDLE);

	static const char *const fixed[][2] = {
	        {"server_version", "15.0 (" PGTIDE_VERSION_STRING ")"},
	        {"server_encoding", "UTF8"},
	        {"client_encoding", "UTF8"},
	        {"DateStyle", "ISO, MDY"},
	        {"IntervalStyle", "postgres"},
	        {"TimeZone", "UTC"},
	        {"integer_datetimes", "on"},
	        {"standard_conforming_strings", "on"},
	        {"is_superuser", "off"},
	};
	struct pbuf b = {0};
	proto_build_auth(&b, 0, NULL, 0);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		proto_build_parameter_status(&b, fixed[i][0], fixed[i][1]);
	const char *app = params_get(&c->startup, "application_name");
	proto_build_parameter_status(&b, "application_name", app ? app : "");
	proto_build_backend_key(&b, c->cancel_pid, c->cancel_key);
	proto_build_ready(&b, 'I');
	if (!b.oom)
		io_write(&c->io, b.data, b.len);
	pbuf_free(&b);
	c->last_active = pt_now();
	if (ctx->cfg.log_connections) {
		char pfx[256];
		log_info("%s admin console login (%s)", client_prefix(c, pfx, sizeof(pfx)),
		         admin ? "admin_users" : "stats_users");
	}
	if (io_in_len(&c->io) > 0)
		io_pump(&c->io);
}
