/*
 * The admin console (see admin.h and docs/admin.md): the simple query protocol, answered from
 * pgtide's own state. Result sets are built whole and written at once; they are small next to
 * the traffic of the clients they describe.
 */
#include "pgtide/admin.h"

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

#include "pgtide/cancel.h"
#include "pgtide/client.h"
#include "pgtide/config.h"
#include "pgtide/errmap.h"
#include "pgtide/log.h"
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
};

static const struct {
	uint32_t oid;
	int16_t len;
} admin_types[] = {
        [ADMIN_TEXT] = {25, -1}, [ADMIN_INT4] = {23, 4},          [ADMIN_INT8] = {20, 8},
        [ADMIN_BOOL] = {16, 1},  [ADMIN_TIMESTAMPTZ] = {1184, 8},
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
};

bool admin_is_console_db(const char *name)
{
	return name && (strcmp(name, "pgtide") == 0 || strcmp(name, "pgbouncer") == 0);
}

/* ---- building results ---- */

static void rs_begin(struct admin_rs *r, struct pbuf *b, const struct admin_col *cols, int n)
{
	r->b = b;
	r->rows = 0;
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
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t wall = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - (pt_now() - mono_usec);
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

static void put_command_complete(struct pbuf *b, const char *tag)
{
	size_t off = proto_msg_begin(b, 'C');
	pbuf_put_str(b, tag);
	proto_msg_end(b, off);
}

/* An ERROR for the console user, classified and counted like every other error. */
static void admin_error(struct client *c, struct pbuf *b, const char *sqlstate, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
static void admin_error(struct client *c, struct pbuf *b, const char *sqlstate, const char *fmt,
                        ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	client_own_error(c, "ERROR", sqlstate, msg, b);
}

/* ---- SHOW commands ---- */

static void show_help(struct client *c, struct pbuf *b)
{
	(void)c;
	static const char *const lines[] = {
	        "Console usage",
	        "\tSHOW HELP|VERSION|POOLS|CLIENTS|ERRORS|TRANSACTIONS",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		proto_build_notice(b, "NOTICE", "00000", lines[i]);
	}
	put_command_complete(b, "SHOW");
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
	put_command_complete(b, "SHOW");
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
	put_command_complete(b, "SHOW");
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
	put_command_complete(b, "SHOW");
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

static void show_clients(struct client *self, struct pbuf *b)
{
	static const struct admin_col cols[] = {
	        {"type", ADMIN_TEXT},
	        {"user", ADMIN_TEXT},
	        {"database", ADMIN_TEXT},
	        {"state", ADMIN_TEXT},
	        {"addr", ADMIN_TEXT},
	        {"port", ADMIN_INT4},
	        {"local_addr", ADMIN_TEXT},
	        {"local_port", ADMIN_INT4},
	        {"connect_time", ADMIN_TIMESTAMPTZ},
	        {"request_time", ADMIN_TIMESTAMPTZ},
	        {"wait", ADMIN_INT4},
	        {"wait_us", ADMIN_INT4},
	        {"close_needed", ADMIN_INT4},
	        {"ptr", ADMIN_TEXT},
	        {"link", ADMIN_TEXT},
	        {"remote_pid", ADMIN_INT4},
	        {"tls", ADMIN_TEXT},
	        {"application_name", ADMIN_TEXT},
	        {"prepared_statements", ADMIN_INT4},
	        {"id", ADMIN_INT8},
	        {"txn_status", ADMIN_TEXT},
	        {"txn_depth", ADMIN_INT4},
	        {"savepoints", ADMIN_TEXT},
	        {"isolation", ADMIN_TEXT},
	        {"read_only", ADMIN_BOOL},
	        {"pinned", ADMIN_TEXT},
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
		char host[INET6_ADDRSTRLEN + 8], lhost[INET6_ADDRSTRLEN + 8] = "unix", buf[64];
		int port, lport = 0;
		client_addr(c, host, sizeof(host), &port);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(c->io.fd, (struct sockaddr *)&ss, &sl) == 0) {
			if (ss.ss_family == AF_INET) {
				const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
				inet_ntop(AF_INET, &in->sin_addr, lhost, sizeof(lhost));
				lport = ntohs(in->sin_port);
			} else if (ss.ss_family == AF_INET6) {
				const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
				inet_ntop(AF_INET6, &in6->sin6_addr, lhost, sizeof(lhost));
				lport = ntohs(in6->sin6_port);
			}
		}
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
		snprintf(buf, sizeof(buf), "%llx", (unsigned long long)c->id);
		rs_text(&r, buf);
		if (c->server)
			snprintf(buf, sizeof(buf), "%llx", (unsigned long long)c->server->id);
		else
			buf[0] = 0;
		rs_text(&r, buf);
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
	put_command_complete(b, "SHOW");
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
		rs_int(&r, 0);
		rs_int(&r, 0);
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
	put_command_complete(b, "SHOW");
}

static const struct {
	const char *name;
	void (*fn)(struct client *c, struct pbuf *b);
} admin_shows[] = {
        {"help", show_help},       {"version", show_version},
        {"errors", show_errors},   {"transactions", show_transactions},
        {"clients", show_clients}, {"pools", show_pools},
};

/* ---- commands ---- */

/* Runs one statement of a console query; false if it failed (the rest is skipped). */
static bool run_command(struct client *c, struct pbuf *b, const char *sql, size_t len)
{
	const char *p = sql, *end = sql + len;
	char word[SQLSCAN_NAME_MAX + 1];
	if (sqlscan_word(&p, end, "show")) {
		if (!sqlscan_ident(&p, end, word)) {
			admin_error(c, b, "42601", "SHOW needs a subject, use SHOW HELP;");
			return false;
		}
		if (sqlscan_skip_space(p, end) != end) {
			admin_error(c, b, "42601", "unexpected text after SHOW %s", word);
			return false;
		}
		for (size_t i = 0; i < sizeof(admin_shows) / sizeof(admin_shows[0]); i++) {
			if (strcmp(word, admin_shows[i].name) == 0) {
				admin_shows[i].fn(c, b);
				return true;
			}
		}
		admin_error(c, b, "42601", "unknown SHOW subject '%s', use SHOW HELP;", word);
		return false;
	}
	const char *q = sqlscan_skip_space(sql, end);
	int n = 0;
	while (q + n < end && n < 40 && q[n] != ' ' && q[n] != '\n' && q[n] != '\t')
		n++;
	admin_error(c, b, "42601", "invalid command '%.*s', use SHOW HELP;", n, q);
	return false;
}

struct admin_run {
	struct client *c;
	struct pbuf *b;
};

static bool run_one(void *arg, const char *stmt, size_t len)
{
	struct admin_run *run = arg;
	return run_command(run->c, run->b, stmt, len);
}

static void run_query(struct client *c, const char *sql, size_t len)
{
	struct pbuf b = {0};
	struct admin_run run = {c, &b};
	if (sqlscan_split(sql, len, run_one, &run) == 0) {
		size_t off = proto_msg_begin(&b, 'I'); /* EmptyQueryResponse */
		proto_msg_end(&b, off);
	}
	proto_build_ready(&b, 'I');
	if (!b.oom)
		io_write(&c->io, b.data, b.len);
	pbuf_free(&b);
}

enum pump_action admin_on_message(struct client *c, char type, const uint8_t *msg, uint32_t len,
                                  bool whole)
{
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
		run_query(c, sql, n);
		return PUMP_DROP;
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
