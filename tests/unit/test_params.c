/* Table-driven tests for params.c: the table, reported/server-fact lists, quoting, sync SQL. */
#include "pgtide/params.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_KV       8
#define P(n, v)                                                                                    \
	{                                                                                          \
		(n), (v), false                                                                    \
	} /* a parameter */
#define OURS(n, v)                                                                                 \
	{                                                                                          \
		(n), (v), true                                                                     \
	} /* a parameter pgtide SET on the server */
#define END                                                                                        \
	{                                                                                          \
		NULL, NULL, false                                                                  \
	}

/* One parameter of a table in a test row; a NULL name ends the list. */
struct kv {
	const char *name;
	const char *value;
	bool set_by_us;
};

static void load(struct params *p, const struct kv *kv)
{
	for (size_t i = 0; i < MAX_KV && kv[i].name; i++) {
		CHECK(params_set(p, kv[i].name, kv[i].value), "load %s", kv[i].name);
		struct param *x = params_find(p, kv[i].name);
		if (x)
			x->set_by_us = kv[i].set_by_us;
	}
}

/* True if p holds exactly kv, in order, names and flags included. */
static bool same(const struct params *p, const struct kv *kv, char *why, size_t cap)
{
	size_t n = 0;

	while (n < MAX_KV && kv[n].name)
		n++;
	if (p->n != n) {
		snprintf(why, cap, "%zu parameters, want %zu", p->n, n);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const struct param *x = &p->v[i];
		if (strcmp(x->name, kv[i].name) != 0 || strcmp(x->value, kv[i].value) != 0 ||
		    x->set_by_us != kv[i].set_by_us) {
			snprintf(why, cap, "#%zu is %s=%s%s, want %s=%s%s", i, x->name, x->value,
			         x->set_by_us ? " (ours)" : "", kv[i].name, kv[i].value,
			         kv[i].set_by_us ? " (ours)" : "");
			return false;
		}
	}
	return true;
}

/* The buffer's bytes as a NUL-terminated string in out. */
static const char *text(const struct pbuf *b, char *out, size_t cap)
{
	size_t n = b->len < cap - 1 ? b->len : cap - 1;

	if (n)
		memcpy(out, b->data, n);
	out[n] = 0;
	return out;
}

/* ---- the table ---- */

static void test_set_get(void)
{
	const struct {
		const char *name;
		struct kv set[MAX_KV]; /* applied in order with params_set */
		const char *get;
		const char *want;   /* params_get(get); NULL: absent */
		const char *stored; /* the stored name (as first seen) */
		size_t n;           /* entries afterwards */
	} cases[] = {
	        {"exact name", {P("TimeZone", "UTC")}, "TimeZone", "UTC", "TimeZone", 1},
	        {"set DateStyle, get datestyle",
	         {P("DateStyle", "ISO, MDY")},
	         "datestyle",
	         "ISO, MDY",
	         "DateStyle",
	         1},
	        {"set datestyle, get DATESTYLE",
	         {P("datestyle", "ISO")},
	         "DATESTYLE",
	         "ISO",
	         "datestyle",
	         1},
	        {"absent", {P("TimeZone", "UTC")}, "DateStyle", NULL, NULL, 1},
	        {"prefix is not a match", {P("TimeZone", "UTC")}, "Time", NULL, NULL, 1},
	        {"empty table", {END}, "TimeZone", NULL, NULL, 0},
	        {"replace value",
	         {P("TimeZone", "UTC"), P("TimeZone", "Europe/Paris")},
	         "timezone",
	         "Europe/Paris",
	         "TimeZone",
	         1},
	        {"replace through another case keeps the first name",
	         {P("DateStyle", "ISO"), P("DATESTYLE", "German")},
	         "datestyle",
	         "German",
	         "DateStyle",
	         1},
	        {"replace with the same value", {P("a", "1"), P("A", "1")}, "a", "1", "a", 1},
	        {"empty value is a value",
	         {P("application_name", "")},
	         "application_name",
	         "",
	         "application_name",
	         1},
	        {"several", {P("a", "1"), P("b", "2"), P("c", "3")}, "B", "2", "b", 3},
	        {"values are case-sensitive", {P("a", "X"), P("a", "x")}, "a", "x", "a", 1},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct params p = {0};

		for (size_t k = 0; k < MAX_KV && cases[i].set[k].name; k++)
			CHECK(params_set(&p, cases[i].set[k].name, cases[i].set[k].value),
			      "set/get %s: set #%zu", cases[i].name, k);
		CHECK_STR(params_get(&p, cases[i].get), cases[i].want, "set/get %s: get %s",
		          cases[i].name, cases[i].get);
		struct param *x = params_find(&p, cases[i].get);
		CHECK(cases[i].stored ? x != NULL : x == NULL, "set/get %s: find", cases[i].name);
		if (x && cases[i].stored)
			CHECK_STR(x->name, cases[i].stored, "set/get %s: stored name \"%s\"",
			          cases[i].name, x->name);
		CHECK(p.n == cases[i].n, "set/get %s: %zu entries, want %zu", cases[i].name, p.n,
		      cases[i].n);
		params_free(&p);
	}
}

static void test_set_keeps_flag(void)
{
	struct params p = {0};

	params_set(&p, "work_mem", "4MB");
	params_find(&p, "work_mem")->set_by_us = true;
	params_set(&p, "WORK_MEM", "8MB");
	CHECK(params_find(&p, "work_mem")->set_by_us,
	      "set keeps set_by_us: replacing a value does not clear the flag");
	CHECK_STR(params_get(&p, "work_mem"), "8MB", "set keeps set_by_us: value replaced");
	params_free(&p);
}

static void test_grow(void)
{
	const size_t counts[] = {15, 16, 17, 33, 100};

	for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
		struct params p = {0};
		char name[32], value[32];
		bool all = true;

		for (size_t k = 0; k < counts[i]; k++) {
			snprintf(name, sizeof(name), "Param_%zu", k);
			snprintf(value, sizeof(value), "v%zu", k);
			all = params_set(&p, name, value) && all;
		}
		CHECK(all && p.n == counts[i], "grow %zu: %zu entries", counts[i], p.n);
		for (size_t k = 0; k < counts[i]; k++) {
			snprintf(name, sizeof(name), "PARAM_%zu", k);
			snprintf(value, sizeof(value), "v%zu", k);
			const char *got = params_get(&p, name);
			if (!got || strcmp(got, value) != 0) {
				CHECK(false, "grow %zu: %s is %s", counts[i], name,
				      got ? got : "(absent)");
				break;
			}
		}
		params_free(&p);
	}
}

static void test_remove(void)
{
	const struct {
		const char *name;
		struct kv before[MAX_KV];
		const char *remove[4];
		struct kv after[MAX_KV];
	} cases[] = {
	        {"middle, other case",
	         {P("a", "1"), P("b", "2"), P("c", "3")},
	         {"B"},
	         {P("a", "1"), P("c", "3")}},
	        {"first",
	         {P("a", "1"), P("b", "2"), P("c", "3")},
	         {"a"},
	         {P("b", "2"), P("c", "3")}},
	        {"last",
	         {P("a", "1"), P("b", "2"), P("c", "3")},
	         {"c"},
	         {P("a", "1"), P("b", "2")}},
	        {"absent is a no-op", {P("a", "1")}, {"zz"}, {P("a", "1")}},
	        {"from an empty table", {END}, {"a"}, {END}},
	        {"all of them", {P("a", "1"), P("b", "2")}, {"b", "a"}, {END}},
	        {"twice", {P("a", "1"), P("b", "2")}, {"a", "a"}, {P("b", "2")}},
	        {"keeps flags of the rest",
	         {OURS("a", "1"), P("b", "2"), OURS("c", "3")},
	         {"b"},
	         {OURS("a", "1"), OURS("c", "3")}},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct params p = {0};
		char why[200];

		load(&p, cases[i].before);
		for (size_t k = 0; k < 4 && cases[i].remove[k]; k++)
			params_remove(&p, cases[i].remove[k]);
		CHECK(same(&p, cases[i].after, why, sizeof(why)), "remove %s: %s", cases[i].name,
		      why);
		/* The table still works after removals. */
		CHECK(params_set(&p, "new", "x") && p.v[p.n - 1].value &&
		              strcmp(params_get(&p, "new"), "x") == 0,
		      "remove %s: set afterwards", cases[i].name);
		params_free(&p);
	}
}

static void test_copy(void)
{
	const struct {
		const char *name;
		struct kv dst[MAX_KV];
		struct kv src[MAX_KV];
		struct kv want[MAX_KV];
	} cases[] = {
	        {"into an empty table",
	         {END},
	         {P("TimeZone", "UTC"), P("DateStyle", "ISO")},
	         {P("TimeZone", "UTC"), P("DateStyle", "ISO")}},
	        {"from an empty table", {P("a", "1")}, {END}, {P("a", "1")}},
	        /* client_login_complete: the server's defaults, then what the client asked for */
	        {"overrides and appends",
	         {P("TimeZone", "GMT"), P("DateStyle", "ISO")},
	         {P("timezone", "UTC"), P("search_path", "app")},
	         {P("TimeZone", "UTC"), P("DateStyle", "ISO"), P("search_path", "app")}},
	        {"set_by_us is not copied",
	         {END},
	         {OURS("work_mem", "8MB")},
	         {P("work_mem", "8MB")}},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct params dst = {0}, src = {0};
		char why[200];

		load(&dst, cases[i].dst);
		load(&src, cases[i].src);
		CHECK(params_copy(&dst, &src), "copy %s: ok", cases[i].name);
		CHECK(same(&dst, cases[i].want, why, sizeof(why)), "copy %s: %s", cases[i].name,
		      why);
		CHECK(same(&src, cases[i].src, why, sizeof(why)), "copy %s: source changed: %s",
		      cases[i].name, why);
		/* The copy owns its strings: freeing the source leaves it intact. */
		params_free(&src);
		CHECK(same(&dst, cases[i].want, why, sizeof(why)),
		      "copy %s: after freeing the source: %s", cases[i].name, why);
		params_free(&dst);
	}
}

static void test_free(void)
{
	struct params p = {0};

	params_free(&p);
	CHECK(p.v == NULL && p.n == 0 && p.cap == 0, "free: an empty table");
	params_set(&p, "a", "1");
	params_set(&p, "b", "2");
	params_free(&p);
	CHECK(p.v == NULL && p.n == 0 && p.cap == 0, "free: zeroes the table");
	CHECK(params_get(&p, "a") == NULL, "free: nothing left to find");
	CHECK(params_set(&p, "c", "3") && p.n == 1, "free: usable again");
	params_free(&p);
}

/* ---- reported parameters ---- */

static void test_lists(void)
{
	const struct {
		const char *name;
		bool reported;
		bool fact;
	} cases[] = {
	        {"application_name", true, false},
	        {"client_encoding", true, false},
	        {"DateStyle", true, false},
	        {"datestyle", true, false},
	        {"default_transaction_read_only", true, false},
	        {"in_hot_standby", true, true},
	        {"integer_datetimes", true, true},
	        {"IntervalStyle", true, false},
	        {"intervalstyle", true, false},
	        {"is_superuser", true, true},
	        {"server_encoding", true, true},
	        {"server_version", true, true},
	        {"SERVER_VERSION", true, true},
	        {"session_authorization", true, true},
	        {"standard_conforming_strings", true, false},
	        {"TimeZone", true, false},
	        {"timezone", true, false},
	        {"search_path", false, false},
	        {"work_mem", false, false},
	        {"statement_timeout", false, false},
	        {"server_version_num", false, false},
	        {"TimeZon", false, false},
	        {"TimeZoneX", false, false},
	        {"", false, false},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		CHECK(params_is_reported(cases[i].name) == cases[i].reported,
		      "is_reported \"%s\": want %d", cases[i].name, cases[i].reported);
		CHECK(params_is_server_fact(cases[i].name) == cases[i].fact,
		      "is_server_fact \"%s\": want %d", cases[i].name, cases[i].fact);
	}
}

/* ---- quoting ---- */

static void test_quote(void)
{
	const struct {
		const char *name;
		bool value; /* params_quote_value, else params_quote_name */
		const char *in;
		const char *want;
	} cases[] = {
	        {"name", false, "a", "\"a\""},
	        {"mixed-case name", false, "TimeZone", "\"TimeZone\""},
	        {"dotted name", false, "a.b", "\"a\".\"b\""},
	        {"two dots", false, "x.y.z", "\"x\".\"y\".\"z\""},
	        {"embedded quote doubled", false, "a\"b", "\"a\"\"b\""},
	        {"dotted with quote", false, "my\"ext.opt", "\"my\"\"ext\".\"opt\""},
	        {"empty name", false, "", "\"\""},
	        {"value", true, "UTC", "E'UTC'"},
	        {"empty value", true, "", "E''"},
	        {"quote doubled", true, "it's", "E'it''s'"},
	        {"backslash doubled", true, "a\\b", "E'a\\\\b'"},
	        {"backslash then quote", true, "\\'", "E'\\\\'''"},
	        {"double quotes untouched", true, "\"$user\", public", "E'\"$user\", public'"},
	        {"injection attempt", true, "x'; DROP TABLE t; --", "E'x''; DROP TABLE t; --'"},
	        {"UTF-8 untouched", true, "caf\xC3\xA9", "E'caf\xC3\xA9'"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct pbuf b = {0};
		char got[128];

		pbuf_put(&b, "x", 1); /* quoting appends */
		if (cases[i].value)
			params_quote_value(&b, cases[i].in);
		else
			params_quote_name(&b, cases[i].in);
		CHECK(b.len > 0 && b.data[0] == 'x', "quote %s: appends", cases[i].name);
		CHECK(strcmp(text(&b, got, sizeof(got)) + 1, cases[i].want) == 0,
		      "quote %s: got %s, want %s", cases[i].name, got + 1, cases[i].want);
		pbuf_free(&b);
	}
}

/* ---- syncing a server to a client ---- */

/* One set_config() call of the sync SQL. */
#define SETCFG(n, v) "pg_catalog.set_config(E'" n "', E'" v "', false)"

static void test_sync_sql(void)
{
	const struct {
		const char *name;
		struct kv client[MAX_KV];
		struct kv server[MAX_KV];
		size_t n; /* changes */
		const char *sql;
	} cases[] = {
	        {"identical",
	         {P("TimeZone", "UTC"), P("DateStyle", "ISO, MDY")},
	         {P("DateStyle", "ISO, MDY"), P("TimeZone", "UTC")},
	         0,
	         ""},
	        {"both empty", {END}, {END}, 0, ""},
	        {"names differ only in case",
	         {P("timezone", "UTC")},
	         {P("TimeZone", "UTC")},
	         0,
	         ""},
	        {"client differs",
	         {P("TimeZone", "UTC")},
	         {P("TimeZone", "Europe/Paris")},
	         1,
	         "SELECT " SETCFG("TimeZone", "UTC") ";"},
	        {"values compare case-sensitively",
	         {P("TimeZone", "utc")},
	         {P("TimeZone", "UTC")},
	         1,
	         "SELECT " SETCFG("TimeZone", "utc") ";"},
	        {"absent on the server",
	         {P("search_path", "app")},
	         {END},
	         1,
	         "SELECT " SETCFG("search_path", "app") ";"},
	        /* set_config splits a list value as a startup packet does: two schemas, not one */
	        {"list value stays one literal",
	         {P("search_path", "a, b")},
	         {END},
	         1,
	         "SELECT " SETCFG("search_path", "a, b") ";"},
	        {"server fact differing is ignored",
	         {P("server_version", "15.4"), P("TimeZone", "UTC"), P("is_superuser", "on")},
	         {P("server_version", "16.1"), P("TimeZone", "UTC"), P("is_superuser", "off")},
	         0,
	         ""},
	        {"server has a set_by_us param the client lacks",
	         {END},
	         {OURS("search_path", "app")},
	         1,
	         "RESET \"search_path\";"},
	        {"server param the client lacks but pgtide did not set",
	         {END},
	         {P("application_name", "old")},
	         0,
	         ""},
	        {"set_by_us param the client wants the same",
	         {P("work_mem", "8MB")},
	         {OURS("work_mem", "8MB")},
	         0,
	         ""},
	        {"set_by_us param the client wants differently",
	         {P("work_mem", "16MB")},
	         {OURS("work_mem", "8MB")},
	         1,
	         "SELECT " SETCFG("work_mem", "16MB") ";"},
	        {"quotes and backslashes in the value",
	         {P("search_path", "\"$user\", it's \\x")},
	         {END},
	         1,
	         "SELECT " SETCFG("search_path", "\"$user\", it''s \\\\x") ";"},
	        {"quote in the name",
	         {P("my'opt.x", "1")},
	         {END},
	         1,
	         "SELECT " SETCFG("my''opt.x", "1") ";"},
	        {"dotted name",
	         {P("myapp.tenant", "42")},
	         {END},
	         1,
	         "SELECT " SETCFG("myapp.tenant", "42") ";"},
	        {"dotted name reset",
	         {END},
	         {OURS("myapp.tenant", "42")},
	         1,
	         "RESET \"myapp\".\"tenant\";"},
	        {"several at once: one SELECT in client order, then RESETs in server order",
	         {P("TimeZone", "UTC"), P("DateStyle", "ISO"), P("application_name", "app"),
	          P("work_mem", "64MB"), P("server_version", "15")},
	         {OURS("statement_timeout", "5s"), P("TimeZone", "GMT"), P("DateStyle", "ISO"),
	          P("application_name", ""), OURS("work_mem", "4MB"), OURS("lock_timeout", "1s"),
	          P("server_version", "16")},
	         5,
	         "SELECT pg_catalog.set_config(E'TimeZone', E'UTC', false), "
	         "pg_catalog.set_config(E'application_name', E'app', false), "
	         "pg_catalog.set_config(E'work_mem', E'64MB', false);"
	         "RESET \"statement_timeout\";"
	         "RESET \"lock_timeout\";"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct params client = {0}, server = {0};
		struct pbuf sql = {0};
		char got[512];

		load(&client, cases[i].client);
		load(&server, cases[i].server);
		size_t n = params_sync_sql(&client, &server, &sql);
		CHECK(n == cases[i].n, "sync_sql %s: %zu changes, want %zu", cases[i].name, n,
		      cases[i].n);
		CHECK(strcmp(text(&sql, got, sizeof(got)), cases[i].sql) == 0,
		      "sync_sql %s:\n  got  \"%s\"\n  want \"%s\"", cases[i].name, got,
		      cases[i].sql);
		pbuf_free(&sql);
		params_free(&client);
		params_free(&server);
	}
}

static void test_sync_done(void)
{
	const struct {
		const char *name;
		struct kv client[MAX_KV];
		struct kv server[MAX_KV];
		struct kv after[MAX_KV]; /* the server's table afterwards, in order */
		size_t resync;           /* params_sync_sql(client, server) afterwards */
	} cases[] = {
	        {"records non-reported client params as ours",
	         {P("search_path", "app"), P("work_mem", "8MB")},
	         {END},
	         {OURS("search_path", "app"), OURS("work_mem", "8MB")},
	         0},
	        {"leaves reported ones to ParameterStatus",
	         {P("TimeZone", "UTC"), P("application_name", "app")},
	         {P("TimeZone", "GMT")},
	         {P("TimeZone", "GMT")},
	         2},
	        {"server facts are reported too",
	         {P("server_version", "15")},
	         {P("server_version", "16")},
	         {P("server_version", "16")},
	         0},
	        {"removes ours the client does not want",
	         {P("TimeZone", "UTC")},
	         {OURS("work_mem", "64MB"), P("TimeZone", "UTC")},
	         {P("TimeZone", "UTC")},
	         0},
	        {"removes several in a row",
	         {END},
	         {OURS("a", "1"), OURS("b", "2"), P("TimeZone", "UTC"), OURS("c", "3")},
	         {P("TimeZone", "UTC")},
	         0},
	        {"keeps a non-reported param pgtide did not set",
	         {END},
	         {P("work_mem", "4MB")},
	         {P("work_mem", "4MB")},
	         0},
	        {"updates ours to the client's value",
	         {P("work_mem", "8MB")},
	         {OURS("work_mem", "64MB")},
	         {OURS("work_mem", "8MB")},
	         0},
	        {"claims an existing param the client set",
	         {P("work_mem", "4MB")},
	         {P("work_mem", "4MB")},
	         {OURS("work_mem", "4MB")},
	         0},
	        {"case-insensitive, the server keeps its spelling",
	         {P("Work_Mem", "8MB")},
	         {OURS("work_mem", "4MB")},
	         {OURS("work_mem", "8MB")},
	         0},
	        {"all at once",
	         {P("TimeZone", "UTC"), P("search_path", "app"), P("lock_timeout", "2s")},
	         {OURS("statement_timeout", "5s"), P("TimeZone", "UTC"), OURS("lock_timeout", "1s"),
	          OURS("work_mem", "8MB")},
	         {P("TimeZone", "UTC"), OURS("lock_timeout", "2s"), OURS("search_path", "app")},
	         0},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct params client = {0}, server = {0};
		struct pbuf sql = {0};
		char why[200];

		load(&client, cases[i].client);
		load(&server, cases[i].server);
		params_sync_done(&client, &server);
		CHECK(same(&server, cases[i].after, why, sizeof(why)), "sync_done %s: %s",
		      cases[i].name, why);
		size_t n = params_sync_sql(&client, &server, &sql);
		CHECK(n == cases[i].resync, "sync_done %s: %zu statements still to run, want %zu",
		      cases[i].name, n, cases[i].resync);
		pbuf_free(&sql);
		params_free(&client);
		params_free(&server);
	}
}

/* Shared sets: equal tables intern to one set, whatever the order or the case of names. */
static void test_pset(void)
{
	static const struct {
		const char *name;
		const char *a; /* "n=v;n=v" */
		const char *b;
		bool same;
	} rows[] = {
	        {"identical", "TimeZone=UTC;application_name=x", "TimeZone=UTC;application_name=x",
	         true},
	        {"other order", "TimeZone=UTC;application_name=x",
	         "application_name=x;TimeZone=UTC", true},
	        {"name case", "TimeZone=UTC", "timezone=UTC", true},
	        {"value differs", "TimeZone=UTC", "TimeZone=utc", false},
	        {"extra param", "TimeZone=UTC", "TimeZone=UTC;search_path=a", false},
	        {"empty vs empty", "", "", true},
	        {"value moved between names", "a=1;b=2", "a=2;b=1", false},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct pset_table t = {0};
		struct params pa = {0}, pb = {0};
		const char *src[2] = {rows[i].a, rows[i].b};
		struct params *dst[2] = {&pa, &pb};
		for (int k = 0; k < 2; k++) {
			char buf[256];
			snprintf(buf, sizeof(buf), "%s", src[k]);
			char *save = NULL;
			for (char *kv = strtok_r(buf, ";", &save); kv;
			     kv = strtok_r(NULL, ";", &save)) {
				char *eq = strchr(kv, '=');
				*eq = 0;
				params_set(dst[k], kv, eq + 1);
			}
		}
		struct pset *a = pset_intern(&t, &pa);
		struct pset *b = pset_intern(&t, &pb);
		CHECK(a && b, "pset %s: interned", rows[i].name);
		CHECK((a == b) == rows[i].same, "pset %s: shared=%d, want %d", rows[i].name, a == b,
		      rows[i].same);
		CHECK(t.n == (rows[i].same ? 1u : 2u), "pset %s: %zu sets in the table",
		      rows[i].name, t.n);
		CHECK(a->refs == (rows[i].same ? 2u : 1u), "pset %s: refs %u", rows[i].name,
		      a->refs);
		pset_release(&t, a);
		pset_release(&t, b);
		CHECK(t.n == 0, "pset %s: table empty after the last release (%zu)", rows[i].name,
		      t.n);
		pset_table_free(&t);
	}

	/* pset_with: copy on write, back to the shared set when the values meet again. */
	struct pset_table t = {0};
	struct params p1 = {0}, p2 = {0};
	params_set(&p1, "TimeZone", "UTC");
	params_set(&p2, "TimeZone", "UTC");
	struct pset *x = pset_intern(&t, &p1);
	struct pset *y = pset_intern(&t, &p2);
	CHECK(x == y && x->refs == 2, "pset_with: two clients share one set");
	y = pset_with(&t, y, "TimeZone", "Asia/Tokyo");
	CHECK(x != y && x->refs == 1 && y->refs == 1, "pset_with: a change copies");
	CHECK_STR(params_get(&x->p, "TimeZone"), "UTC", "pset_with: the other client keeps UTC");
	CHECK_STR(params_get(&y->p, "TimeZone"), "Asia/Tokyo", "pset_with: the changed one");
	struct pset *same = pset_with(&t, y, "timezone", "Asia/Tokyo");
	CHECK(same == y, "pset_with: no change, same set");
	y = pset_with(&t, y, "TimeZone", "UTC");
	CHECK(x == y && x->refs == 2 && t.n == 1, "pset_with: equal again, shared again");
	CHECK(x->sig == params_signature(&x->p), "pset: sig matches its table");
	/* pset_without: the same copy on write, the other way */
	y = pset_with(&t, y, "work_mem", "7MB");
	CHECK(x != y && x->refs == 1 && params_get(&y->p, "work_mem"), "pset_without: setup");
	struct pset *z = pset_without(&t, y, "WORK_MEM");
	CHECK(z == x && x->refs == 2 && t.n == 1, "pset_without: back to the shared set");
	y = z;
	CHECK(pset_without(&t, y, "work_mem") == y && x->refs == 2, "pset_without: absent");
	pset_release(&t, x);
	pset_release(&t, y);
	CHECK(t.n == 0, "pset_with: all released");
	pset_table_free(&t);

	/* Many sets: the table grows and every one is found again. */
	struct pset_table g = {0};
	struct pset *sets[300];
	for (int i = 0; i < 300; i++) {
		struct params p = {0};
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		params_set(&p, "application_name", v);
		sets[i] = pset_intern(&g, &p);
	}
	CHECK(g.n == 300, "pset grow: 300 sets (%zu)", g.n);
	bool all_found = true;
	for (int i = 0; i < 300; i++) {
		struct params p = {0};
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		params_set(&p, "application_name", v);
		struct pset *again = pset_intern(&g, &p);
		all_found &= again == sets[i];
		pset_release(&g, again);
	}
	CHECK(all_found, "pset grow: each set found again after growth");
	for (int i = 0; i < 300; i++)
		pset_release(&g, sets[i]);
	CHECK(g.n == 0, "pset grow: released");
	pset_table_free(&g);
}

int main(void)
{
	test_pset();
	test_set_get();
	test_set_keeps_flag();
	test_grow();
	test_remove();
	test_copy();
	test_free();
	test_lists();
	test_quote();
	test_sync_sql();
	test_sync_done();
	UNIT_DONE();
}
