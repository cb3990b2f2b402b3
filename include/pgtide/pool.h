/*
 * Pools, one per (database, user): the servers they hold, the clients they serve, and the rules
 * that decide when a client gets a server, waits, or is refused.
 */
#ifndef PGTIDE_POOL_H
#define PGTIDE_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "pgtide/client.h"
#include "pgtide/config.h"
#include "pgtide/params.h"
#include "pgtide/stats.h"
#include "pgtide/txn.h"
#include "pgtide/server.h"
#include "pgtide/pgtide.h"

struct pt_ctx;

struct pool {
	TAILQ_ENTRY(pool) link;
	struct pt_ctx *ctx;
	char *db_name;    /* the name clients use */
	char *user_name;  /* the server login user (the forced user= or the client's) */
	bool forced_user; /* the [databases] entry sets user= */

	/*
	 * Settings resolved from [databases], [users] (the entry of user_name) and [pgtide],
	 * refreshed on reload and SET. A [users] value wins over a [databases] one, which wins
	 * over the global setting.
	 */
	enum pool_mode pool_mode;
	int pool_size;
	int min_pool_size;
	int reserve_pool;
	int max_db_connections;
	int max_user_connections;
	int64_t server_lifetime; /* usec, 0 = off; [databases] or global */
	int64_t query_timeout;   /* usec, 0 = off; [users] or global, as the next two */
	int64_t idle_transaction_timeout;
	int64_t transaction_timeout;
	bool client_idle_check; /* some client may have a client_idle_timeout: the janitor looks */
	char *connect_query;
	char **conn_keys; /* libpq keywords/values for PQconnectStartParams, NULL-ended */
	char **conn_values;
	char *conninfo_sig; /* all of the above as one string, to notice changes on reload */
	char *password;     /* for the server login, if known (never logged) */
	bool db_missing;    /* the [databases] entry was removed on reload */

	struct client_list login_wait;
	struct client_list idle_clients;
	struct client_list waiting_clients; /* first come, first served */
	struct client_list active_clients;
	struct server_list connecting;
	struct server_list idle;
	struct server_list active;
	struct server_list used;
	int n_login_wait, n_idle_clients, n_waiting_clients, n_active_clients;
	int n_connecting, n_idle, n_active, n_used;
	int n_pinned; /* clients kept on their server by session state (pin.h) */
	bool paused;  /* PAUSE (all or its database) or KILL: no server handed out or opened, idle
	               * ones closed; waiting clients wait until RESUME (pool_apply_pause) */

	struct txn_counts txn; /* its clients' transactions, as their trackers saw them */

	/* SHOW STATS (stats.h). Bytes lag behind the sockets until metrics_collect. */
	struct stats_counts stats;
	struct stats_counts stats_mark;   /* stats at the last stats_period tick */
	struct stats_counts stats_period; /* what the last complete stats_period added */

	struct params welcome; /* ParameterStatus set from the first server, for logins */
	/* The last login's startup parameters and the set they made: a storm of identical logins
	 * reuses it instead of building and comparing tables each time. */
	struct params login_startup;
	struct pset *login_pset;
	bool login_differs; /* that set differs from welcome: check it on a server */
	bool have_welcome;
	int64_t last_connect_failure; /* monotonic usec, 0 = none */
	int64_t empty_since; /* monotonic usec since it had no client and no server, 0 = in use */
	int64_t fd_short_at; /* last connect that found pgtide out of descriptors, 0 = none */
	char fail_sqlstate[6];
	char *fail_message;
};

/*
 * The pool for (database, user), created on first use. Returns NULL, setting sqlstate and msg
 * (3D000 database "x" does not exist) if no [databases] entry matches.
 */
struct pool *pool_get(struct pt_ctx *ctx, const char *database, const char *user,
                      const char *client_password, const char **sqlstate, char **msg);

/* Servers in the pool, all states but closed. */
int pool_server_count(const struct pool *p);

/*
 * A logged-in client needs its pool's welcome parameters: returns true if the pool has them;
 * otherwise queues the client (CLIENT_LOGIN_WAIT) and starts a server connection.
 */
bool pool_need_welcome(struct pool *p, struct client *c);

/*
 * c has work: link an idle server now (returns true), or queue c (CLIENT_WAITING) and open a
 * server if the limits allow (returns false). A failed pool (server_login_retry) fails c at once.
 */
bool pool_acquire(struct pool *p, struct client *c);

/* A server became idle (or was closed): hand servers to waiting clients, open more if needed. */
void pool_kick(struct pool *p);

/* Server s finished connecting: record the welcome parameters, finish waiting logins. */
void pool_server_connected(struct pool *p, struct server *s);
/* A connect failed with sqlstate/message: fail the clients that were waiting on it. */
void pool_server_connect_failed(struct pool *p, const char *sqlstate, const char *message);
/*
 * A connect failed because pgtide itself is out of file descriptors: not the server's fault, so
 * no server_login_retry; queued clients keep waiting (the janitor tries again, query_wait_timeout
 * bounds it), logins waiting for the first server get 53300.
 */
void pool_server_connect_no_fd(struct pool *p, const char *message);

/* Periodic work: idle timeouts, lifetimes, min_pool_size, wait timeouts. */
void pool_janitor(struct pool *p, int64_t now);

/* autodb_idle_timeout: frees the pools made from the "*" entry that have had no client and no
 * server for that long (with them go their SHOW POOLS and SHOW DATABASES rows). */
void pool_reap_autodb(struct pt_ctx *ctx, int64_t now);

/* Re-reads the pool's settings from ctx->cfg after a reload, its clients' too. */
void pool_refresh(struct pool *p);

/*
 * Resolves what c itself takes from [users]: client_idle_timeout, by the name c logged in with
 * (which differs from the pool's user where the database forces user=), as PgBouncer does.
 * Called when c joins p and by pool_refresh.
 */
void pool_client_settings(struct pool *p, struct client *c);

/* Drops the cached login set (the welcome parameters changed). */
void pool_forget_login(struct pool *p);

/*
 * Database-wide switches of the admin console, by the name clients use. They outlive pools and
 * reloads: a pool made later for a paused database starts paused.
 */
struct db_switch {
	char *name;
	bool paused;   /* PAUSE db or KILL db, until RESUME db */
	bool disabled; /* DISABLE db: new logins refused (55000), until ENABLE db */
};

bool pool_db_paused(const struct pt_ctx *ctx, const char *db);
bool pool_db_disabled(const struct pt_ctx *ctx, const char *db);
/* Set a database's switch; false if out of memory. Follow a pause change with pool_apply_pause. */
bool pool_db_set_paused(struct pt_ctx *ctx, const char *db, bool on);
bool pool_db_set_disabled(struct pt_ctx *ctx, const char *db, bool on);
void pool_db_switches_free(struct pt_ctx *ctx);

/*
 * Recomputes every pool's paused flag from ctx->pause_mode and the switches. A pool that is now
 * paused closes its idle servers (the others close when they are released); one that is no
 * longer paused serves its waiting clients.
 */
void pool_apply_pause(struct pt_ctx *ctx);

/* Frees an empty pool. */
void pool_free(struct pool *p);

#endif
