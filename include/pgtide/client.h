/* Client connections: the login phases (startup, auth), then relaying to a linked server. */
#ifndef PGTIDE_CLIENT_H
#define PGTIDE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "pgtide/io.h"
#include "pgtide/params.h"
#include "pgtide/prepared.h"
#include "pgtide/proto.h"
#include "pgtide/txn.h"

struct pt_ctx;
struct pool;
struct server;
struct auth_exchange;
struct admin_wait;
struct climit_count;

/* Where a client lives, by state (client_set_state moves it between lists). */
enum client_state {
	CLIENT_STARTUP = 0, /* reading the first packet(s); on no pool list */
	CLIENT_AUTH,        /* password exchange; on no pool list */
	CLIENT_LOGIN_WAIT,  /* authenticated, waiting for its pool's first server; pool->login_wait
	                     */
	CLIENT_IDLE,        /* logged in, no server linked; pool->idle_clients */
	CLIENT_WAITING,     /* has work buffered, queued for a server; pool->waiting_clients */
	CLIENT_ACTIVE,      /* linked to a server; pool->active_clients */
	CLIENT_CLOSED,      /* closed; ctx->zombie_clients until the reaper frees it */
};

struct client {
	TAILQ_ENTRY(client) link;     /* the list of its state */
	TAILQ_ENTRY(client) all_link; /* ctx->clients (live) or ctx->zombie_clients */
	struct pt_ctx *ctx;
	enum client_state state;
	uint64_t id; /* connection id, for logs */
	struct io io;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} addr; /* the peer (family AF_UNIX for Unix sockets); text only when logged */

	struct pool *pool;
	struct server *server; /* linked server, or NULL */
	char *user;            /* from the startup packet */
	char *database;
	struct params startup;     /* parameters from the startup packet, until login */
	struct pset *params;       /* after login: what this client wants (shared, see params.h) */
	struct pset *login_params; /* its set at login: what RESET / DISCARD ALL return to */
	struct auth_exchange *auth;
	/* Where it is counted against max_db_client_connections and max_user_client_connections
	 * (ctx->db_clients, ctx->user_clients) from its startup packet until it closes; NULL for
	 * the admin console and before the startup packet. */
	struct climit_count *db_count;
	struct climit_count *user_count;
	bool admin;       /* connected to the admin console (admin.c); on ctx->admin_clients */
	bool admin_write; /* ... as one of admin_users (stats_users may only SHOW) */
	bool admin_skip;  /* ... an extended-protocol message was refused: skip until Sync */
	struct admin_wait *admin_wait; /* ... a command that answers later (PAUSE, ...), or NULL */

	uint32_t cancel_pid; /* BackendKeyData pgtide issued */
	uint32_t cancel_key;
	bool cancel_registered;

	int64_t connect_time; /* monotonic usec */
	bool wait_notified;   /* got the query_wait_notify NOTICE for this wait */
	int64_t wait_start;   /* when it started waiting for a server */
	int64_t last_active;
	/* usec, 0 = off: its user's [users] client_idle_timeout, else the global one */
	int64_t client_idle_timeout;
	int n_negotiations;     /* SSLRequest/GSSENCRequest packets answered */
	bool tls_direct;        /* its first bytes were a TLS ClientHello (PostgreSQL 17 direct
	                         * TLS): ALPN "postgresql" is then required */
	bool terminating;       /* sent Terminate */
	bool login_pending;     /* its parameters are being checked on a server before
	                         * AuthenticationOk (PostgreSQL refuses bad ones at connect) */
	int error_row;          /* its row in ctx->errors (stats_error_row), -1 until first error */
	struct txn txn;         /* transaction depth, savepoints, isolation (see txn.h) */
	struct prep_names prep; /* its named prepared statements (transaction pooling) */
	unsigned pin_kinds;     /* session state that keeps it on its server (pin.h); 0: none */
	bool stats_on;          /* logged in: its socket bytes count in its pool's stats */
	uint64_t stats_in;      /* io.bytes_in already counted (or sent before login) */
	uint64_t stats_out;     /* io.bytes_out likewise, bytes queued at login included */
};

/* Accepts a new client on fd (already non-blocking). */
void client_accept(struct pt_ctx *ctx, int fd, const struct sockaddr *addr, socklen_t addrlen,
                   bool is_unix);

/*
 * The one exit path. Logs why; if sqlstate is non-NULL sends a FATAL ErrorResponse with it and
 * the formatted message first. Unlinks the server (which is reset, drained or closed), removes
 * the client from every list and defers the free. Safe to call on a closed client.
 */
void client_close(struct client *c, const char *sqlstate, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Moves c to state s, off its old list onto the new one. Refuses impossible moves loudly. */
void client_set_state(struct client *c, enum client_state s);

/* Sets the session state that keeps c on its server (pin.h; 0: none), counted per pool. */
void client_set_pin(struct client *c, unsigned kinds);

/*
 * Authenticated and the pool has its welcome parameters: finish the login (AuthenticationOk ...
 * ReadyForQuery), first checking on a server any parameters that differ from the pool's.
 */
void client_login_complete(struct client *c);

/* A server was linked to c (by the pool) and is ready for c's work: resume relaying. */
void client_server_ready(struct client *c);

/*
 * c's server went away while linked (died, failed). Tells the client (sqlstate, msg) and closes
 * it; with fatal_forwarded the server's own FATAL (57P01 from pg_terminate_backend, ...) has
 * already been relayed and is the client's last message: nothing is added after it.
 */
void client_server_lost(struct client *c, bool fatal_forwarded, const char *sqlstate,
                        const char *msg);

/* Sends an ErrorResponse + close for a failed server connect to a client waiting on it. */
void client_fail(struct client *c, const char *sqlstate, const char *msg);

/* The server reported a ParameterStatus: the client's view follows it. */
void client_param_changed(struct client *c, const char *name, const char *value);

/* Sends a NoticeResponse (severity NOTICE) that pgtide raises itself. */
void client_notice(struct client *c, const char *msg);

/*
 * Periodic checks of a client linked to a server: query_timeout (cancel, the client gets
 * PostgreSQL's 57014), idle_transaction_timeout (25P03), transaction_timeout (25P04) and
 * client_idle_timeout (57P05) close or cancel as PostgreSQL's own timeouts would.
 */
void client_check_timeouts(struct client *c, int64_t now);

/*
 * Every ErrorResponse a client receives passes here, from PostgreSQL or from pgtide: it is
 * classified as @prisma/adapter-pg classifies it, counted per (database, user, kind) and logged
 * at log_error_kinds. With error_kind_field set, out gets a copy of msg (the whole message,
 * len bytes) with the classification added as that field: the caller sends out instead of msg
 * (true). False: send msg unchanged.
 */
bool client_error_seen(struct client *c, const uint8_t *msg, uint32_t len,
                       const struct proto_error *e, struct pbuf *out);

/* Appends to out an ErrorResponse pgtide raises itself (severity, SQLSTATE, message), passed
 * through client_error_seen like any other: classified, counted, logged, with the extra field. */
void client_own_error(struct client *c, const char *severity, const char *sqlstate,
                      const char *message, struct pbuf *out);

/*
 * If e is the server's error for the stand-in of a statement pin_session_state = error refused
 * (see client.c), appends pgtide's 0A000 for it to out and returns true.
 */
bool client_refused_error(struct client *c, const struct proto_error *e, struct pbuf *out);

/* Adds the bytes c's socket carried since the last call to its pool's stats (after login). */
void client_stats_fold(struct client *c);

/* Frees a closed client (reaper). */
void client_free(struct client *c);

/* The peer's address ("127.0.0.1", "::1" or "unix") and port (0 for Unix sockets). */
void client_addr(const struct client *c, char *host, size_t n, int *port);

/* Log prefix: "db/user@addr c42". */
const char *client_prefix(const struct client *c, char *buf, size_t n);

#endif
