/*
 * Client connections counted by name, for PgBouncer's max_db_client_connections (per database
 * name a client asks for) and max_user_client_connections (per user name it logs in as), and
 * the decision to admit or refuse a new one. Pure: no I/O.
 */
#ifndef PGTIDE_CLIMIT_H
#define PGTIDE_CLIMIT_H

#include <stddef.h>
#include <stdint.h>

/* The clients counted under one name. Its address stays valid while n > 0 (clients hold it). */
struct climit_count {
	struct climit_count *next; /* bucket chain */
	uint32_t hash;
	int n;       /* clients counted; the entry is freed when it drops to 0 */
	char name[]; /* the database or user name */
};

/*
 * Names with at least one client, hashed: a login costs one lookup however many clients and
 * names there are (names come from startup packets, so there can be as many as clients).
 */
struct climit_table {
	struct climit_count **buckets;
	size_t n_buckets; /* a power of two, or 0 before the first name */
	size_t n_names;
};

/* Clients counted under name now (0 if none). */
int climit_current(const struct climit_table *t, const char *name);

/* What climit_admit decided. */
enum climit_result {
	CLIMIT_OK = 0,
	CLIMIT_DB_FULL,   /* the database has max_db_client_connections clients already */
	CLIMIT_USER_FULL, /* the user has max_user_client_connections clients already */
	CLIMIT_OOM,
};

/*
 * A client for (db, user) wants in. Each limit is the one in force (0 or less: unlimited). The
 * database is checked first, then the user; a refused client is counted nowhere. Admitted, it
 * is counted under both names and *db_count and *user_count are what to give back with
 * climit_release when it leaves.
 */
enum climit_result climit_admit(struct climit_table *dbs, struct climit_table *users,
                                const char *db, int db_limit, const char *user, int user_limit,
                                struct climit_count **db_count, struct climit_count **user_count);

/* A counted client left: one less under that name (the entry goes at 0). NULL is ignored. */
void climit_release(struct climit_table *t, struct climit_count *e);

/* Frees every entry (at exit: any count still held is dropped with it). */
void climit_table_free(struct climit_table *t);

#endif
