/*
 * The context object: everything one event loop owns. There are no mutable globals (apart from
 * the log's output streams); every module reaches its state through a struct pt_ctx.
 */
#ifndef PGTIDE_PGTIDE_H
#define PGTIDE_PGTIDE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "pgtide/auth.h"
#include "pgtide/climit.h"
#include "pgtide/config.h"
#include "pgtide/io.h"
#include "pgtide/params.h"
#include "pgtide/prepared.h"
#include "pgtide/proto.h"
#include "pgtide/stats.h"
#include "pgtide/tls.h"

#define PGTIDE_VERSION_STRING "pgtide " PACKAGE_VERSION

struct client;
struct server;
struct pool;
struct listener;
struct cancel_table;
struct metrics;

TAILQ_HEAD(client_list, client);
TAILQ_HEAD(server_list, server);
TAILQ_HEAD(pool_list, pool);

/* Command-line settings that override or replace the file. */
struct cli_opts {
	const char *config_path; /* NULL with --backend */
	const char *backend_url; /* --backend */
	const char *listen;      /* --listen host:port */
	const char *pool_mode;   /* --pool-mode */
	int pool_size;           /* --pool-size, 0 = unset */
	int verbose;
	bool quiet;
	bool daemonize;
};

/* Process phase. */
enum pt_phase {
	PT_RUNNING = 0,
	PT_SHUTDOWN_WAIT, /* SIGINT: not accepting, waiting for clients to leave */
	PT_SHUTDOWN_NOW,  /* SIGTERM or wait over: closing everything */
};

/* What PAUSE and SUSPEND on the admin console made of the whole pooler (SHOW STATE). */
enum pt_pause {
	PT_ACTIVE = 0,
	PT_PAUSED, /* PAUSE: servers are handed out to nobody, opened for nobody, idle ones closed
	            */
	PT_SUSPENDED, /* SUSPEND: client and server sockets are not read */
};

struct db_switch;

struct pt_ctx {
	struct event_base *base;
	struct cli_opts cli;
	struct config cfg;          /* the configuration in force */
	struct auth_userlist users; /* the user file in force */
	struct tls_state tls;       /* the client-side TLS context in force (tls.h) */

	struct listener *listeners; /* singly linked */
	struct pool_list pools;
	struct client_list clients; /* every client that has not been freed */
	struct client_list
	        login_clients; /* CLIENT_STARTUP and CLIENT_AUTH, for client_login_timeout */
	uint32_t n_clients;    /* counted against max_client_conn */
	struct climit_table db_clients; /* clients per database name (max_db_client_connections) */
	struct climit_table user_clients; /* ... per user name (max_user_client_connections) */
	struct client_list admin_clients; /* logged in to the admin console (CLIENT_IDLE) */
	int n_admin_clients;
	struct cancel_table *cancels;

	struct client_list zombie_clients; /* closed, freed by the reaper */
	struct server_list zombie_servers;
	struct io **deferred_io; /* ios whose write failed; on_end runs in the reaper */
	size_t n_deferred_io, cap_deferred_io;
	struct event *reaper;     /* runs after the current callback: deferred work and frees */
	struct pool **kick_pools; /* pools whose waiting clients should be served (pool_kick) */
	size_t n_kick_pools, cap_kick_pools;

	struct event *janitor; /* periodic: timeouts, idle servers, min_pool_size, stats_period */
	int64_t stats_tick;    /* monotonic usec of the last stats_period tick (or of the start) */
	int64_t stats_period_usec; /* length of the last complete stats_period; 0 before the first
	                            */
	struct metrics *metrics;   /* the Prometheus endpoint and its scrapes (metrics.h) */
	struct event *sig_hup, *sig_term, *sig_int;
	enum pt_phase phase;
	enum pt_pause pause_mode;
	struct db_switch *db_switches; /* PAUSE db, KILL db, DISABLE db, by name (pool.h) */
	size_t n_db_switches;
	int64_t shutdown_deadline; /* monotonic usec, for PT_SHUTDOWN_WAIT */

	struct iobuf_pool bufs;
	struct pset_table psets;    /* shared client parameter sets */
	struct pbuf scratch;        /* for building pgtide's own messages; reset before each use */
	struct pbuf scratch_json;   /* an error's MappedError JSON (client_error_seen) */
	struct stats_errors errors; /* error counts per (database, user, kind) */
	struct prep_registry prep;  /* every named statement text in use (prepared.h) */
	uint64_t next_conn_id;
	int64_t last_accept_error_log; /* rate limit for "out of descriptors" warnings */
	int reserve_fd; /* held open so that at EMFILE a client can still be refused */
};

/* Monotonic clock in microseconds. */
int64_t pt_now(void);
/* Between hold and release pt_now returns the time of the hold: for an io callback, whose
 * work takes microseconds, so that its several timestamps cost one clock read. */
void pt_now_hold(void);
void pt_now_release(void);

/* Wakes the reaper: deferred work and frees run once the current callback returns. */
void pt_schedule_reaper(struct pt_ctx *ctx);

/*
 * Reloads the configuration file and the user list as SIGHUP does (RELOAD on the console):
 * pools take their new settings. False if the file was refused (the old configuration stays).
 */
bool pt_reload(struct pt_ctx *ctx);
/* Builds the client TLS context anew from the settings in force (SIGHUP, the console's SET);
 * if that fails the old one stays, and the log says why. */
void pt_reload_tls(struct pt_ctx *ctx);

/* Shuts down at once as SIGTERM does (SHUTDOWN on the console): every client gets 57P01. */
void pt_shutdown(struct pt_ctx *ctx, const char *why);

/* True if libpq knows the connection keyword (built from PQconndefaults). */
bool pt_conn_keyword_ok(const char *keyword);

#endif
