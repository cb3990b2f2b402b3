/* Unit tests of climit.c: client counts per database and user name, and the admit decision. */
#include <stdio.h>
#include <stdlib.h>

#include "pgtide/climit.h"
#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_HELD     16

/*
 * A script of logins and departures against one pair of tables. A login row admits (db, user)
 * under the limits and expects a result; a departure row (leave >= 0) releases the client the
 * leave'th login row admitted. After each row the counts of "app", "other", "bob" and "eve" are
 * checked.
 */
struct step {
	int leave; /* -1: a login; else the row whose client leaves */
	const char *db;
	int db_limit;
	const char *user;
	int user_limit;
	enum climit_result want;
	int app, other, bob, eve; /* counts afterwards */
};

static void run_script(const char *name, const struct step *steps, size_t n)
{
	struct climit_table dbs = {0}, users = {0};
	struct climit_count *held_db[MAX_HELD] = {0}, *held_user[MAX_HELD] = {0};

	for (size_t i = 0; i < n && i < MAX_HELD; i++) {
		const struct step *s = &steps[i];
		if (s->leave >= 0) {
			climit_release(&dbs, held_db[s->leave]);
			climit_release(&users, held_user[s->leave]);
			held_db[s->leave] = held_user[s->leave] = NULL;
		} else {
			enum climit_result r =
			        climit_admit(&dbs, &users, s->db, s->db_limit, s->user,
			                     s->user_limit, &held_db[i], &held_user[i]);
			CHECK(r == s->want, "%s, step %zu: result %d, want %d", name, i, (int)r,
			      (int)s->want);
			CHECK((r == CLIMIT_OK) == (held_db[i] != NULL && held_user[i] != NULL),
			      "%s, step %zu: counted exactly when admitted", name, i);
		}
		int app = climit_current(&dbs, "app"), other = climit_current(&dbs, "other");
		int bob = climit_current(&users, "bob"), eve = climit_current(&users, "eve");
		CHECK(app == s->app && other == s->other && bob == s->bob && eve == s->eve,
		      "%s, step %zu: app %d other %d bob %d eve %d, want %d %d %d %d", name, i, app,
		      other, bob, eve, s->app, s->other, s->bob, s->eve);
	}
	for (size_t i = 0; i < MAX_HELD; i++) {
		climit_release(&dbs, held_db[i]);
		climit_release(&users, held_user[i]);
	}
	CHECK(dbs.n_names == 0 && users.n_names == 0,
	      "%s: every name gone once its clients left (%zu, %zu left)", name, dbs.n_names,
	      users.n_names);
	climit_table_free(&dbs);
	climit_table_free(&users);
}

static void test_scripts(void)
{
	static const struct step unlimited[] = {
	        {-1, "app", 0, "bob", 0, CLIMIT_OK, 1, 0, 1, 0},
	        {-1, "app", 0, "bob", 0, CLIMIT_OK, 2, 0, 2, 0},
	        {-1, "other", 0, "eve", 0, CLIMIT_OK, 2, 1, 2, 1},
	        {0, NULL, 0, NULL, 0, CLIMIT_OK, 1, 1, 1, 1},
	        {1, NULL, 0, NULL, 0, CLIMIT_OK, 0, 1, 0, 1},
	};
	static const struct step db_limit[] = {
	        {-1, "app", 2, "bob", 0, CLIMIT_OK, 1, 0, 1, 0},
	        {-1, "app", 2, "eve", 0, CLIMIT_OK, 2, 0, 1, 1},
	        /* full whatever the user; another database is not */
	        {-1, "app", 2, "bob", 0, CLIMIT_DB_FULL, 2, 0, 1, 1},
	        {-1, "app", 2, "carol", 0, CLIMIT_DB_FULL, 2, 0, 1, 1},
	        {-1, "other", 2, "bob", 0, CLIMIT_OK, 2, 1, 2, 1},
	        /* one leaves: the next gets in */
	        {0, NULL, 0, NULL, 0, CLIMIT_OK, 1, 1, 1, 1},
	        {-1, "app", 2, "bob", 0, CLIMIT_OK, 2, 1, 2, 1},
	        {-1, "app", 2, "bob", 0, CLIMIT_DB_FULL, 2, 1, 2, 1},
	        /* a raised limit (a reload) lets more in; a lowered one keeps those in */
	        {-1, "app", 3, "bob", 0, CLIMIT_OK, 3, 1, 3, 1},
	        {-1, "app", 1, "bob", 0, CLIMIT_DB_FULL, 3, 1, 3, 1},
	        {-1, "app", 0, "bob", 0, CLIMIT_OK, 4, 1, 4, 1},
	};
	static const struct step user_limit[] = {
	        {-1, "app", 0, "bob", 2, CLIMIT_OK, 1, 0, 1, 0},
	        {-1, "other", 0, "bob", 2, CLIMIT_OK, 1, 1, 2, 0},
	        /* full whatever the database, and the database does not count it */
	        {-1, "other", 0, "bob", 2, CLIMIT_USER_FULL, 1, 1, 2, 0},
	        {-1, "app", 0, "eve", 2, CLIMIT_OK, 2, 1, 2, 1},
	        {1, NULL, 0, NULL, 0, CLIMIT_OK, 2, 0, 1, 1},
	        {-1, "other", 0, "bob", 2, CLIMIT_OK, 2, 1, 2, 1},
	};
	static const struct step both[] = {
	        {-1, "app", 1, "bob", 1, CLIMIT_OK, 1, 0, 1, 0},
	        /* both full: the database is named first */
	        {-1, "app", 1, "bob", 1, CLIMIT_DB_FULL, 1, 0, 1, 0},
	        {-1, "other", 1, "bob", 1, CLIMIT_USER_FULL, 1, 0, 1, 0},
	        {-1, "app", 1, "eve", 1, CLIMIT_DB_FULL, 1, 0, 1, 0},
	        {-1, "other", 1, "eve", 1, CLIMIT_OK, 1, 1, 1, 1},
	        {0, NULL, 0, NULL, 0, CLIMIT_OK, 0, 1, 0, 1},
	        {-1, "app", 1, "bob", 1, CLIMIT_OK, 1, 1, 1, 1},
	};
	run_script("unlimited", unlimited, ARRAY_LEN(unlimited));
	run_script("per database", db_limit, ARRAY_LEN(db_limit));
	run_script("per user", user_limit, ARRAY_LEN(user_limit));
	run_script("both", both, ARRAY_LEN(both));
}

/* Many names at once (as many as clients, from made-up startup packets) grow the table. */
static void test_many_names(void)
{
	enum { N = 5000 };
	struct climit_table dbs = {0}, users = {0};
	static struct climit_count *d[N], *u[N];
	char db[32], user[32];

	for (int i = 0; i < N; i++) {
		snprintf(db, sizeof(db), "db%d", i % 700);
		snprintf(user, sizeof(user), "user%d", i);
		enum climit_result r = climit_admit(&dbs, &users, db, 0, user, 1, &d[i], &u[i]);
		CHECK(r == CLIMIT_OK, "client %d admitted", i);
	}
	CHECK(dbs.n_names == 700 && users.n_names == N, "names: %zu databases, %zu users",
	      dbs.n_names, users.n_names);
	CHECK(users.n_buckets >= users.n_names, "buckets grew with the names (%zu for %zu)",
	      users.n_buckets, users.n_names);
	CHECK(climit_current(&dbs, "db0") == 8 && climit_current(&dbs, "db699") == 7,
	      "db0 %d, db699 %d", climit_current(&dbs, "db0"), climit_current(&dbs, "db699"));
	struct climit_count *x, *y;
	CHECK(climit_admit(&dbs, &users, "dbX", 0, "user4999", 1, &x, &y) == CLIMIT_USER_FULL,
	      "user4999 is at its limit of 1");
	CHECK(climit_current(&dbs, "dbX") == 0 && dbs.n_names == 700,
	      "a refused client leaves no name behind");
	for (int i = 0; i < N; i += 2) {
		climit_release(&dbs, d[i]);
		climit_release(&users, u[i]);
	}
	CHECK(users.n_names == N / 2, "half the users left: %zu names", users.n_names);
	CHECK(climit_current(&users, "user1") == 1 && climit_current(&users, "user2") == 0,
	      "the right ones left");
	for (int i = 1; i < N; i += 2) {
		climit_release(&dbs, d[i]);
		climit_release(&users, u[i]);
	}
	CHECK(dbs.n_names == 0 && users.n_names == 0, "all gone");
	CHECK(climit_current(&dbs, "db0") == 0, "db0 counts nobody");
	climit_release(&dbs, NULL); /* ignored */
	climit_table_free(&dbs);
	climit_table_free(&users);
	CHECK(climit_current(&dbs, "db0") == 0 && dbs.n_buckets == 0, "a freed table is empty");
}

int main(void)
{
	test_scripts();
	test_many_names();
	UNIT_DONE();
}
