/*
 * Session parameters: what a client asked for (startup packet, options=-c, later SETs that the
 * server reported) and what a server connection currently has, and the SQL that brings a
 * server in line with a client before the client's work runs on it. Pure.
 */
#ifndef PGTIDE_PARAMS_H
#define PGTIDE_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtide/proto.h"

struct param {
	char *name; /* as first seen; compared case-insensitively, as PostgreSQL does */
	char *value;
	bool set_by_us; /* on a server: pgtide SET it (a non-reported parameter) */
};

/* A small ordered table of parameters (a session has a few dozen at most). */
struct params {
	struct param *v;
	size_t n;
	size_t cap;
};

/* Sets name to value (replacing any existing value). Returns false on OOM. */
bool params_set(struct params *p, const char *name, const char *value);
const char *params_get(const struct params *p, const char *name);
struct param *params_find(const struct params *p, const char *name);
void params_remove(struct params *p, const char *name);
bool params_copy(struct params *dst, const struct params *src);
/* Same names (in any case and order) with the same values. */
bool params_equal(const struct params *a, const struct params *b);
void params_free(struct params *p);

/* The parameters PostgreSQL 15 reports with ParameterStatus (GUC_REPORT); *n is set. */
const char *const *params_reported_names(size_t *n);
/* True for the parameters PostgreSQL 15 reports with ParameterStatus (GUC_REPORT). */
bool params_is_reported(const char *name);
/*
 * True for reported parameters that describe the server and cannot be SET by a session
 * (server_version, server_encoding, integer_datetimes, is_superuser, session_authorization,
 * in_hot_standby): never synced between connections.
 */
bool params_is_server_fact(const char *name);

/*
 * Appends to sql the statements that make a server whose parameters are `server` match a client
 * that wants `client`: one "SELECT pg_catalog.set_config(E'name', E'value', false), ...;" for
 * the values to set (set_config reads the value as a startup packet would) and "RESET name;"
 * for values pgtide set earlier that the client does not want. Returns the number of changes
 * (0: nothing to do); with sql NULL it only counts them.
 */
size_t params_sync_sql(const struct params *client, const struct params *server, struct pbuf *sql);

/* How many changes params_sync_sql would make, without building the SQL. */
size_t params_sync_count(const struct params *client, const struct params *server);

/*
 * After the sync SQL succeeded: records on `server` the non-reported values pgtide set and
 * forgets the ones it reset. (Reported ones arrive as ParameterStatus messages.)
 */
void params_sync_done(const struct params *client, struct params *server);

/*
 * A 64-bit signature of a parameter set, independent of order and of the letter case of names:
 * two sets with the same signature hold the same values (collisions aside), so linking a
 * client to a server already in its state needs no comparison of the tables. Never 0.
 */
uint64_t params_signature(const struct params *p);

/*
 * A shared, immutable parameter set. Clients with the same parameters (the usual case: one
 * application, one driver) share one, so an idle client costs a pointer, not a table.
 */
struct pset {
	struct pset *next; /* hash chain in its table */
	uint32_t refs;
	uint64_t sig; /* params_signature(&p) */
	struct params p;
	struct pbuf status; /* ParameterStatus messages of its reported values, built once */
};

/* The ParameterStatus messages for s's reported parameters (for a login), built on first use. */
const struct pbuf *pset_status_messages(struct pset *s);

/* The table of shared sets (one per event loop). Zero-initialise. */
struct pset_table {
	struct pset **buckets;
	size_t n_buckets; /* power of two, or 0 before first use */
	size_t n;
};

/*
 * Returns the shared set equal to *p, with a reference for the caller. Takes over p's contents
 * (freed if an equal set already exists). NULL if out of memory (p is freed).
 */
struct pset *pset_intern(struct pset_table *t, struct params *p);
/* Drops a reference; the set is freed with its last one. */
void pset_release(struct pset_table *t, struct pset *s);
/*
 * The set s with name set to value, interned; the caller's reference moves from s to the
 * result. Returns s unchanged if out of memory or if nothing changes.
 */
struct pset *pset_with(struct pset_table *t, struct pset *s, const char *name, const char *value);
/* The set s without name, interned; the caller's reference moves as in pset_with. */
struct pset *pset_without(struct pset_table *t, struct pset *s, const char *name);
void pset_table_free(struct pset_table *t);

/* Appends a quoted SQL identifier for a parameter name ("a"."b" for a dotted name). */
void params_quote_name(struct pbuf *b, const char *name);
/* Appends an E'...' string literal (safe whatever standard_conforming_strings is). */
void params_quote_value(struct pbuf *b, const char *value);

#endif
