/* Pools per (database, user): server lists, waiting clients, limits and timeouts. */
#include "pgtide/pool.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pgtide/log.h"
#include "pgtide/pgtide.h"

#define PLOG(level, p, fmt, ...)                                                                   \
	log_msg(level, "%s/%s " fmt, (p)->db_name, (p)->user_name, ##__VA_ARGS__)

void pool_forget_login(struct pool *p)
{
	params_free(&p->login_startup);
	if (p->login_pset)
		pset_release(&p->ctx->psets, p->login_pset);
	p->login_pset = NULL;
}

int pool_server_count(const struct pool *p)
{
	return p->n_connecting + p->n_idle + p->n_active + p->n_used;
}

static void free_conn_arrays(struct pool *p)
{
	if (p->conn_keys) {
		for (char **k = p->conn_keys; *k; k++)
			free(*k);
		free(p->conn_keys);
	}
	if (p->conn_values) {
		for (size_t i = 0; p->conn_keys && p->conn_values[i]; i++)
			free(p->conn_values[i]);
		free(p->conn_values);
	}
	p->conn_keys = p->conn_values = NULL;
}

/* Appends key=value to the NULL-terminated arrays (n counts entries so far). */
static bool push_kv(char ***keys, char ***values, size_t *n, const char *k, const char *v)
{
	char **nk = realloc(*keys, (*n + 2) * sizeof(char *));
	if (!nk)
		return false;
	*keys = nk;
	char **nv = realloc(*values, (*n + 2) * sizeof(char *));
	if (!nv)
		return false;
	*values = nv;
	nk[*n] = strdup(k);
	nv[*n] = strdup(v);
	if (!nk[*n] || !nv[*n])
		return false;
	(*n)++;
	nk[*n] = nv[*n] = NULL;
	return true;
}

/* libpq's name of a TLS version (ssl_min_protocol_version / ssl_max_protocol_version). */
static const char *libpq_tls_version(unsigned bit)
{
	switch (bit) {
	case CONFIG_TLS_V1_0:
		return "TLSv1";
	case CONFIG_TLS_V1_1:
		return "TLSv1.1";
	case CONFIG_TLS_V1_2:
		return "TLSv1.2";
	default:
		return "TLSv1.3";
	}
}

/*
 * server_tls_* as libpq keywords, for what the [databases] entry does not say itself: the
 * entry's own sslmode=, sslrootcert=, sslcert=, sslkey= and ssl_*_protocol_version= win.
 * libpq carries them out (certificate checks, host name checks); after takeover server.c
 * speaks through libpq's SSL object.
 */
static bool push_server_tls(char ***keys, char ***values, size_t *n, const struct config *cfg,
                            const struct config_db *db)
{
	static const struct {
		const char *keyword;
		size_t offset;
	} files[] = {
	        {"sslrootcert", offsetof(struct config, server_tls_ca_file)},
	        {"sslcert", offsetof(struct config, server_tls_cert_file)},
	        {"sslkey", offsetof(struct config, server_tls_key_file)},
	};
	bool ok = true;
	if (!config_db_conn_get(db, "sslmode"))
		ok = push_kv(keys, values, n, "sslmode",
		             cfg->server_tls_sslmode ? cfg->server_tls_sslmode : "disable");
	for (size_t i = 0; ok && i < sizeof(files) / sizeof(files[0]); i++) {
		const char *v = *(char *const *)((const char *)cfg + files[i].offset);
		if (v && v[0] && !config_db_conn_get(db, files[i].keyword))
			ok = push_kv(keys, values, n, files[i].keyword, v);
	}
	/* libpq takes a range: a list with a hole (tlsv1.0,tlsv1.2) becomes 1.0 to 1.2. */
	unsigned mask;
	if (ok && config_tls_protocols_parse(cfg->server_tls_protocols, &mask)) {
		unsigned lo = mask & -mask, hi = lo;
		for (unsigned b = lo; b && b <= CONFIG_TLS_V1_3; b <<= 1)
			if (mask & b)
				hi = b;
		if (!config_db_conn_get(db, "ssl_min_protocol_version"))
			ok = push_kv(keys, values, n, "ssl_min_protocol_version",
			             libpq_tls_version(lo));
		if (ok && !config_db_conn_get(db, "ssl_max_protocol_version"))
			ok = push_kv(keys, values, n, "ssl_max_protocol_version",
			             libpq_tls_version(hi));
	}
	return ok;
}

/*
 * tcp_keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt and tcp_user_timeout as libpq's
 * keepalives* and tcp_user_timeout keywords, so libpq sets them on each socket it opens, before
 * it connects (pgtide takes the socket over only after login). 0 leaves libpq's and the OS's
 * defaults (libpq turns keepalive on by itself). The entry's own keywords win.
 */
static bool push_server_tcp(char ***keys, char ***values, size_t *n, const struct config *cfg,
                            const struct config_db *db)
{
	const struct {
		const char *keyword;
		int value;
	} opts[] = {
	        {"keepalives_idle", cfg->tcp_keepalive ? cfg->tcp_keepidle : 0},
	        {"keepalives_interval", cfg->tcp_keepalive ? cfg->tcp_keepintvl : 0},
	        {"keepalives_count", cfg->tcp_keepalive ? cfg->tcp_keepcnt : 0},
	        {"tcp_user_timeout", cfg->tcp_user_timeout},
	};
	bool ok = true;
	if (!cfg->tcp_keepalive && !config_db_conn_get(db, "keepalives"))
		ok = push_kv(keys, values, n, "keepalives", "0");
	for (size_t i = 0; ok && i < sizeof(opts) / sizeof(opts[0]); i++) {
		char v[16];
		if (opts[i].value <= 0 || config_db_conn_get(db, opts[i].keyword))
			continue;
		snprintf(v, sizeof(v), "%d", opts[i].value);
		ok = push_kv(keys, values, n, opts[i].keyword, v);
	}
	return ok;
}

/*
 * Builds the libpq keywords for this pool's server connections from its [databases] entry:
 * dbname defaults to the entry's name (the client's for "*"), user to the pool's user, the
 * password to what pgtide knows for that user; GSS encryption is off unless asked for (the
 * default probes for Kerberos credentials on every connect); TLS as server_tls_* say and
 * keepalives and the user timeout as tcp_* say, unless the entry says otherwise.
 */
static bool build_conn(struct pool *p, const struct config_db *db)
{
	char **keys = NULL, **values = NULL;
	size_t n = 0;
	bool ok = true;
	bool has_dbname = false, has_user = false, has_password = false, has_gss = false;
	for (size_t i = 0; i < db->n_conn && ok; i++) {
		const char *k = db->conn[i].key;
		has_dbname |= strcmp(k, "dbname") == 0;
		has_user |= strcmp(k, "user") == 0;
		has_password |= strcmp(k, "password") == 0;
		has_gss |= strcmp(k, "gssencmode") == 0;
		ok = push_kv(&keys, &values, &n, k, db->conn[i].value);
	}
	if (ok && !has_dbname)
		ok = push_kv(&keys, &values, &n, "dbname", p->db_name);
	if (ok && !has_user)
		ok = push_kv(&keys, &values, &n, "user", p->user_name);
	if (ok && !has_password && p->password)
		ok = push_kv(&keys, &values, &n, "password", p->password);
	if (ok && !has_gss)
		ok = push_kv(&keys, &values, &n, "gssencmode", "disable");
	if (ok)
		ok = push_server_tls(&keys, &values, &n, &p->ctx->cfg, db);
	/* [databases] client_encoding=, datestyle=, timezone= are the server session's defaults. */
	struct pbuf opts = {0};
	if (db->client_encoding && ok)
		ok = push_kv(&keys, &values, &n, "client_encoding", db->client_encoding);
	if (db->datestyle) {
		pbuf_put(&opts, "-c datestyle=", 13);
		for (const char *c = db->datestyle; *c; c++) {
			if (*c == ' ' || *c == '\\')
				pbuf_put_u8(&opts, '\\');
			pbuf_put_u8(&opts, (uint8_t)*c);
		}
	}
	if (db->timezone) {
		if (opts.len)
			pbuf_put_u8(&opts, ' ');
		pbuf_put(&opts, "-c timezone=", 12);
		for (const char *c = db->timezone; *c; c++) {
			if (*c == ' ' || *c == '\\')
				pbuf_put_u8(&opts, '\\');
			pbuf_put_u8(&opts, (uint8_t)*c);
		}
	}
	if (opts.len && ok) {
		pbuf_put_u8(&opts, 0);
		ok = !opts.oom && push_kv(&keys, &values, &n, "options", (const char *)opts.data);
	}
	pbuf_free(&opts);
	/* Socket options apply to connections opened after a change: no reason to replace the
	 * pool's servers, so the signature below stops before them. */
	size_t n_sig = n;
	if (ok)
		ok = push_server_tcp(&keys, &values, &n, &p->ctx->cfg, db);
	if (!ok || !keys) {
		if (keys) {
			for (size_t i = 0; i < n; i++)
				free(keys[i]);
			for (size_t i = 0; i < n; i++)
				free(values[i]);
		}
		free(keys);
		free(values);
		return false;
	}
	free_conn_arrays(p);
	p->conn_keys = keys;
	p->conn_values = values;

	/* A signature of the connection settings, to notice a change on reload. */
	struct pbuf sig = {0};
	for (size_t i = 0; i < n_sig; i++) {
		pbuf_put_str(&sig, keys[i]);
		pbuf_put_str(&sig, values[i]);
	}
	pbuf_put_u8(&sig, 0);
	bool changed =
	        !p->conninfo_sig || sig.oom || memcmp(p->conninfo_sig, sig.data, sig.len) != 0;
	if (changed && p->conninfo_sig) {
		struct server *s;
		TAILQ_FOREACH(s, &p->idle, link) s->close_when_idle = true;
		TAILQ_FOREACH(s, &p->active, link) s->close_when_idle = true;
		TAILQ_FOREACH(s, &p->used, link) s->close_when_idle = true;
		p->have_welcome = false;
		params_free(&p->welcome);
		pool_forget_login(p);
		PLOG(LOG_LEVEL_LOG, p, "connection settings changed: servers will be replaced");
	}
	free(p->conninfo_sig);
	p->conninfo_sig = sig.oom ? NULL : (char *)sig.data;
	if (sig.oom)
		pbuf_free(&sig);
	return true;
}

/* Resolves the pool's settings from [databases], [users] and [pgtide]. */
static bool resolve_settings(struct pool *p)
{
	struct config *cfg = &p->ctx->cfg;
	const struct config_db *db = config_find_db(cfg, p->db_name);
	if (!db) {
		p->db_missing = true;
		return false;
	}
	p->db_missing = false;
	const struct config_user *u = config_find_user(cfg, p->user_name);
	p->pool_mode = cfg->pool_mode;
	if (db->pool_mode != POOL_MODE_UNSET)
		p->pool_mode = db->pool_mode;
	if (u && u->pool_mode != POOL_MODE_UNSET)
		p->pool_mode = u->pool_mode;
	p->pool_size = db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size;
	if (u && u->pool_size >= 0)
		p->pool_size = u->pool_size;
	p->min_pool_size = db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size;
	p->reserve_pool = db->reserve_pool >= 0 ? db->reserve_pool : cfg->reserve_pool_size;
	if (u && u->reserve_pool_size >= 0)
		p->reserve_pool = u->reserve_pool_size;
	p->max_db_connections =
	        db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections;
	p->max_user_connections = u && u->max_user_connections >= 0 ? u->max_user_connections
	                                                            : cfg->max_user_connections;
	p->server_lifetime = db->server_lifetime >= 0 ? db->server_lifetime : cfg->server_lifetime;
	p->query_timeout = u && u->query_timeout >= 0 ? u->query_timeout : cfg->query_timeout;
	p->idle_transaction_timeout = u && u->idle_transaction_timeout >= 0
	                                      ? u->idle_transaction_timeout
	                                      : cfg->idle_transaction_timeout;
	p->transaction_timeout = u && u->transaction_timeout >= 0 ? u->transaction_timeout
	                                                          : cfg->transaction_timeout;
	/* The janitor walks idle clients only if one of them may time out. */
	p->client_idle_check = cfg->client_idle_timeout > 0;
	for (size_t i = 0; i < cfg->n_users && !p->client_idle_check; i++)
		p->client_idle_check = cfg->users[i].client_idle_timeout > 0;
	free(p->connect_query);
	p->connect_query = db->connect_query ? strdup(db->connect_query) : NULL;

	/* The server login password: the entry's, else the user file's plain secret. */
	if (!config_db_conn_get(db, "password")) {
		const struct auth_user *au = auth_userlist_find(&p->ctx->users, p->user_name);
		if (au && au->kind == AUTH_SECRET_PLAIN && au->secret[0]) {
			free(p->password);
			p->password = strdup(au->secret);
		}
	}
	return build_conn(p, db);
}

void pool_client_settings(struct pool *p, struct client *c)
{
	const struct config *cfg = &p->ctx->cfg;
	const struct config_user *u = config_find_user(cfg, c->user);
	c->client_idle_timeout = u && u->client_idle_timeout >= 0 ? u->client_idle_timeout
	                                                          : cfg->client_idle_timeout;
}

static void refresh_clients(struct pool *p, struct client_list *list)
{
	struct client *c;
	TAILQ_FOREACH(c, list, link) pool_client_settings(p, c);
}

void pool_refresh(struct pool *p)
{
	if (!resolve_settings(p))
		PLOG(LOG_LEVEL_WARNING, p, "database entry removed: new clients are refused");
	refresh_clients(p, &p->login_wait);
	refresh_clients(p, &p->idle_clients);
	refresh_clients(p, &p->waiting_clients);
	refresh_clients(p, &p->active_clients);
}

struct pool *pool_get(struct pt_ctx *ctx, const char *database, const char *user,
                      const char *client_password, const char **sqlstate, char **msg)
{
	const struct config_db *db = config_find_db(&ctx->cfg, database);
	if (!db) {
		*sqlstate = "3D000";
		if (asprintf(msg, "database \"%s\" does not exist", database) < 0)
			*msg = NULL;
		return NULL;
	}
	const char *forced = config_db_conn_get(db, "user");
	const char *login_user = forced && forced[0] ? forced : user;

	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		if (strcmp(p->db_name, database) == 0 && strcmp(p->user_name, login_user) == 0)
			break;
	}
	if (p) {
		if (p->db_missing) {
			*sqlstate = "3D000";
			if (asprintf(msg, "database \"%s\" does not exist", database) < 0)
				*msg = NULL;
			return NULL;
		}
		if (!p->password && client_password && !p->forced_user) {
			p->password = strdup(client_password);
			resolve_settings(p);
		}
		return p;
	}

	p = calloc(1, sizeof(*p));
	if (!p) {
		*sqlstate = "53200";
		*msg = strdup("out of memory");
		return NULL;
	}
	p->ctx = ctx;
	p->db_name = strdup(database);
	p->user_name = strdup(login_user);
	p->forced_user = forced && forced[0];
	TAILQ_INIT(&p->login_wait);
	TAILQ_INIT(&p->idle_clients);
	TAILQ_INIT(&p->waiting_clients);
	TAILQ_INIT(&p->active_clients);
	TAILQ_INIT(&p->connecting);
	TAILQ_INIT(&p->idle);
	TAILQ_INIT(&p->active);
	TAILQ_INIT(&p->used);
	if (client_password && !p->forced_user)
		p->password = strdup(client_password);
	if (!p->db_name || !p->user_name || !resolve_settings(p)) {
		pool_free(p);
		*sqlstate = "53200";
		*msg = strdup("out of memory");
		return NULL;
	}
	p->paused = ctx->pause_mode == PT_PAUSED || pool_db_paused(ctx, database);
	TAILQ_INSERT_TAIL(&ctx->pools, p, link);
	PLOG(LOG_LEVEL_LOG, p, "new pool (%s mode, size %d%s)", config_pool_mode_name(p->pool_mode),
	     p->pool_size, p->paused ? ", paused" : "");
	return p;
}

void pool_free(struct pool *p)
{
	free_conn_arrays(p);
	free(p->conninfo_sig);
	free(p->db_name);
	free(p->user_name);
	free(p->connect_query);
	if (p->password) {
		memset(p->password, 0, strlen(p->password));
		free(p->password);
	}
	params_free(&p->welcome);
	params_free(&p->login_startup);
	if (p->login_pset)
		pset_release(&p->ctx->psets, p->login_pset);
	free(p->fail_message);
	free(p);
}

/* ---- limits ---- */

static int db_server_count(struct pt_ctx *ctx, const char *db)
{
	int n = 0;
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	if (strcmp(p->db_name, db) == 0)
		n += pool_server_count(p);
	return n;
}

static int user_server_count(struct pt_ctx *ctx, const char *user)
{
	int n = 0;
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	if (strcmp(p->user_name, user) == 0)
		n += pool_server_count(p);
	return n;
}

/* Why a pool may not open one more server connection. */
enum open_limit {
	OPEN_OK = 0,
	OPEN_POOL_FULL, /* pool_size reached: wait for one of our own */
	OPEN_DB_FULL,   /* max_db_connections reached across the database's pools */
	OPEN_USER_FULL, /* max_user_connections reached across the user's pools */
};

/*
 * pool_size, plus reserve_pool once the first waiting client has waited longer than
 * reserve_pool_timeout.
 */
static int pool_limit(const struct pool *p)
{
	const struct client *c = TAILQ_FIRST(&p->waiting_clients);
	if (p->reserve_pool > 0 && c && pt_now() - c->wait_start > p->ctx->cfg.reserve_pool_timeout)
		return p->pool_size + p->reserve_pool;
	return p->pool_size;
}

static enum open_limit open_limit(struct pool *p)
{
	if (pool_server_count(p) >= pool_limit(p))
		return OPEN_POOL_FULL;
	if (p->max_db_connections > 0 &&
	    db_server_count(p->ctx, p->db_name) >= p->max_db_connections)
		return OPEN_DB_FULL;
	if (p->max_user_connections > 0 &&
	    user_server_count(p->ctx, p->user_name) >= p->max_user_connections)
		return OPEN_USER_FULL;
	return OPEN_OK;
}

static bool may_open_server(struct pool *p)
{
	return open_limit(p) == OPEN_OK;
}

/*
 * A pool blocked by a database- or user-wide limit takes the slot of another pool's idle server
 * (the one idle longest), as PgBouncer does: otherwise an idle server in one pool could keep a
 * client of another waiting forever.
 */
static bool evict_idle_for(struct pool *p, enum open_limit why)
{
	struct server *victim = NULL;
	struct pool *q;
	TAILQ_FOREACH(q, &p->ctx->pools, link)
	{
		if (q == p)
			continue;
		if (why == OPEN_DB_FULL && strcmp(q->db_name, p->db_name) != 0)
			continue;
		if (why == OPEN_USER_FULL && strcmp(q->user_name, p->user_name) != 0)
			continue;
		struct server *s = TAILQ_LAST(&q->idle, server_list);
		if (s && (!victim || s->idle_since < victim->idle_since))
			victim = s;
	}
	if (!victim)
		return false;
	server_close(victim, why == OPEN_DB_FULL
	                             ? "evicted for another pool (max_db_connections)"
	                             : "evicted for another pool (max_user_connections)");
	return true;
}

/* True while a recent connect failure makes new clients fail at once (server_login_retry). */
static bool in_retry_wait(struct pool *p)
{
	return p->last_connect_failure &&
	       pt_now() - p->last_connect_failure < p->ctx->cfg.server_login_retry;
}

/* Shorter than the janitor's period (250 ms), so each tick may try again. */
#define FD_SHORT_BACKOFF (100 * 1000)

/* Opens servers for clients that need one, within the limits. */
static void open_servers(struct pool *p)
{
	if (p->ctx->phase == PT_SHUTDOWN_NOW || p->paused)
		return;
	/* Out of descriptors a moment ago: the janitor's next tick tries again, not a busy loop of
	 * failures each kicking the pool. */
	if (p->fd_short_at && pt_now() - p->fd_short_at < FD_SHORT_BACKOFF)
		return;
	int demand = p->n_waiting_clients + (p->n_login_wait > 0 ? 1 : 0);
	while (p->n_connecting < demand && !in_retry_wait(p)) {
		enum open_limit why = open_limit(p);
		if (why == OPEN_POOL_FULL)
			break;
		if (why != OPEN_OK && !evict_idle_for(p, why))
			break;
		if (!server_connect(p))
			break;
	}
}

/* ---- welcome and logins ---- */

bool pool_need_welcome(struct pool *p, struct client *c)
{
	if (p->have_welcome)
		return true;
	if (in_retry_wait(p)) {
		client_fail(c, p->fail_sqlstate,
		            p->fail_message ? p->fail_message : "server login failed");
		return false;
	}
	client_set_state(c, CLIENT_LOGIN_WAIT);
	c->wait_start = pt_now();
	if (p->n_connecting == 0 && pool_server_count(p) > 0 && p->n_idle == 0) {
		/* Every server is busy; one will become idle and bring no welcome: open one. */
	}
	if (p->n_connecting == 0 && !p->paused) {
		if (may_open_server(p))
			server_connect(p);
		else if (p->n_idle > 0) {
			/* Servers exist but the welcome was dropped (reload): take it from one. */
			struct server *s = TAILQ_FIRST(&p->idle);
			pool_server_connected(p, s);
		}
	}
	return false;
}

void pool_server_connected(struct pool *p, struct server *s)
{
	if (!p->have_welcome) {
		params_free(&p->welcome);
		params_copy(&p->welcome, &s->params);
		p->have_welcome = true;
		pool_forget_login(p);
	}
	p->last_connect_failure = 0;
	p->fd_short_at = 0;
	if (s->state == SERVER_CONNECTING) {
		server_set_state(s, SERVER_IDLE);
		if (p->connect_query && p->connect_query[0]) {
			/* Runs before anyone gets the server; replies are discarded. */
			server_set_state(s, SERVER_RESET);
			struct pbuf *b = &p->ctx->scratch;
			pbuf_reset(b);
			proto_build_query(b, p->connect_query);
			io_write(&s->io, b->data, b->len);
			pbuf_reset(b);
			s->internal_pending++;
		}
	}
	/* Logins that waited for the welcome can finish now. */
	struct client *c;
	int64_t now = pt_now();
	while ((c = TAILQ_FIRST(&p->login_wait)) != NULL) {
		p->stats.wait_time += (uint64_t)(now - c->wait_start);
		client_set_state(c, CLIENT_IDLE);
		client_login_complete(c);
	}
	pool_kick(p);
}

void pool_server_connect_failed(struct pool *p, const char *sqlstate, const char *message)
{
	p->last_connect_failure = pt_now();
	snprintf(p->fail_sqlstate, sizeof(p->fail_sqlstate), "%s", sqlstate);
	free(p->fail_message);
	p->fail_message = strdup(message);
	/* Nobody else is coming for these clients if no server is left to serve them. */
	struct client *c;
	while ((c = TAILQ_FIRST(&p->login_wait)) != NULL)
		client_fail(c, sqlstate, message);
	if (pool_server_count(p) == 0) {
		while ((c = TAILQ_FIRST(&p->waiting_clients)) != NULL)
			client_fail(c, sqlstate, message);
	}
}

void pool_server_connect_no_fd(struct pool *p, const char *message)
{
	p->fd_short_at = pt_now();
	struct client *c;
	while ((c = TAILQ_FIRST(&p->login_wait)) != NULL)
		client_fail(c, "53300", message);
}

/* ---- handing out servers ---- */

/*
 * The idle server to hand out next. The idle list runs from the most recently used to the one
 * idle longest. server_round_robin off (PgBouncer's default) takes the first, so a few servers
 * do the work and the rest time out (server_idle_timeout); on takes the last, so each server
 * gets its turn, spreading load over the hosts behind a round-robin address.
 */
static struct server *idle_next(struct pool *p)
{
	return p->ctx->cfg.server_round_robin ? TAILQ_LAST(&p->idle, server_list)
	                                      : TAILQ_FIRST(&p->idle);
}

static void link_client(struct pool *p, struct client *c, struct server *s)
{
	if (c->state == CLIENT_WAITING) /* SHOW STATS wait_time, added when the wait ends */
		p->stats.wait_time += (uint64_t)(pt_now() - c->wait_start);
	client_set_state(c, CLIENT_ACTIVE);
	server_link(s, c);
}

bool pool_acquire(struct pool *p, struct client *c)
{
	struct server *s = idle_next(p);
	if (s && TAILQ_EMPTY(&p->waiting_clients) && !p->paused) {
		link_client(p, c, s);
		return true;
	}
	if (in_retry_wait(p) && pool_server_count(p) == 0) {
		client_fail(c, p->fail_sqlstate,
		            p->fail_message ? p->fail_message : "server login failed");
		return false;
	}
	c->wait_start = pt_now();
	c->wait_notified = false;
	client_set_state(c, CLIENT_WAITING);
	open_servers(p);
	return false;
}

/*
 * Closes idle servers (those idle longest first) while the pool holds more than pool_size +
 * reserve_pool, as after a reload or SET made it smaller.
 */
static void trim_idle(struct pool *p)
{
	struct server *s;
	while (pool_server_count(p) > p->pool_size + p->reserve_pool &&
	       (s = TAILQ_LAST(&p->idle, server_list)) != NULL)
		server_close(s, "too many servers in the pool");
}

/* A paused pool keeps no idle server: PAUSE waits for the pool to hold none. */
static void close_idle(struct pool *p, const char *why)
{
	struct server *s;
	while ((s = TAILQ_FIRST(&p->idle)) != NULL)
		server_close(s, why);
}

/* Hands idle servers to waiting clients in arrival order; opens more if needed. */
static void pool_do_kick(struct pool *p)
{
	struct server *s;
	struct client *c;
	if (p->paused) {
		close_idle(p, "pool paused");
		return;
	}
	trim_idle(p);
	while ((c = TAILQ_FIRST(&p->waiting_clients)) != NULL && (s = idle_next(p)) != NULL) {
		link_client(p, c, s);
		if (s->state == SERVER_ACTIVE)
			client_server_ready(c);
	}
	open_servers(p);
	/* An idle server here may be what another pool of the same database or user waits for. */
	if (p->n_idle > 0 && (p->max_db_connections > 0 || p->max_user_connections > 0)) {
		struct pool *q;
		TAILQ_FOREACH(q, &p->ctx->pools, link)
		{
			if (q != p && q->n_waiting_clients > 0 &&
			    (strcmp(q->db_name, p->db_name) == 0 ||
			     strcmp(q->user_name, p->user_name) == 0))
				open_servers(q);
		}
	}
}

void pool_kick(struct pool *p)
{
	struct pt_ctx *ctx = p->ctx;
	/*
	 * The hot path of transaction pooling releases a server after every transaction: with no
	 * client waiting here (and no limit shared with other pools) there is nothing to do.
	 */
	if (p->n_waiting_clients == 0 && p->n_login_wait == 0 && p->max_db_connections <= 0 &&
	    p->max_user_connections <= 0 && !p->paused)
		return;
	for (size_t i = 0; i < ctx->n_kick_pools; i++)
		if (ctx->kick_pools[i] == p)
			return;
	if (ctx->n_kick_pools == ctx->cap_kick_pools) {
		size_t cap = ctx->cap_kick_pools ? ctx->cap_kick_pools * 2 : 16;
		struct pool **np = realloc(ctx->kick_pools, cap * sizeof(*np));
		if (!np) {
			pool_do_kick(p); /* no memory to defer: do it now */
			return;
		}
		ctx->kick_pools = np;
		ctx->cap_kick_pools = cap;
	}
	ctx->kick_pools[ctx->n_kick_pools++] = p;
	pt_schedule_reaper(ctx);
}

/* Called by the reaper: the kicks deferred until no pump is running. */
void pool_run_kicks(struct pt_ctx *ctx);
void pool_run_kicks(struct pt_ctx *ctx)
{
	while (ctx->n_kick_pools > 0) {
		struct pool *p = ctx->kick_pools[--ctx->n_kick_pools];
		pool_do_kick(p);
	}
}

/* ---- periodic work ---- */

void pool_janitor(struct pool *p, int64_t now)
{
	struct config *cfg = &p->ctx->cfg;
	struct server *s, *next;
	for (s = TAILQ_FIRST(&p->idle); s; s = next) {
		next = TAILQ_NEXT(s, link);
		if (p->paused) {
			server_close(s, "pool paused");
		} else if (s->close_when_idle) {
			server_close(s, "marked for closing");
		} else if (p->server_lifetime > 0 && now - s->created_at > p->server_lifetime) {
			server_close(s, "server_lifetime reached");
		} else if (cfg->server_idle_timeout > 0 &&
		           now - s->idle_since > cfg->server_idle_timeout &&
		           pool_server_count(p) > p->min_pool_size) {
			server_close(s, "server_idle_timeout reached");
		}
	}
	if (cfg->server_fast_close && p->pool_mode == POOL_MODE_SESSION) {
		/* Sessions hold their servers: those marked for closing (or past their lifetime)
		 * and idle between transactions are closed now, with their clients. */
		for (s = TAILQ_FIRST(&p->active); s; s = next) {
			next = TAILQ_NEXT(s, link);
			if (p->server_lifetime > 0 && now - s->created_at > p->server_lifetime)
				s->close_when_idle = true;
			server_fast_close(s);
		}
	}
	trim_idle(p);
	/* Keep min_pool_size servers warm (only once the pool has been used). */
	while (p->ctx->phase == PT_RUNNING && !p->paused &&
	       pool_server_count(p) < p->min_pool_size && may_open_server(p) && !in_retry_wait(p) &&
	       p->have_welcome) {
		if (!server_connect(p))
			break;
	}
	if (p->n_waiting_clients > 0)
		open_servers(p);
	struct client *c, *cn;
	for (c = TAILQ_FIRST(&p->waiting_clients); c; c = cn) {
		cn = TAILQ_NEXT(c, link);
		int64_t waited = now - c->wait_start;
		if (cfg->query_wait_timeout > 0 && waited > cfg->query_wait_timeout) {
			/* 53300, so drivers and Prisma read it as too many connections. */
			client_fail(c, "53300",
			            "query_wait_timeout: no server connection became available");
		} else if (cfg->query_wait_notify > 0 && waited > cfg->query_wait_notify &&
		           !c->wait_notified) {
			c->wait_notified = true;
			client_notice(
			        c, "waiting for a server connection: all of the pool's are busy");
		}
	}
	for (c = TAILQ_FIRST(&p->active_clients); c; c = cn) {
		cn = TAILQ_NEXT(c, link);
		client_check_timeouts(c, now);
	}
	if (p->client_idle_check) {
		for (c = TAILQ_FIRST(&p->idle_clients); c; c = cn) {
			cn = TAILQ_NEXT(c, link);
			if (c->client_idle_timeout > 0 &&
			    now - c->last_active > c->client_idle_timeout)
				client_close(c, "57P05",
				             "terminating connection due to idle-session timeout");
		}
	}
}

/* True if anything still points at p: a client or server on its way to be freed, a kick. */
static bool pool_referenced(const struct pt_ctx *ctx, const struct pool *p)
{
	const struct client *c;
	TAILQ_FOREACH(c, &ctx->zombie_clients, all_link)
	if (c->pool == p)
		return true;
	const struct server *s;
	TAILQ_FOREACH(s, &ctx->zombie_servers, link)
	if (s->pool == p)
		return true;
	for (size_t i = 0; i < ctx->n_kick_pools; i++)
		if (ctx->kick_pools[i] == p)
			return true;
	return false;
}

void pool_reap_autodb(struct pt_ctx *ctx, int64_t now)
{
	int64_t timeout = ctx->cfg.autodb_idle_timeout;
	struct pool *p, *next;
	for (p = TAILQ_FIRST(&ctx->pools); p; p = next) {
		next = TAILQ_NEXT(p, link);
		bool empty = p->n_login_wait + p->n_idle_clients + p->n_waiting_clients +
		                             p->n_active_clients ==
		                     0 &&
		             pool_server_count(p) == 0;
		if (!empty) {
			p->empty_since = 0;
			continue;
		}
		if (p->empty_since == 0)
			p->empty_since = now;
		if (timeout <= 0 || now - p->empty_since < timeout)
			continue;
		const struct config_db *db = config_find_db(&ctx->cfg, p->db_name);
		if (!db || strcmp(db->name, "*") != 0 || pool_referenced(ctx, p))
			continue; /* a database of its own stays listed, as in PgBouncer */
		PLOG(LOG_LEVEL_LOG, p, "autodb_idle_timeout reached: pool removed");
		TAILQ_REMOVE(&ctx->pools, p, link);
		pool_free(p);
	}
}

/* ---- switches of the admin console ---- */

static struct db_switch *find_switch(const struct pt_ctx *ctx, const char *db)
{
	for (size_t i = 0; i < ctx->n_db_switches; i++)
		if (strcmp(ctx->db_switches[i].name, db) == 0)
			return &ctx->db_switches[i];
	return NULL;
}

static struct db_switch *get_switch(struct pt_ctx *ctx, const char *db)
{
	struct db_switch *w = find_switch(ctx, db);
	if (w)
		return w;
	struct db_switch *v =
	        realloc(ctx->db_switches, (ctx->n_db_switches + 1) * sizeof(*ctx->db_switches));
	if (!v)
		return NULL;
	ctx->db_switches = v;
	w = &v[ctx->n_db_switches];
	memset(w, 0, sizeof(*w));
	w->name = strdup(db);
	if (!w->name)
		return NULL;
	ctx->n_db_switches++;
	return w;
}

bool pool_db_paused(const struct pt_ctx *ctx, const char *db)
{
	const struct db_switch *w = find_switch(ctx, db);
	return w && w->paused;
}

bool pool_db_disabled(const struct pt_ctx *ctx, const char *db)
{
	const struct db_switch *w = find_switch(ctx, db);
	return w && w->disabled;
}

bool pool_db_set_paused(struct pt_ctx *ctx, const char *db, bool on)
{
	struct db_switch *w = on ? get_switch(ctx, db) : find_switch(ctx, db);
	if (w)
		w->paused = on;
	return w || !on;
}

bool pool_db_set_disabled(struct pt_ctx *ctx, const char *db, bool on)
{
	struct db_switch *w = on ? get_switch(ctx, db) : find_switch(ctx, db);
	if (w)
		w->disabled = on;
	return w || !on;
}

void pool_db_switches_free(struct pt_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n_db_switches; i++)
		free(ctx->db_switches[i].name);
	free(ctx->db_switches);
	ctx->db_switches = NULL;
	ctx->n_db_switches = 0;
}

void pool_apply_pause(struct pt_ctx *ctx)
{
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		bool paused = ctx->pause_mode == PT_PAUSED || pool_db_paused(ctx, p->db_name);
		if (paused == p->paused)
			continue;
		p->paused = paused;
		PLOG(LOG_LEVEL_LOG, p, "%s", paused ? "paused" : "resumed");
		if (paused)
			close_idle(p, "pool paused");
		else
			pool_kick(p);
	}
}
