/*
 * Transaction depth tracking, per client, as a Prisma driver adapter sees it: depth (0 outside a
 * transaction, 1 inside, +1 per savepoint), savepoint names, isolation level and access mode.
 *
 * The tracker is fed what the client sends (simple Query strings, and Parse/Bind/Execute/Close/
 * Sync of the extended protocol) and what the server answers (CommandComplete, ErrorResponse,
 * EmptyQueryResponse, PortalSuspended, ReadyForQuery). A statement's effect is applied when the
 * server reports it succeeded, in order. The server's ReadyForQuery status is the authority:
 * at each one the tracker is reconciled with it and never contradicts it. Pure.
 */
#ifndef PGTIDE_TXN_H
#define PGTIDE_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtide/sqlscan.h"

/* What a statement does to the transaction state. */
enum txn_kind {
	TXN_OTHER = 0,           /* anything else (no effect) */
	TXN_BEGIN,               /* BEGIN [WORK|TRANSACTION] [modes]; START TRANSACTION [modes] */
	TXN_COMMIT,              /* COMMIT / END [WORK|TRANSACTION] [AND [NO] CHAIN] */
	TXN_ROLLBACK,            /* ROLLBACK / ABORT [WORK|TRANSACTION] [AND [NO] CHAIN] */
	TXN_SAVEPOINT,           /* SAVEPOINT name */
	TXN_RELEASE,             /* RELEASE [SAVEPOINT] name */
	TXN_ROLLBACK_TO,         /* ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name */
	TXN_SET_TRANSACTION,     /* SET TRANSACTION modes (SET SESSION CHARACTERISTICS is OTHER) */
	TXN_PREPARE_TRANSACTION, /* PREPARE TRANSACTION 'gid' */
};

enum txn_isolation {
	TXN_ISO_DEFAULT = 0, /* not given (the session's default_transaction_isolation applies) */
	TXN_ISO_READ_UNCOMMITTED,
	TXN_ISO_READ_COMMITTED,
	TXN_ISO_REPEATABLE_READ,
	TXN_ISO_SERIALIZABLE,
};

/* A tri-state for READ ONLY / READ WRITE and [NOT] DEFERRABLE. */
enum txn_flag {
	TXN_FLAG_UNSET = 0,
	TXN_FLAG_OFF,
	TXN_FLAG_ON,
};

/* One classified statement. Transaction modes may be repeated and comma-separated. */
struct txn_stmt {
	uint8_t kind;       /* enum txn_kind */
	uint8_t isolation;  /* enum txn_isolation: BEGIN, START TRANSACTION, SET TRANSACTION */
	uint8_t read_only;  /* enum txn_flag: READ ONLY = ON, READ WRITE = OFF */
	uint8_t deferrable; /* enum txn_flag: DEFERRABLE = ON, NOT DEFERRABLE = OFF */
	bool chain;         /* COMMIT/ROLLBACK AND CHAIN */
	char name[SQLSCAN_NAME_MAX + 1]; /* savepoint name (SAVEPOINT, RELEASE, ROLLBACK TO) */
};

/*
 * Classifies one statement (no trailing ';'; leading whitespace and comments allowed). Anything
 * that is not exactly one of the forms above, syntax errors included, is TXN_OTHER; the server
 * then reports the error and the tracker never applies it.
 */
void txn_classify(const char *sql, size_t len, struct txn_stmt *out);

/* Cumulative counters a tracker adds to (one per pool, shared by its clients). */
struct txn_counts {
	uint64_t transactions; /* transaction blocks begun (BEGIN, START, AND CHAIN, or seen in RFQ)
	                        */
	uint64_t commits;      /* ended by a COMMIT that committed */
	uint64_t rollbacks;    /* ended by ROLLBACK, or by COMMIT of a failed transaction */
	uint64_t prepared;     /* ended by PREPARE TRANSACTION */
	uint64_t savepoints;   /* SAVEPOINT that succeeded */
	uint64_t releases;     /* RELEASE SAVEPOINT that succeeded */
	uint64_t rollbacks_to; /* ROLLBACK TO SAVEPOINT that succeeded */
	uint64_t max_depth;    /* deepest depth seen */
	uint64_t resyncs;      /* times the tracker lost the statement order and fell back to RFQ */
};

/* Internal queue entry (see txn.c). */
struct txn_pending;

/* The tracker of one client. Zero-initialized by txn_init; small while unused. */
struct txn {
	char status;        /* 'I', 'T' or 'E', as of the last reply applied */
	uint8_t isolation;  /* enum txn_isolation of the current transaction */
	uint8_t read_only;  /* enum txn_flag */
	uint8_t deferrable; /* enum txn_flag */
	int depth;          /* 0 outside a transaction block, 1 + number of savepoints */
	char **savepoints;  /* names, oldest first; depth - 1 of them (malloc'd) */
	int savepoints_cap;
	struct txn_counts *counts; /* where events are counted, or NULL */

	/* Statements sent and not yet answered, in order, with sync points (see txn.c). */
	struct txn_pending *q;
	uint32_t q_head, q_len, q_cap;
	uint32_t syncs_pending; /* ReadyForQuery messages still expected */
	bool lost;              /* order lost (overflow, unexpected reply): RFQ-only until idle */

	/* Extended protocol: what the unnamed statement/portal hold, and named ones that are
	 * transaction statements (named non-transaction statements are not stored). */
	struct txn_stmt *unnamed_stmt; /* NULL: TXN_OTHER */
	struct txn_stmt *unnamed_portal;
	struct txn_named *named; /* list of named statements and portals (see txn.c) */
};

void txn_init(struct txn *t, struct txn_counts *counts);
/* Frees everything the tracker holds; t may be reused after txn_init. */
void txn_free(struct txn *t);

/* ---- what the client sends ---- */

/* A simple Query: queues each of its statements, then its sync point (one ReadyForQuery). */
void txn_on_query(struct txn *t, const char *sql, size_t len);
/*
 * A simple Query too large to inspect: its statements are unknown, so the tracker follows
 * ReadyForQuery alone until the client is idle again (counted in resyncs).
 */
void txn_on_query_opaque(struct txn *t);
/* Parse: remembers what statement `name` ("" = unnamed) does. */
void txn_on_parse(struct txn *t, const char *name, const char *sql, size_t len);
/* Bind: portal `portal` runs statement `stmt` ("" = unnamed for either). */
void txn_on_bind(struct txn *t, const char *portal, const char *stmt);
/* Execute of `portal`: queues the statement it runs. */
void txn_on_execute(struct txn *t, const char *portal);
/* Close: what is 'S' (statement) or 'P' (portal). */
void txn_on_close(struct txn *t, char what, const char *name);
/* Sync or FunctionCall: a sync point (one ReadyForQuery will answer it). */
void txn_on_sync(struct txn *t);

/* ---- what the server answers ---- */

/* CommandComplete with its tag (tag_len bytes, NUL not included). */
void txn_on_command_complete(struct txn *t, const char *tag, size_t tag_len);
/* EmptyQueryResponse or PortalSuspended: the head statement ends with no effect. */
void txn_on_no_effect(struct txn *t);
/* ErrorResponse (not FATAL): the head statement failed; the rest up to the sync is skipped. */
void txn_on_error(struct txn *t);
/* ReadyForQuery with status 'I', 'T' or 'E': reconciles and drops this sync's leftovers. */
void txn_on_ready(struct txn *t, char status);

/* ---- reading ---- */

/* "read uncommitted", ..., "serializable", or "default". */
const char *txn_isolation_name(enum txn_isolation iso);
/* The savepoint names joined with ',' into out (n bytes, truncated safely); returns out. */
char *txn_savepoint_list(const struct txn *t, char *out, size_t n);

#endif
