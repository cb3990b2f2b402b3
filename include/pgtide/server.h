/*
 * Server connections: opened by libpq without blocking the loop, then taken over and spoken
 * to directly: relaying to the linked client, pgtide's own parameter sync, reset and drain.
 */
#ifndef PGTIDE_SERVER_H
#define PGTIDE_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "pgtide/io.h"
#include "pgtide/params.h"
#include "pgtide/prepared.h"

struct pt_ctx;
struct pool;
struct client;
struct event;
struct cancel_ticket;

/* Where a server lives, by state (server_set_state moves it between the pool's lists). */
enum server_state {
	SERVER_CONNECTING = 0, /* libpq connect in progress; pool->connecting */
	SERVER_IDLE,           /* ready, unlinked; pool->idle (most recently used first) */
	SERVER_SYNC,   /* linked; running pgtide's SETs before the client's work; pool->active */
	SERVER_ACTIVE, /* linked; relaying for its client; pool->active */
	SERVER_RESET,  /* unlinked; running ROLLBACK / server_reset_query; pool->used */
	SERVER_DRAIN, /* unlinked; its client left mid-query: discarding, cancel sent; pool->used */
	SERVER_CLOSED, /* closed; ctx->zombie_servers until freed */
};

struct server {
	TAILQ_ENTRY(server) link;
	struct pt_ctx *ctx;
	struct pool *pool;
	enum server_state state;
	uint64_t id;
	void *pg;              /* PGconn *; owns the socket and lives as long as we do */
	struct event *poll_ev; /* one-shot event while connecting */
	struct event *timer;   /* connect timeout, drain timeout */
	struct io io;
	bool io_ready;         /* io_init done (after takeover) */
	struct client *client; /* linked client, or NULL */
	uint32_t backend_pid;
	struct params params; /* the session's current parameters (see params.h) */
	uint64_t synced_sig;  /* params_signature of the client set it matches; 0 = unknown */
	bool session_dirty;   /* a client ran SET/RESET/DISCARD ALL: RESET ALL before reuse */
	int benign_sets;      /* SET TRANSACTION/LOCAL/... sent: as many "SET" tags are harmless */
	bool restore_all;     /* the client ran RESET ALL / DISCARD ALL: restore its login values */
	char *restore_names[8]; /* ... or RESET x / SET x TO DEFAULT for these (lower case) */
	int n_restore;
	bool holding_ready; /* its ReadyForQuery is held while they are restored */
	char held_status;

	char txn_status;         /* from the last ReadyForQuery: 'I', 'T' or 'E' */
	int rfq_pending;         /* ReadyForQuery messages the linked client still expects */
	int internal_pending;    /* ReadyForQuery messages for pgtide's own queries */
	bool unsynced;           /* client sent extended-protocol messages without a Sync yet */
	int syncs_since_execute; /* Syncs sent after the last Execute/Query (see 'G') */
	bool copy_in;            /* in COPY FROM STDIN: the server waits for CopyData */
	bool got_fatal;          /* a FATAL ErrorResponse was forwarded; EOF follows */
	bool sync_failed;        /* an error came back for pgtide's SETs */
	char sync_sqlstate[6];   /* ... and what it said, for the client's FATAL */
	char sync_message[256];
	bool close_when_idle; /* config changed, lifetime over, ...: close instead of reuse */
	bool reset_deferred;  /* in RESET waiting for a cancel to land before start_reset */
	struct cancel_ticket *cancel_ticket; /* the last cancel sent for it (cancel.h) */
	int64_t cancel_sent_at;
	struct event *cancel_wait_ev; /* RESET: waiting for that cancel before going idle */

	/* Session state (pin.h): the probe runs at the client's next ReadyForQuery 'I'. */
	bool probe_wanted;            /* the client may have created or dropped session state */
	bool probing;                 /* SYNC: the probe is running, its rows are being read */
	bool probe_failed;            /* ... and it failed */
	bool probe_got_state;         /* ... its state row arrived */
	unsigned state_kinds;         /* what the last probe found (DISCARD ALL before reuse) */
	struct params probe_settings; /* the probe's settings rows */
	char *custom_names[8];        /* dotted settings the client SET (pg_settings omits them) */
	int n_custom;
	bool custom_overflow; /* more than that: RESET ALL before reuse */
	bool simple_sent;     /* a simple Query is among the requests in flight */
	bool saw_rowdesc;     /* a RowDescription since the last CommandComplete */

	int64_t query_start;    /* when the client's oldest pending request was sent */
	int64_t xact_start;     /* when the transaction's first request started (SHOW STATS) */
	bool query_cancel_sent; /* query_timeout already cancelled it */
	/* After that cancel: since when the server has sent nothing (pgtide reading), and
	 * io.bytes_in then; silence past cancel_wait_timeout closes the client. */
	int64_t cancel_quiet_since;
	uint64_t cancel_bytes_in;
	int64_t txn_start;  /* when the transaction began (ReadyForQuery went I -> T/E) */
	int64_t last_ready; /* when the last ReadyForQuery arrived */
	int64_t created_at; /* monotonic usec */
	int64_t idle_since;
	uint64_t n_linked; /* times linked to a client */

	struct prep_cache prep_cache; /* pgtide's named statements this session has */
	struct prep_ring prep_ring;   /* what its client sent, for matching replies (prepared.h) */
	struct prep_replay prep_replay; /* a batch kept in case its plan went stale (prepared.h) */
};

/* Starts a new server connection for pool (state CONNECTING). NULL if it could not start. */
struct server *server_connect(struct pool *pool);

/* Links c to idle server s and prepares s for c's work (parameter sync if needed). */
void server_link(struct server *s, struct client *c);

/*
 * Unlinks s from its client, which is leaving or done. Depending on what is in flight the server
 * is reset (ROLLBACK, server_reset_query), drained (cancel, discard results) or closed.
 * `client_gone` says the client's socket is finished (it vanished or sent Terminate).
 */
void server_release(struct server *s, bool client_gone);

/*
 * server_fast_close: in session pooling, a server marked for closing (close_when_idle) whose
 * client is between transactions is closed now rather than when the session ends, and its
 * client is disconnected so that it notices the session is gone. Returns true if it did.
 */
bool server_fast_close(struct server *s);

/* Closes s (logs why), unlinks it, and defers the free. */
void server_close(struct server *s, const char *why);

void server_set_state(struct server *s, enum server_state st);

/* Relays to the linked client an ErrorResponse from the server that pgtide held back, as if
 * it arrived now (classified, counted, and seen by the transaction tracker). */
void server_relay_held_error(struct server *s, const uint8_t *msg, uint32_t len);

/* Sends a cancel for the query running on s's backend (worker thread). */
bool server_cancel_query(struct server *s);

void server_free(struct server *s);

/*
 * The server's address and port and the local end's, as text (SHOW SERVERS): "unix" for a Unix
 * socket (with libpq's port); libpq's host while the socket is not connected yet.
 */
void server_addrs(const struct server *s, char *addr, size_t n, int *port, char *laddr, size_t ln,
                  int *lport);

/* The client SET a dotted (custom) setting on s: the probe reads it back (pin.h). */
void server_note_custom_setting(struct server *s, const char *name);
/* For pin_set_config_names (arg is the server): a setting a set_config call may have set. */
void server_note_set_config(void *arg, const char *name, size_t n);

#endif
