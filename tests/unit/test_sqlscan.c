/*
 * Table-driven tests for sqlscan.c: statement splitting as PostgreSQL's scanner and psql see a
 * simple Query string, sqlscan_single's fast answer, and keyword / identifier reading.
 */
#include "pgtide/sqlscan.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_STMTS    8

struct collected {
	size_t n;
	size_t stop_after; /* 0: never stop */
	char stmts[MAX_STMTS][256];
};

static bool collect(void *arg, const char *stmt, size_t len)
{
	struct collected *c = arg;

	if (c->n < MAX_STMTS) {
		if (len > sizeof(c->stmts[0]) - 1)
			len = sizeof(c->stmts[0]) - 1;
		memcpy(c->stmts[c->n], stmt, len);
		c->stmts[c->n][len] = '\0';
	}
	c->n++;
	return c->stop_after == 0 || c->n < c->stop_after;
}

static void test_split(void)
{
	static const struct {
		const char *name;
		const char *sql;
		const char *want[MAX_STMTS]; /* NULL-terminated */
	} cases[] = {
	        {"one statement", "SELECT 1", {"SELECT 1"}},
	        {"trailing semicolon", "SELECT 1;", {"SELECT 1"}},
	        {"trailing semicolon and space", "SELECT 1;  \n", {"SELECT 1"}},
	        {"two statements keep leading space",
	         "SELECT 1; SELECT 2",
	         {"SELECT 1", " SELECT 2"}},
	        {"empty string", "", {NULL}},
	        {"only whitespace", "  \n\t\r\f\v ", {NULL}},
	        {"only semicolons", ";;", {NULL}},
	        {"empty statements between", "; ;SELECT 1;;", {"SELECT 1"}},
	        {"only a line comment", "-- nothing here; really", {NULL}},
	        {"only comments and semicolons", "/* c */ ; -- x\n;", {NULL}},
	        {"leading comment kept", "/* hi */ SELECT 1; -- bye", {"/* hi */ SELECT 1"}},
	        {"semicolon in string", "SELECT 'a;b'; SELECT 2", {"SELECT 'a;b'", " SELECT 2"}},
	        {"doubled quote in string", "SELECT 'it''s;'; x", {"SELECT 'it''s;'", " x"}},
	        {"backslash is no escape in standard string",
	         "SELECT '\\'; x",
	         {"SELECT '\\'", " x"}},
	        {"E string escaped quote", "SELECT E'\\';'; x", {"SELECT E'\\';'", " x"}},
	        {"e string lower case", "SELECT e'\\';'; x", {"SELECT e'\\';'", " x"}},
	        {"E string escaped backslash ends",
	         "SELECT E'a\\\\'; x",
	         {"SELECT E'a\\\\'", " x"}},
	        {"E string doubled quote", "SELECT E'a'';'; x", {"SELECT E'a'';'", " x"}},
	        {"E string continued after newline keeps escapes",
	         "SELECT E'a'\n'\\';'; x",
	         {"SELECT E'a'\n'\\';'", " x"}},
	        {"E string continued after a comment line",
	         "SELECT E'a' -- c\n  '\\';'; x",
	         {"SELECT E'a' -- c\n  '\\';'", " x"}},
	        {"no continuation without newline",
	         "SELECT E'a' '\\'; x",
	         {"SELECT E'a' '\\'", " x"}},
	        {"E inside identifier is no prefix", "SELECT xe'\\'; y", {"SELECT xe'\\'", " y"}},
	        {"U& string", "SELECT U&'d\\0061t;'; x", {"SELECT U&'d\\0061t;'", " x"}},
	        {"U& identifier", "SELECT U&\"a;\"; x", {"SELECT U&\"a;\"", " x"}},
	        {"B and X strings", "SELECT B'01;', X'1f;'; x", {"SELECT B'01;', X'1f;'", " x"}},
	        {"N string", "SELECT N'a;b'; y", {"SELECT N'a;b'", " y"}},
	        {"quoted identifier", "SELECT \"a;\"\"b\"; x", {"SELECT \"a;\"\"b\"", " x"}},
	        {"dollar quote", "SELECT $$a;b$$; x", {"SELECT $$a;b$$", " x"}},
	        {"tagged dollar quote with nested tag",
	         "SELECT $a$ $b$ ; $b$ ; $a$; x",
	         {"SELECT $a$ $b$ ; $b$ ; $a$", " x"}},
	        {"dollar tag mismatch gives back its last $",
	         "SELECT $a$ x$b$a$; y",
	         {"SELECT $a$ x$b$a$", " y"}},
	        {"dollar quote with _ and digits in tag",
	         "DO $body_1$ BEGIN; END $body_1$; x",
	         {"DO $body_1$ BEGIN; END $body_1$", " x"}},
	        {"unterminated dollar quote runs to end",
	         "SELECT $a$ x $a$; $b$;",
	         {"SELECT $a$ x $a$", " $b$;"}},
	        {"parameters are not dollar quotes",
	         "SELECT $1; SELECT $2",
	         {"SELECT $1", " SELECT $2"}},
	        {"$ inside identifier", "SELECT a$b; SELECT 1", {"SELECT a$b", " SELECT 1"}},
	        {"identifier ending in $tag$",
	         "SELECT a$b$; SELECT $b$",
	         {"SELECT a$b$", " SELECT $b$"}},
	        {"number then dollar quote", "SELECT 1$$;$$; x", {"SELECT 1$$;$$", " x"}},
	        {"stray dollar", "$abc; x", {"$abc", " x"}},
	        {"line comment hides semicolon",
	         "SELECT 1 -- a;b\n; SELECT 2",
	         {"SELECT 1 -- a;b\n", " SELECT 2"}},
	        {"line comment ends at CR",
	         "SELECT 1 -- a\r; SELECT 2",
	         {"SELECT 1 -- a\r", " SELECT 2"}},
	        {"nested block comment",
	         "SELECT /* a; /* b; */ c; */ 1; x",
	         {"SELECT /* a; /* b; */ c; */ 1", " x"}},
	        {"comment closer run", "SELECT /* a **/ 1; x", {"SELECT /* a **/ 1", " x"}},
	        {"unterminated block comment", "SELECT 1 /* open ; ", {"SELECT 1 /* open ; "}},
	        {"unterminated string", "SELECT 'open ; ", {"SELECT 'open ; "}},
	        {"unterminated E string ending in backslash", "SELECT E'a;\\", {"SELECT E'a;\\"}},
	        {"unterminated identifier", "SELECT \"open ; ", {"SELECT \"open ; "}},
	        {"unterminated dollar quote", "SELECT $$ open ; ", {"SELECT $$ open ; "}},
	        {"minus and slash are operators", "SELECT 4-2/1; x", {"SELECT 4-2/1", " x"}},
	        {"parentheses (CREATE RULE)",
	         "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b "
	         "VALUES (2)); SELECT 1",
	         {"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO "
	          "b "
	          "VALUES (2))",
	          " SELECT 1"}},
	        {"unbalanced close paren", "SELECT 1); SELECT 2", {"SELECT 1)", " SELECT 2"}},
	        {"BEGIN ATOMIC body",
	         "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; "
	         "END; "
	         "SELECT 3",
	         {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; "
	          "END",
	          " SELECT 3"}},
	        {"CREATE OR REPLACE PROCEDURE lower case",
	         "create or replace procedure p() begin atomic insert into t values (1); end; call "
	         "p()",
	         {"create or replace procedure p() begin atomic insert into t values (1); end",
	          " call p()"}},
	        {"CASE inside BEGIN ATOMIC",
	         "CREATE FUNCTION f(x int) RETURNS int BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 "
	         "ELSE 0 END; END; SELECT 1",
	         {"CREATE FUNCTION f(x int) RETURNS int BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 "
	          "ELSE 0 END; END",
	          " SELECT 1"}},
	        {"CASE outside BEGIN ATOMIC",
	         "CREATE FUNCTION f(x int) RETURNS int RETURN CASE WHEN x > 0 THEN 1 END; SELECT 1",
	         {"CREATE FUNCTION f(x int) RETURNS int RETURN CASE WHEN x > 0 THEN 1 END",
	          " SELECT 1"}},
	        {"nested BEGIN ATOMIC words",
	         "CREATE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN CASE WHEN false "
	         "THEN 1 "
	         "END END; SELECT 2; END; x",
	         {"CREATE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN CASE WHEN false "
	          "THEN "
	          "1 END END; SELECT 2; END",
	          " x"}},
	        {"BEGIN and END outside CREATE FUNCTION split",
	         "SELECT CASE WHEN true THEN 1 END; BEGIN; SELECT 1; END",
	         {"SELECT CASE WHEN true THEN 1 END", " BEGIN", " SELECT 1", " END"}},
	        {"transaction block splits",
	         "BEGIN; SELECT 1; COMMIT",
	         {"BEGIN", " SELECT 1", " COMMIT"}},
	        {"CREATE TABLE named begin",
	         "CREATE TABLE begin (a int); SELECT 1",
	         {"CREATE TABLE begin (a int)", " SELECT 1"}},
	        {"begin inside parentheses not counted",
	         "CREATE FUNCTION f() RETURNS TABLE (begin int) LANGUAGE sql AS 'select 1'; SELECT "
	         "2",
	         {"CREATE FUNCTION f() RETURNS TABLE (begin int) LANGUAGE sql AS 'select 1'",
	          " SELECT 2"}},
	        {"quoted \"begin\" not counted",
	         "CREATE FUNCTION \"begin\"() RETURNS int LANGUAGE sql RETURN 1; SELECT 2",
	         {"CREATE FUNCTION \"begin\"() RETURNS int LANGUAGE sql RETURN 1", " SELECT 2"}},
	        {"function state resets after the statement",
	         "CREATE FUNCTION f() RETURNS int RETURN 1; BEGIN; SELECT 1",
	         {"CREATE FUNCTION f() RETURNS int RETURN 1", " BEGIN", " SELECT 1"}},
	        {"CREATE OR REPLACE FUNCTION with body in dollar quotes",
	         "CREATE OR REPLACE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN NULL; "
	         "END$$; SELECT f()",
	         {"CREATE OR REPLACE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN NULL; "
	          "END$$",
	          " SELECT f()"}},
	        {"DO block",
	         "DO $$BEGIN COMMIT; END$$; SELECT 1",
	         {"DO $$BEGIN COMMIT; END$$", " SELECT 1"}},
	        {"Prisma-style script",
	         "BEGIN;\nSAVEPOINT prisma_sp_1;\nSELECT 1;\nRELEASE SAVEPOINT "
	         "prisma_sp_1;\nCOMMIT;\n",
	         {"BEGIN", "\nSAVEPOINT prisma_sp_1", "\nSELECT 1",
	          "\nRELEASE SAVEPOINT prisma_sp_1", "\nCOMMIT"}},
	        {"high-bit identifier with $",
	         "SELECT \xc3\xa9t\xc3\xa9$x$; SELECT 1",
	         {"SELECT \xc3\xa9t\xc3\xa9$x$", " SELECT 1"}},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct collected c = {0};
		size_t want_n = 0;
		size_t n = sqlscan_split(cases[i].sql, strlen(cases[i].sql), collect, &c);

		while (want_n < MAX_STMTS && cases[i].want[want_n])
			want_n++;
		CHECK(n == want_n, "split %s: %zu statements, want %zu", cases[i].name, n, want_n);
		CHECK(c.n == want_n, "split %s: %zu callbacks, want %zu", cases[i].name, c.n,
		      want_n);
		for (size_t k = 0; k < want_n && k < c.n; k++)
			CHECK_STR(c.stmts[k], cases[i].want[k], "split %s: statement %zu is [%s]",
			          cases[i].name, k, c.stmts[k]);
	}
}

static void test_split_stop_and_length(void)
{
	struct collected c = {.stop_after = 1};
	const char *sql = "SELECT 1; SELECT 2; SELECT 3";

	CHECK(sqlscan_split(sql, strlen(sql), collect, &c) == 1, "stop: returns 1");
	CHECK(c.n == 1, "stop: one callback");

	c = (struct collected){.stop_after = 2};
	CHECK(sqlscan_split(sql, strlen(sql), collect, &c) == 2, "stop after 2: returns 2");

	/* The string need not be NUL-terminated: only len bytes are read. */
	c = (struct collected){0};
	CHECK(sqlscan_split(sql, 9, collect, &c) == 1, "length: 9 bytes hold one statement");
	CHECK_STR(c.stmts[0], "SELECT 1", "length: statement");

	c = (struct collected){0};
	CHECK(sqlscan_split("'a;b'", 2, collect, &c) == 1, "length: cut inside a quote");
	CHECK_STR(c.stmts[0], "'a", "length: cut statement");

	CHECK(sqlscan_split(NULL, 0, collect, &c) == 0, "NULL with length 0");
	CHECK(sqlscan_single(NULL, 0), "single: NULL with length 0");
}

static void test_single(void)
{
	static const struct {
		const char *sql;
		bool want;
	} cases[] = {
	        {"SELECT abalance FROM pgbench_accounts WHERE aid = 1", true},
	        {"SELECT 1;", true},
	        {"SELECT 1;  \n\t", true},
	        {"", true},
	        {";", true},
	        {"SELECT 1; SELECT 2", false},
	        {"SELECT 1;;", false},
	        {"SELECT ';'", false},
	        {"SELECT 1; -- done", false},
	        {";SELECT 1", false},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		CHECK(sqlscan_single(cases[i].sql, strlen(cases[i].sql)) == cases[i].want,
		      "single [%s]", cases[i].sql);
}

static void test_skip_space(void)
{
	static const struct {
		const char *in;
		const char *rest;
	} cases[] = {
	        {"  x", "x"},
	        {"-- c\n x", "x"},
	        {"-- c\r\nx", "x"},
	        {"/* a /* b */ */x", "x"},
	        {"/* a */ -- b\n\t/* c */ x y", "x y"},
	        {"/* open", ""},
	        {"-- open", ""},
	        {"- x", "- x"},
	        {"/ x", "/ x"},
	        {"", ""},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *end = cases[i].in + strlen(cases[i].in);

		CHECK_STR(sqlscan_skip_space(cases[i].in, end), cases[i].rest, "skip_space [%s]",
		          cases[i].in);
	}
}

static void test_word(void)
{
	static const struct {
		const char *in;
		const char *kw;
		bool want;
		const char *rest; /* after the word when matched */
	} cases[] = {
	        {"  BEGIN work", "begin", true, " work"},
	        {"begin", "begin", true, ""},
	        {"Begin;", "begin", true, ";"},
	        {"/*c*/BeGiN(", "begin", true, "("},
	        {"-- x\nbegin\n", "begin", true, "\n"},
	        {"begin-- x", "begin", true, "-- x"},
	        {"BEGINx", "begin", false, NULL},
	        {"begin$", "begin", false, NULL},
	        {"begin_", "begin", false, NULL},
	        {"begin1", "begin", false, NULL},
	        {"begin\xc3\xa9", "begin", false, NULL},
	        {"beg", "begin", false, NULL},
	        {"", "begin", false, NULL},
	        {"\"begin\"", "begin", false, NULL},
	        {"xbegin", "begin", false, NULL},
	        {"set_config(1)", "set", false, NULL},
	        {"set.x", "set", true, ".x"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *p = cases[i].in, *end = p + strlen(p);
		bool got = sqlscan_word(&p, end, cases[i].kw);

		CHECK(got == cases[i].want, "word %s in [%s]", cases[i].kw, cases[i].in);
		if (got && cases[i].want)
			CHECK_STR(p, cases[i].rest, "word %s in [%s]: rest", cases[i].kw,
			          cases[i].in);
		else
			CHECK(p == cases[i].in, "word %s in [%s]: not moved", cases[i].kw,
			      cases[i].in);
	}
}

static void test_ident(void)
{
	static const char a64[] =
	        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	static const char A70[] =
	        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"";
	static const char A63[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	/* 62 ASCII bytes then a 2-byte character that would straddle the limit. */
	static const char utf_cut[] =
	        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\xc3\xa9z";
	/* 61 ASCII bytes then a 2-byte character that ends exactly at the limit. */
	static const char utf_fit[] =
	        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\xc3\xa9z";
	static const struct {
		const char *name;
		const char *in;
		bool want;
		const char *out;
		const char *rest;
	} cases[] = {
	        {"plain folds", "  Foo bar", true, "foo", " bar"},
	        {"after comment", "-- c\n/* d */MiXeD", true, "mixed", ""},
	        {"underscore, digits, $", "_x$1 y", true, "_x$1", " y"},
	        {"stops at dot", "a.b", true, "a", ".b"},
	        {"quoted keeps case", "\"Foo Bar\"x", true, "Foo Bar", "x"},
	        {"quoted doubled quote", "\"a\"\"b\"", true, "a\"b", ""},
	        {"quoted semicolon", "\"a;b\";", true, "a;b", ";"},
	        {"quoted keyword", "\"begin\"", true, "begin", ""},
	        {"non-ASCII not folded",
	         "\xc3\x89"
	         "COLE",
	         true,
	         "\xc3\x89"
	         "cole",
	         ""},
	        {"truncated to 63", a64, true, a64 + 1, ""},
	        {"quoted truncated to 63", A70, true, A63, ""},
	        {"never cut inside a UTF-8 character", utf_cut, true,
	         "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", ""},
	        {"UTF-8 character ending at the limit", utf_fit, true,
	         "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\xc3\xa9", ""},
	        {"empty quoted is an error", "\"\"", false, NULL, NULL},
	        {"unterminated quoted", "\"abc", false, NULL, NULL},
	        {"starts with digit", "1abc", false, NULL, NULL},
	        {"starts with $", "$a", false, NULL, NULL},
	        {"nothing", "   ", false, NULL, NULL},
	        {"U& identifier unsupported", "U&\"x\"", false, NULL, NULL},
	        {"E string is no identifier", "e'x'", false, NULL, NULL},
	        {"string is no identifier", "'x'", false, NULL, NULL},
	        {"u alone is an identifier", "u & 1", true, "u", " & 1"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char out[SQLSCAN_NAME_MAX + 1];
		const char *p = cases[i].in, *end = p + strlen(p);
		bool got = sqlscan_ident(&p, end, out);

		CHECK(got == cases[i].want, "ident %s", cases[i].name);
		if (!got || !cases[i].want) {
			CHECK(p == cases[i].in, "ident %s: not moved", cases[i].name);
			continue;
		}
		CHECK_STR(out, cases[i].out, "ident %s: got [%s]", cases[i].name, out);
		CHECK_STR(p, cases[i].rest, "ident %s: rest", cases[i].name);
		CHECK(strlen(out) <= SQLSCAN_NAME_MAX, "ident %s: length", cases[i].name);
	}
}

int main(void)
{
	test_split();
	test_split_stop_and_length();
	test_single();
	test_skip_space();
	test_word();
	test_ident();
	UNIT_DONE();
}
