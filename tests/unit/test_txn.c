/*
 * Table-driven tests for txn.c: statement classification, then the tracker driven through the
 * message sequences clients send and the replies PostgreSQL gives them (tags, errors and
 * ReadyForQuery statuses as a PostgreSQL 15 server answers), then a simulated server and a
 * random torture run that check the invariants.
 */
#include "pgtide/txn.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- classification ---- */

static void test_classify(void)
{
	enum { U = TXN_FLAG_UNSET, OFF = TXN_FLAG_OFF, ON = TXN_FLAG_ON };
	static const char long_name[] =
	        "SAVEPOINT abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijXYZ";
	static const struct {
		const char *sql;
		uint8_t kind, iso, ro, def;
		bool chain;
		const char *name; /* NULL: "" */
	} cases[] = {
	        /* BEGIN / START TRANSACTION */
	        {"BEGIN", TXN_BEGIN, 0, U, U, false, NULL},
	        {"begin", TXN_BEGIN, 0, U, U, false, NULL},
	        {"  Begin  \n", TXN_BEGIN, 0, U, U, false, NULL},
	        {"BEGIN WORK", TXN_BEGIN, 0, U, U, false, NULL},
	        {"BEGIN TRANSACTION", TXN_BEGIN, 0, U, U, false, NULL},
	        {"BEGIN\n\tTRANSACTION", TXN_BEGIN, 0, U, U, false, NULL},
	        {"/* c */ BEGIN -- x\n", TXN_BEGIN, 0, U, U, false, NULL},
	        {"-- leading\nBEGIN/* trailing */", TXN_BEGIN, 0, U, U, false, NULL},
	        {"BEGIN ISOLATION LEVEL SERIALIZABLE", TXN_BEGIN, TXN_ISO_SERIALIZABLE, U, U, false,
	         NULL},
	        {"begin isolation level read committed read only", TXN_BEGIN,
	         TXN_ISO_READ_COMMITTED, ON, U, false, NULL},
	        {"BEGIN ISOLATION LEVEL READ UNCOMMITTED", TXN_BEGIN, TXN_ISO_READ_UNCOMMITTED, U,
	         U, false, NULL},
	        {"BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE",
	         TXN_BEGIN, TXN_ISO_REPEATABLE_READ, ON, ON, false, NULL},
	        {"BEGIN READ WRITE NOT DEFERRABLE", TXN_BEGIN, 0, OFF, OFF, false, NULL},
	        {"BEGIN WORK READ ONLY,READ WRITE", TXN_BEGIN, 0, OFF, U, false, NULL},
	        {"BEGIN DEFERRABLE", TXN_BEGIN, 0, U, ON, false, NULL},
	        {"BEGIN ISOLATION/**/LEVEL\nSERIALIZABLE , NOT\tDEFERRABLE", TXN_BEGIN,
	         TXN_ISO_SERIALIZABLE, U, OFF, false, NULL},
	        {"START TRANSACTION", TXN_BEGIN, 0, U, U, false, NULL},
	        {"start transaction read only", TXN_BEGIN, 0, ON, U, false, NULL},
	        {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", TXN_BEGIN,
	         TXN_ISO_SERIALIZABLE, OFF, U, false, NULL},
	        {"START", TXN_OTHER, 0, U, U, false, NULL},
	        {"START WORK", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN ATOMIC", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN WORK WORK", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN ISOLATION LEVEL", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN ISOLATION LEVEL SNAPSHOT", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN ISOLATION LEVEL REPEATABLE", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN READ ONLY,", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN , READ ONLY", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN READ", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN NOT", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGINx", TXN_OTHER, 0, U, U, false, NULL},
	        {"BEGIN;", TXN_OTHER, 0, U, U, false, NULL},
	        /* the splitter removes the ';' */
	        {"\"begin\"", TXN_OTHER, 0, U, U, false, NULL},
	        /* COMMIT / END */
	        {"COMMIT", TXN_COMMIT, 0, U, U, false, NULL},
	        {"commit work", TXN_COMMIT, 0, U, U, false, NULL},
	        {"COMMIT TRANSACTION", TXN_COMMIT, 0, U, U, false, NULL},
	        {"END", TXN_COMMIT, 0, U, U, false, NULL},
	        {"end transaction", TXN_COMMIT, 0, U, U, false, NULL},
	        {"COMMIT AND CHAIN", TXN_COMMIT, 0, U, U, true, NULL},
	        {"COMMIT AND NO CHAIN", TXN_COMMIT, 0, U, U, false, NULL},
	        {"END WORK AND CHAIN", TXN_COMMIT, 0, U, U, true, NULL},
	        {"COMMIT -- bye", TXN_COMMIT, 0, U, U, false, NULL},
	        {"COMMIT PREPARED 'x'", TXN_OTHER, 0, U, U, false, NULL},
	        {"COMMIT AND", TXN_OTHER, 0, U, U, false, NULL},
	        {"COMMIT CHAIN", TXN_OTHER, 0, U, U, false, NULL},
	        {"COMMIT AND NO", TXN_OTHER, 0, U, U, false, NULL},
	        {"ENDx", TXN_OTHER, 0, U, U, false, NULL},
	        {"END IF", TXN_OTHER, 0, U, U, false, NULL},
	        {"COMMITTED", TXN_OTHER, 0, U, U, false, NULL},
	        /* ROLLBACK / ABORT */
	        {"ROLLBACK", TXN_ROLLBACK, 0, U, U, false, NULL},
	        {"ABORT", TXN_ROLLBACK, 0, U, U, false, NULL},
	        {"rollback work", TXN_ROLLBACK, 0, U, U, false, NULL},
	        {"ABORT TRANSACTION AND CHAIN", TXN_ROLLBACK, 0, U, U, true, NULL},
	        {"ROLLBACK AND NO CHAIN", TXN_ROLLBACK, 0, U, U, false, NULL},
	        {"ROLLBACK PREPARED 'x'", TXN_OTHER, 0, U, U, false, NULL},
	        {"ABORT TO a", TXN_OTHER, 0, U, U, false, NULL},
	        {"ANALYZE", TXN_OTHER, 0, U, U, false, NULL},
	        /* ROLLBACK TO */
	        {"ROLLBACK TO a", TXN_ROLLBACK_TO, 0, U, U, false, "a"},
	        {"ROLLBACK TO SAVEPOINT a", TXN_ROLLBACK_TO, 0, U, U, false, "a"},
	        {"ROLLBACK TO SAVEPOINT prisma_sp_1", TXN_ROLLBACK_TO, 0, U, U, false,
	         "prisma_sp_1"},
	        {"rollback work to savepoint \"A b\"", TXN_ROLLBACK_TO, 0, U, U, false, "A b"},
	        {"ROLLBACK TRANSACTION TO Sp1", TXN_ROLLBACK_TO, 0, U, U, false, "sp1"},
	        {"ROLLBACK TO savepoint", TXN_ROLLBACK_TO, 0, U, U, false, "savepoint"},
	        {"ROLLBACK TO SAVEPOINT savepoint", TXN_ROLLBACK_TO, 0, U, U, false, "savepoint"},
	        {"ROLLBACK TO", TXN_OTHER, 0, U, U, false, NULL},
	        {"ROLLBACK TO a b", TXN_OTHER, 0, U, U, false, NULL},
	        {"ROLLBACK TO SAVEPOINT a AND CHAIN", TXN_OTHER, 0, U, U, false, NULL},
	        /* SAVEPOINT */
	        {"SAVEPOINT a", TXN_SAVEPOINT, 0, U, U, false, "a"},
	        {"savepoint \"Quoted Name\"", TXN_SAVEPOINT, 0, U, U, false, "Quoted Name"},
	        {"SAVEPOINT MiXeD", TXN_SAVEPOINT, 0, U, U, false, "mixed"},
	        {"SAVEPOINT \"a\"\"b\"", TXN_SAVEPOINT, 0, U, U, false, "a\"b"},
	        {"SAVEPOINT \"a;b\"", TXN_SAVEPOINT, 0, U, U, false, "a;b"},
	        {"SAVEPOINT /* c */ x -- d", TXN_SAVEPOINT, 0, U, U, false, "x"},
	        {long_name, TXN_SAVEPOINT, 0, U, U, false,
	         "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijxyz"},
	        {"SAVEPOINT", TXN_OTHER, 0, U, U, false, NULL},
	        {"SAVEPOINT a b", TXN_OTHER, 0, U, U, false, NULL},
	        {"SAVEPOINT 1a", TXN_OTHER, 0, U, U, false, NULL},
	        {"SAVEPOINT \"\"", TXN_OTHER, 0, U, U, false, NULL},
	        {"SAVEPOINTS a", TXN_OTHER, 0, U, U, false, NULL},
	        /* RELEASE */
	        {"RELEASE a", TXN_RELEASE, 0, U, U, false, "a"},
	        {"RELEASE SAVEPOINT a", TXN_RELEASE, 0, U, U, false, "a"},
	        {"release savepoint \"X\"", TXN_RELEASE, 0, U, U, false, "X"},
	        {"RELEASE SAVEPOINT", TXN_RELEASE, 0, U, U, false, "savepoint"},
	        {"RELEASE", TXN_OTHER, 0, U, U, false, NULL},
	        {"RELEASE a b", TXN_OTHER, 0, U, U, false, NULL},
	        {"REINDEX TABLE t", TXN_OTHER, 0, U, U, false, NULL},
	        {"RESET ALL", TXN_OTHER, 0, U, U, false, NULL},
	        /* SET TRANSACTION */
	        {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", TXN_SET_TRANSACTION,
	         TXN_ISO_SERIALIZABLE, U, U, false, NULL},
	        {"set transaction read only", TXN_SET_TRANSACTION, 0, ON, U, false, NULL},
	        {"SET TRANSACTION READ WRITE, ISOLATION LEVEL REPEATABLE READ", TXN_SET_TRANSACTION,
	         TXN_ISO_REPEATABLE_READ, OFF, U, false, NULL},
	        {"SET LOCAL TRANSACTION READ WRITE", TXN_SET_TRANSACTION, 0, OFF, U, false, NULL},
	        {"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", TXN_SET_TRANSACTION,
	         TXN_ISO_READ_COMMITTED, U, U, false, NULL},
	        {"SET TRANSACTION", TXN_OTHER, 0, U, U, false, NULL},
	        {"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", TXN_OTHER, 0, U, U, false, NULL},
	        {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", TXN_OTHER, 0, U, U, false,
	         NULL},
	        {"SET LOCAL statement_timeout = 0", TXN_OTHER, 0, U, U, false, NULL},
	        {"SET transaction_isolation = 'serializable'", TXN_OTHER, 0, U, U, false, NULL},
	        {"SET search_path = x", TXN_OTHER, 0, U, U, false, NULL},
	        {"SHOW transaction_isolation", TXN_OTHER, 0, U, U, false, NULL},
	        {"START TRANSACTION;", TXN_OTHER, 0, U, U, false, NULL},
	        /* PREPARE TRANSACTION */
	        {"PREPARE TRANSACTION 'gid'", TXN_PREPARE_TRANSACTION, 0, U, U, false, NULL},
	        {"prepare transaction E'g\\'id'", TXN_PREPARE_TRANSACTION, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION U&'g'", TXN_PREPARE_TRANSACTION, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION 'it''s'", TXN_PREPARE_TRANSACTION, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION $$x$$", TXN_PREPARE_TRANSACTION, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION $t$x$t$ -- done", TXN_PREPARE_TRANSACTION, 0, U, U, false,
	         NULL},
	        /* a continued literal is not worth the code: it resyncs */
	        {"PREPARE TRANSACTION 'a'\n'b'", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION gid", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION 'a' 'b'", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION 'unterminated", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION E'unterminated\\", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE TRANSACTION $1", TXN_OTHER, 0, U, U, false, NULL},
	        {"PREPARE foo AS SELECT 1", TXN_OTHER, 0, U, U, false, NULL},
	        /* everything else */
	        {"", TXN_OTHER, 0, U, U, false, NULL},
	        {" \t\n ", TXN_OTHER, 0, U, U, false, NULL},
	        {"-- BEGIN", TXN_OTHER, 0, U, U, false, NULL},
	        {"/* BEGIN */", TXN_OTHER, 0, U, U, false, NULL},
	        {"SELECT 1", TXN_OTHER, 0, U, U, false, NULL},
	        {"select begin", TXN_OTHER, 0, U, U, false, NULL},
	        {"SELECT abalance FROM pgbench_accounts WHERE aid = 1", TXN_OTHER, 0, U, U, false,
	         NULL},
	        {"DO $$BEGIN COMMIT; END$$", TXN_OTHER, 0, U, U, false, NULL},
	        {"CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END", TXN_OTHER, 0, U, U,
	         false, NULL},
	        {"CALL p()", TXN_OTHER, 0, U, U, false, NULL},
	        {"INSERT INTO begin VALUES (1)", TXN_OTHER, 0, U, U, false, NULL},
	        {"\xc3\xa9", TXN_OTHER, 0, U, U, false, NULL},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct txn_stmt s;
		const char *want_name = cases[i].name ? cases[i].name : "";

		memset(&s, 0x5a, sizeof(s)); /* nothing may be left unset */
		txn_classify(cases[i].sql, strlen(cases[i].sql), &s);
		CHECK(s.kind == cases[i].kind, "classify [%s]: kind %d, want %d", cases[i].sql,
		      s.kind, cases[i].kind);
		CHECK(s.isolation == cases[i].iso, "classify [%s]: isolation %d", cases[i].sql,
		      s.isolation);
		CHECK(s.read_only == cases[i].ro, "classify [%s]: read_only %d", cases[i].sql,
		      s.read_only);
		CHECK(s.deferrable == cases[i].def, "classify [%s]: deferrable %d", cases[i].sql,
		      s.deferrable);
		CHECK(s.chain == cases[i].chain, "classify [%s]: chain", cases[i].sql);
		CHECK_STR(s.name, want_name, "classify [%s]: name [%s]", cases[i].sql, s.name);
	}
}

static void test_names(void)
{
	static const struct {
		enum txn_isolation iso;
		const char *name;
	} cases[] = {
	        {TXN_ISO_DEFAULT, "default"},
	        {TXN_ISO_READ_UNCOMMITTED, "read uncommitted"},
	        {TXN_ISO_READ_COMMITTED, "read committed"},
	        {TXN_ISO_REPEATABLE_READ, "repeatable read"},
	        {TXN_ISO_SERIALIZABLE, "serializable"},
	        {(enum txn_isolation)99, "default"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		CHECK_STR(txn_isolation_name(cases[i].iso), cases[i].name, "isolation name %d",
		          (int)cases[i].iso);
}

/* ---- the tracker, driven by scripted message sequences ---- */

/*
 * A step is "<op> <args>" optionally followed by " => <want>".
 *   Q sql            simple Query           C tag       CommandComplete
 *   P name|sql       Parse                  N           EmptyQueryResponse / PortalSuspended
 *   B portal|stmt    Bind                   E           ErrorResponse
 *   X portal         Execute                Z s         ReadyForQuery with status s
 *   K S|P name       Close                  S           Sync (or FunctionCall)
 *   O                a Query too large to inspect
 * want: "<depth><status>" then "|key=value" checks: sp= (savepoint list), iso= (DEF RU RC RR
 * SER), ro= / def= (unset on off), sync= (syncs pending), q= (queued entries), us= / up= (an
 * unnamed statement / portal is stored), named= (named ones are stored); "|lost" when the
 * tracker must be lost (and it must not be otherwise).
 */
struct scenario {
	const char *name;
	const char *steps[64];
	const char *counts; /* "tx= c= rb= p= sp= rel= to= max= rs=", absent = 0 */
};

static void run_op(struct txn *t, const char *op, size_t len)
{
	char buf[512], *arg, *bar;

	snprintf(buf, sizeof(buf), "%.*s", (int)len, op);
	arg = len > 2 ? buf + 2 : buf + len;
	bar = strchr(arg, '|');
	switch (buf[0]) {
	case 'Q':
		txn_on_query(t, arg, strlen(arg));
		break;
	case 'P':
		*bar = '\0';
		txn_on_parse(t, arg, bar + 1, strlen(bar + 1));
		break;
	case 'B':
		*bar = '\0';
		txn_on_bind(t, arg, bar + 1);
		break;
	case 'X':
		txn_on_execute(t, arg);
		break;
	case 'K':
		txn_on_close(t, arg[0], len > 4 ? arg + 2 : "");
		break;
	case 'S':
		txn_on_sync(t);
		break;
	case 'O':
		txn_on_query_opaque(t);
		break;
	case 'C':
		txn_on_command_complete(t, arg, strlen(arg));
		break;
	case 'N':
		txn_on_no_effect(t);
		break;
	case 'E':
		txn_on_error(t);
		break;
	case 'Z':
		txn_on_ready(t, arg[0]);
		break;
	default:
		CHECK(false, "bad step [%s]", buf);
	}
}

static const char *const iso_codes[] = {"DEF", "RU", "RC", "RR", "SER"};
static const char *const flag_codes[] = {"unset", "off", "on"};

static void check_want(const struct txn *t, const char *want, const char *where)
{
	char buf[256], sps[512], *save = NULL, *tok;
	bool want_lost = false;

	snprintf(buf, sizeof(buf), "%s", want);
	tok = strtok_r(buf, "|", &save);
	CHECK(t->depth == atoi(tok), "%s: depth %d", where, t->depth);
	CHECK(t->status == tok[strlen(tok) - 1], "%s: status %c", where, t->status);
	/* The savepoint list is always checked: empty unless given. */
	txn_savepoint_list(t, sps, sizeof(sps));
	if (!strstr(want, "|sp="))
		CHECK_STR(sps, "", "%s: savepoints [%s]", where, sps);
	while ((tok = strtok_r(NULL, "|", &save)) != NULL) {
		char *v = strchr(tok, '=');

		if (strcmp(tok, "lost") == 0) {
			want_lost = true;
			continue;
		}
		CHECK(v != NULL, "%s: bad want token [%s]", where, tok);
		if (v == NULL)
			continue;
		*v++ = '\0';
		if (strcmp(tok, "sp") == 0)
			CHECK_STR(sps, v, "%s: savepoints [%s]", where, sps);
		else if (strcmp(tok, "iso") == 0)
			CHECK_STR(iso_codes[t->isolation], v, "%s: isolation %s", where,
			          iso_codes[t->isolation]);
		else if (strcmp(tok, "ro") == 0)
			CHECK_STR(flag_codes[t->read_only], v, "%s: read_only %s", where,
			          flag_codes[t->read_only]);
		else if (strcmp(tok, "def") == 0)
			CHECK_STR(flag_codes[t->deferrable], v, "%s: deferrable %s", where,
			          flag_codes[t->deferrable]);
		else if (strcmp(tok, "sync") == 0)
			CHECK(t->syncs_pending == (uint32_t)atoi(v), "%s: syncs_pending %u", where,
			      t->syncs_pending);
		else if (strcmp(tok, "q") == 0)
			CHECK(t->q_len == (uint32_t)atoi(v), "%s: q_len %u", where, t->q_len);
		else if (strcmp(tok, "us") == 0)
			CHECK((t->unnamed_stmt != NULL) == (atoi(v) != 0), "%s: unnamed stmt",
			      where);
		else if (strcmp(tok, "up") == 0)
			CHECK((t->unnamed_portal != NULL) == (atoi(v) != 0), "%s: unnamed portal",
			      where);
		else if (strcmp(tok, "named") == 0)
			CHECK((t->named != NULL) == (atoi(v) != 0), "%s: named", where);
		else
			CHECK(false, "%s: bad want key [%s]", where, tok);
	}
	CHECK(t->lost == want_lost, "%s: lost %d", where, t->lost);
}

static void check_counts(const struct txn_counts *c, const char *want, const char *name)
{
	struct {
		const char *key;
		uint64_t got;
	} fields[] = {
	        {"tx", c->transactions}, {"c", c->commits},     {"rb", c->rollbacks},
	        {"p", c->prepared},      {"sp", c->savepoints}, {"rel", c->releases},
	        {"to", c->rollbacks_to}, {"max", c->max_depth}, {"rs", c->resyncs},
	};

	for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
		char key[16];
		const char *at;
		uint64_t want_n = 0;

		snprintf(key, sizeof(key), "%s=", fields[i].key);
		for (at = strstr(want, key); at; at = strstr(at + 1, key))
			if (at == want || at[-1] == ' ')
				break;
		if (at)
			want_n = strtoull(at + strlen(key), NULL, 10);
		CHECK(fields[i].got == want_n, "%s: count %s = %llu, want %llu", name,
		      fields[i].key, (unsigned long long)fields[i].got, (unsigned long long)want_n);
	}
}

static const struct scenario scenarios[] = {
        {"Prisma: BEGIN, SET TRANSACTION, savepoints, COMMIT as separate queries",
         {"Q BEGIN => 0I|sync=1|q=2", "C BEGIN => 1T|iso=DEF", "Z T => 1T|sync=0|q=0",
          "Q SET TRANSACTION ISOLATION LEVEL SERIALIZABLE => 1T", "C SET => 1T|iso=SER",
          "Z T => 1T|iso=SER", "Q SAVEPOINT prisma_sp_1 => 1T", "C SAVEPOINT => 2T|sp=prisma_sp_1",
          "Z T => 2T|sp=prisma_sp_1", "Q ROLLBACK TO SAVEPOINT prisma_sp_1",
          "C ROLLBACK => 2T|sp=prisma_sp_1", "Z T => 2T|sp=prisma_sp_1",
          "Q RELEASE SAVEPOINT prisma_sp_1", "C RELEASE => 1T|iso=SER", "Z T => 1T", "Q COMMIT",
          "C COMMIT => 0I|iso=DEF", "Z I => 0I|sync=0|q=0"},
         "tx=1 c=1 sp=1 rel=1 to=1 max=2"},
        {"Prisma: a failed query inside a savepoint, rolled back",
         {"Q BEGIN", "C BEGIN", "Z T => 1T", "Q SAVEPOINT prisma_sp_1", "C SAVEPOINT",
          "Z T => 2T|sp=prisma_sp_1", "Q INSERT INTO t VALUES (1)", "E => 2E|sp=prisma_sp_1",
          "Z E => 2E|sp=prisma_sp_1", "Q ROLLBACK TO SAVEPOINT prisma_sp_1",
          "C ROLLBACK => 2T|sp=prisma_sp_1", "Z T => 2T|sp=prisma_sp_1", "Q ROLLBACK",
          "C ROLLBACK => 0I", "Z I => 0I"},
         "tx=1 rb=1 sp=1 to=1 max=2"},
        {"multi-statement string with an error in the middle",
         {"Q BEGIN; SAVEPOINT a; SELECT 1/0; ROLLBACK TO a => 0I|q=5|sync=1", "C BEGIN => 1T",
          "C SAVEPOINT => 2T|sp=a", "E => 2E|sp=a|q=1", "Z E => 2E|sp=a|q=0|sync=0",
          "Q ROLLBACK TO a; RELEASE a; COMMIT", "C ROLLBACK => 2T|sp=a", "C RELEASE => 1T",
          "C COMMIT => 0I", "Z I => 0I"},
         "tx=1 sp=1 to=1 rel=1 c=1 max=2"},
        {"failed SAVEPOINT outside a transaction",
         {"Q SAVEPOINT a => 0I|q=2", "E => 0I|q=1", "Z I => 0I|q=0"},
         ""},
        {"failed statement, then COMMIT answered ROLLBACK",
         {"Q BEGIN", "C BEGIN", "Z T => 1T", "Q UPDATE t SET x = 1", "E => 1E", "Z E => 1E",
          "Q COMMIT", "C ROLLBACK => 0I", "Z I => 0I"},
         "tx=1 rb=1 max=1"},
        {"COMMIT AND CHAIN keeps the modes",
         {"Q BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
          "C BEGIN => 1T|iso=RR|ro=on|def=unset", "Z T", "Q COMMIT AND CHAIN",
          "C COMMIT => 1T|iso=RR|ro=on", "Z T => 1T|iso=RR", "Q ROLLBACK AND NO CHAIN",
          "C ROLLBACK => 0I|iso=DEF|ro=unset", "Z I => 0I"},
         "tx=2 c=1 rb=1 max=1"},
        {"COMMIT AND CHAIN of a failed transaction",
         {"Q START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "C START TRANSACTION => 1T|iso=SER",
          "Z T", "Q SELECT 1/0", "E => 1E", "Z E => 1E", "Q COMMIT AND CHAIN",
          "C ROLLBACK => 1T|iso=SER", "Z T => 1T", "Q END", "C COMMIT => 0I", "Z I => 0I"},
         "tx=2 rb=1 c=1 max=1"},
        {"RELEASE drops later savepoints",
         {"Q BEGIN; SAVEPOINT a; SAVEPOINT b; SAVEPOINT c; RELEASE SAVEPOINT b", "C BEGIN",
          "C SAVEPOINT", "C SAVEPOINT", "C SAVEPOINT => 4T|sp=a,b,c", "C RELEASE => 2T|sp=a",
          "Z T => 2T|sp=a", "Q ABORT", "C ROLLBACK => 0I", "Z I"},
         "tx=1 sp=3 rel=1 rb=1 max=4"},
        {"ROLLBACK TO drops later savepoints and revives the transaction",
         {"Q BEGIN; SAVEPOINT a; SAVEPOINT b; SAVEPOINT c; SELECT 1/0", "C BEGIN", "C SAVEPOINT",
          "C SAVEPOINT", "C SAVEPOINT", "E => 4E|sp=a,b,c", "Z E", "Q ROLLBACK TO b",
          "C ROLLBACK => 3T|sp=a,b", "Z T => 3T|sp=a,b", "Q RELEASE a", "C RELEASE => 1T", "Z T",
          "Q COMMIT", "C COMMIT", "Z I => 0I"},
         "tx=1 sp=3 to=1 rel=1 c=1 max=4"},
        {"same savepoint name twice: the newest wins",
         {"Q BEGIN; SAVEPOINT a; SAVEPOINT b; SAVEPOINT a", "C BEGIN", "C SAVEPOINT", "C SAVEPOINT",
          "C SAVEPOINT => 4T|sp=a,b,a", "Z T", "Q ROLLBACK TO a", "C ROLLBACK => 4T|sp=a,b,a",
          "Z T", "Q RELEASE a", "C RELEASE => 3T|sp=a,b", "Z T", "Q RELEASE a", "C RELEASE => 1T",
          "Z T", "Q COMMIT", "C COMMIT", "Z I => 0I"},
         "tx=1 sp=3 to=1 rel=2 c=1 max=4"},
        {"quoted and folded savepoint names",
         {"Q BEGIN",
          "C BEGIN",
          "Z T",
          "Q SAVEPOINT \"My SP\"",
          "C SAVEPOINT => 2T|sp=My SP",
          "Z T",
          "Q SAVEPOINT My_Sp",
          "C SAVEPOINT => 3T|sp=My SP,my_sp",
          "Z T",
          "Q RELEASE SAVEPOINT MY_SP",
          "C RELEASE => 2T|sp=My SP",
          "Z T",
          "Q ROLLBACK TO \"My SP\"",
          "C ROLLBACK => 2T|sp=My SP",
          "Z T",
          "Q RELEASE \"My SP\"",
          "C RELEASE => 1T",
          "Z T",
          "Q COMMIT",
          "C COMMIT",
          "Z I => 0I"},
         "tx=1 sp=2 rel=2 to=1 c=1 max=3"},
        {"extended: unnamed BEGIN, SELECT, COMMIT",
         {"P |BEGIN => 0I|us=1", "B | => 0I|up=1", "X  => 0I|q=1", "S => 0I|q=2|sync=1",
          "C BEGIN => 1T", "Z T => 1T|q=0|sync=0", "P |SELECT $1 => 1T|us=0|up=1", "B | => 1T|up=0",
          "X ", "S", "C SELECT 1 => 1T", "Z T => 1T", "P |COMMIT", "B | => 1T|up=1", "X ", "S",
          "C COMMIT => 0I", "Z I => 0I|up=0|us=1"},
         "tx=1 c=1 max=1"},
        {"extended: a named SAVEPOINT statement executed twice",
         {"Q BEGIN",
          "C BEGIN",
          "Z T => 1T",
          "P sp|SAVEPOINT x => 1T|named=1|us=0",
          "B |sp => 1T|up=1",
          "X ",
          "B |sp",
          "X ",
          "S => 1T|q=3|sync=1",
          "C SAVEPOINT => 2T|sp=x",
          "C SAVEPOINT => 3T|sp=x,x",
          "Z T => 3T|sp=x,x",
          "Q ROLLBACK TO x",
          "C ROLLBACK => 3T|sp=x,x",
          "Z T",
          "Q RELEASE x",
          "C RELEASE => 2T|sp=x",
          "Z T",
          "K S sp => 2T|sp=x|named=0",
          "Q COMMIT",
          "C COMMIT",
          "Z I => 0I"},
         "tx=1 sp=2 to=1 rel=1 c=1 max=3"},
        {"extended: a named portal outlives its closed statement",
         {"Q BEGIN", "C BEGIN", "Z T", "Q SAVEPOINT a", "C SAVEPOINT", "Z T => 2T|sp=a",
          "P s1|RELEASE SAVEPOINT a", "B p1|s1", "K S s1 => 2T|sp=a|named=1", "X p1", "S",
          "C RELEASE => 1T|named=1", "Z T => 1T|named=1", "K P p1 => 1T|named=0", "Q COMMIT",
          "C COMMIT", "Z I => 0I"},
         "tx=1 sp=1 rel=1 c=1 max=2"},
        {"extended: named portals end with their transaction",
         {"P s1|BEGIN", "B p1|s1", "X p1", "S", "C BEGIN => 1T|named=1", "Z T => 1T|named=1",
          "K S s1 => 1T|named=1", "Q COMMIT", "C COMMIT", "Z I => 0I|named=0"},
         "tx=1 c=1 max=1"},
        {"extended: a portal bound behind a pending Sync survives that Sync's RFQ",
         {"P |SELECT 1",
          "B |",
          "X ",
          "S",
          "P |BEGIN",
          "B | => 0I|up=1",
          "C SELECT 1",
          "Z I => 0I|up=1",
          "X ",
          "S",
          "C BEGIN => 1T",
          "Z T => 1T|up=1",
          "P |COMMIT",
          "B |",
          "X ",
          "S",
          "Q SELECT 2 => 1T|up=0",
          "C COMMIT => 0I",
          "Z I",
          "C SELECT 2",
          "Z I => 0I"},
         "tx=1 c=1 max=1"},
        {"extended: a named portal bound in a pipelined batch",
         {"P s|SAVEPOINT a", "Q BEGIN", "B p|s", "X p", "S => 0I|named=1|q=4", "C BEGIN",
          "Z T => 1T|named=1", "C SAVEPOINT => 2T|sp=a", "Z T", "Q ROLLBACK", "C ROLLBACK",
          "Z I => 0I|named=1", "K S s => 0I|named=0"},
         "tx=1 sp=1 rb=1 max=2"},
        {"extended: Parse error before Execute",
         {"P |SELEC 1",
          "B |",
          "X ",
          "S => 0I|q=2",
          "E => 0I|q=1",
          "Z I => 0I|q=0",
          "Q BEGIN",
          "C BEGIN",
          "Z T",
          "Q SELECT 1/0",
          "E",
          "Z E => 1E",
          "P |SAVEPOINT a",
          "B |",
          "X ",
          "S",
          "E => 1E|q=1",
          "Z E => 1E",
          "P |ROLLBACK",
          "B |",
          "X ",
          "S",
          "C ROLLBACK => 0I",
          "Z I => 0I"},
         "tx=1 rb=1 max=1"},
        {"extended: Parse only, the error finds a sync at the head",
         {"P s|SELECT nope => 0I|named=0", "S => 0I|q=1", "E => 0I|q=1", "Z I => 0I|q=0"},
         ""},
        {"extended: pipelined batches with several Syncs",
         {"P |BEGIN",
          "B |",
          "X ",
          "S",
          "P |SAVEPOINT a",
          "B |",
          "X ",
          "S",
          "P |SELECT 1",
          "B |",
          "X ",
          "S",
          "P |RELEASE a",
          "B |",
          "X ",
          "S => 0I|sync=4|q=8",
          "C BEGIN => 1T",
          "Z T => 1T|sync=3",
          "C SAVEPOINT => 2T|sp=a",
          "Z T",
          "C SELECT 1",
          "Z T => 2T|sp=a|sync=1",
          "C RELEASE => 1T",
          "Z T => 1T|sync=0|q=0"},
         "tx=1 sp=1 rel=1 max=2"},
        {"extended: pipelined batches, the middle one fails",
         {"P |BEGIN",
          "B |",
          "X ",
          "S",
          "P |SELECT 1/0",
          "B |",
          "X ",
          "S",
          "P |SAVEPOINT a",
          "B |",
          "X ",
          "S",
          "C BEGIN",
          "Z T => 1T",
          "E => 1E",
          "Z E => 1E",
          "E => 1E|q=1",
          "Z E => 1E|sync=0|q=0",
          "Q ROLLBACK",
          "C ROLLBACK",
          "Z I => 0I"},
         "tx=1 rb=1 max=1"},
        {"extended: an error skips the rest of the batch",
         {"Q BEGIN",
          "C BEGIN",
          "Z T",
          "P |SAVEPOINT a",
          "B |",
          "X ",
          "P |SELECT 1/0",
          "B |",
          "X ",
          "P |RELEASE a",
          "B |",
          "X ",
          "S => 1T|q=4",
          "C SAVEPOINT => 2T|sp=a",
          "E => 2E|sp=a|q=1",
          "Z E => 2E|sp=a",
          "Q ROLLBACK TO a",
          "C ROLLBACK => 2T|sp=a",
          "Z T",
          "Q COMMIT",
          "C COMMIT",
          "Z I => 0I"},
         "tx=1 sp=1 to=1 c=1 max=2"},
        {"extended: Parse holding several statements or none",
         {"P |BEGIN; COMMIT => 0I|us=0", "P |BEGIN; => 0I|us=1", "P |  => 0I|us=0",
          "P |-- c\nSAVEPOINT a; -- d => 0I|us=1", "P s|SAVEPOINT a => 0I|named=1",
          "P s|SELECT 1 => 0I|named=0"},
         ""},
        {"extended: a simple query drops the unnamed statement and portal",
         {"P |BEGIN", "B | => 0I|us=1|up=1", "Q SELECT 1 => 0I|us=0|up=0", "C SELECT 1", "Z I",
          "X ", "S", "E", "Z I => 0I"},
         ""},
        {"extended: Close of the unnamed statement and portal",
         {"P |BEGIN", "B |", "K S  => 0I|us=0|up=1", "K P  => 0I|up=0", "K X  => 0I", "S",
          "Z I => 0I"},
         ""},
        {"extended: Bind of an unknown named statement is TXN_OTHER",
         {"B p|nope => 0I|named=0", "X p", "S", "C SELECT 1 => 0I", "Z I => 0I"},
         ""},
        {"FunctionCall is a sync point",
         {"S => 0I|q=1|sync=1", "E => 0I|q=1", "Z I => 0I|q=0", "Z X => 0I"},
         ""},
        {"RFQ authority: BEGIN failed", {"Q BEGIN", "E => 0I", "Z I => 0I"}, ""},
        {"RFQ authority: 'T' without a BEGIN seen",
         {"Q SELECT begin_something()", "C SELECT 1 => 0I", "Z T => 1T|iso=DEF", "Q SAVEPOINT a",
          "C SAVEPOINT => 2T|sp=a", "Z T", "Q COMMIT", "C COMMIT => 0I", "Z I => 0I"},
         "tx=1 sp=1 c=1 max=2"},
        {"RFQ authority: 'E' without a failure seen",
         {"Q SELECT 1", "C SELECT 1", "Z E => 1E", "Q ROLLBACK", "C ROLLBACK => 0I", "Z I"},
         "tx=1 rb=1 max=1"},
        {"RFQ authority: 'I' while we think depth 3",
         {"Q BEGIN; SAVEPOINT a; SAVEPOINT b", "C BEGIN", "C SAVEPOINT", "C SAVEPOINT => 3T|sp=a,b",
          "Z I => 0I|iso=DEF"},
         "tx=1 sp=2 c=1 max=3"},
        {"RFQ authority: 'I' after a failure counts a rollback",
         {"Q BEGIN ISOLATION LEVEL SERIALIZABLE; SAVEPOINT a; SELECT 1/0", "C BEGIN", "C SAVEPOINT",
          "E => 2E|sp=a|iso=SER", "Z I => 0I|iso=DEF"},
         "tx=1 sp=1 rb=1 max=2"},
        {"tag mismatch: lost, resync at idle",
         {"Q SELECT 1; SELECT 2", "C COMMIT => 0I|lost|q=0|sync=1", "C SELECT 2 => 0I|lost",
          "Z I => 0I|sync=0|q=0", "Q BEGIN", "C BEGIN => 1T", "Z T => 1T", "Q COMMIT", "C COMMIT",
          "Z I => 0I"},
         "rs=1 tx=1 c=1 max=1"},
        {"tag mismatch while pipelining: RFQ alone until nothing is in flight",
         {"Q SELECT 1", "Q SELECT 2", "Q SELECT 3 => 0I|sync=3", "C SAVEPOINT => 0I|lost|sync=3",
          "Z T => 1T|lost|sync=2", "C SELECT 1 => 1T|lost", "Q BEGIN => 1T|lost|sync=3|q=0",
          "Z E => 1E|lost|sync=2", "E => 1E|lost", "Z E => 1E|lost|sync=1", "Z I => 0I|sync=0",
          "Q SELECT 4", "C SELECT 1", "Z I => 0I"},
         "rs=1 tx=1 rb=1 max=1"},
        {"a Query too large to inspect: RFQ alone until idle",
         {"Q BEGIN", "C BEGIN", "Z T => 1T", "P |SAVEPOINT a", "B | => 1T|us=1|up=1",
          "O => 1T|lost|sync=1|q=0|us=0|up=0", "C SAVEPOINT => 1T|lost", "Z T => 1T|sync=0",
          "Q COMMIT", "C COMMIT => 0I", "Z I => 0I", "O => 0I|lost", "E", "Z I => 0I"},
         "tx=1 c=1 max=1 rs=2"},
        {"a transaction statement answered with another tag",
         {"Q BEGIN", "C SELECT 1 => 0I|lost", "Z I => 0I"},
         "rs=1"},
        {"CommandComplete with nothing queued", {"C SELECT 1 => 0I|lost", "Z I => 0I"}, "rs=1"},
        {"CommandComplete where a Sync is expected",
         {"P |SELECT 1", "S", "C SELECT 1 => 0I|lost", "Z I => 0I"},
         "rs=1"},
        {"ReadyForQuery ahead of a Sync not yet sent",
         {"P |SELECT 1", "B |", "X  => 0I|q=1", "Z I => 0I|q=0"},
         "rs=1"},
        {"RELEASE of a savepoint we never saw",
         {"Q SELECT 1", "C SELECT 1", "Z T => 1T", "Q RELEASE a", "C RELEASE => 1T|lost",
          "Z T => 1T"},
         "tx=1 max=1 rs=1"},
        {"EmptyQueryResponse and PortalSuspended",
         {"Q  => 0I|q=2",
          "N => 0I|q=1",
          "Z I => 0I|q=0",
          "Q ; ;",
          "N",
          "Z I",
          "Q -- just a comment",
          "N",
          "Z I",
          "Q /* c */;",
          "N",
          "Z I => 0I|q=0",
          "P |SELECT generate_series(1, 10)",
          "B |",
          "X ",
          "X ",
          "S => 0I|q=2",
          "N => 0I|q=2",
          "C SELECT 5 => 0I|q=1",
          "Z I => 0I|q=0",
          "Q BEGIN; ; ",
          "C BEGIN => 1T",
          "Z T => 1T|q=0",
          "Q COMMIT",
          "C COMMIT",
          "Z I"},
         "tx=1 c=1 max=1"},
        {"EmptyQueryResponse with nothing queued", {"N => 0I|lost", "Z I => 0I"}, "rs=1"},
        {"BEGIN inside a transaction only warns",
         {"Q BEGIN", "C BEGIN", "Z T", "Q BEGIN READ ONLY", "C BEGIN => 1T|ro=unset", "Z T",
          "Q COMMIT", "C COMMIT", "Z I => 0I"},
         "tx=1 c=1 max=1"},
        {"COMMIT, ROLLBACK, PREPARE outside a transaction only warn",
         {"Q COMMIT", "C COMMIT => 0I", "Z I", "Q ROLLBACK", "C ROLLBACK => 0I", "Z I",
          "Q PREPARE TRANSACTION 'x'", "C ROLLBACK => 0I", "Z I => 0I"},
         ""},
        {"SET TRANSACTION outside a transaction",
         {"Q SET TRANSACTION READ ONLY", "C SET => 0I|ro=unset", "Z I => 0I"},
         ""},
        {"SET TRANSACTION updates only the modes given",
         {"Q BEGIN ISOLATION LEVEL SERIALIZABLE", "C BEGIN => 1T|iso=SER|ro=unset|def=unset", "Z T",
          "Q SET TRANSACTION READ ONLY, DEFERRABLE", "C SET => 1T|iso=SER|ro=on|def=on", "Z T",
          "Q SET LOCAL TRANSACTION ISOLATION LEVEL READ COMMITTED", "C SET => 1T|iso=RC|ro=on",
          "Z T", "Q SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
          "C SET => 1T|iso=RC|ro=on", "Z T", "Q COMMIT",
          "C COMMIT => 0I|iso=DEF|ro=unset|def=unset", "Z I"},
         "tx=1 c=1 max=1"},
        {"PREPARE TRANSACTION, then one of a failed transaction",
         {"Q BEGIN",
          "C BEGIN",
          "Z T",
          "Q SAVEPOINT a",
          "C SAVEPOINT",
          "Z T => 2T|sp=a",
          "Q PREPARE TRANSACTION 'gid-1'",
          "C PREPARE TRANSACTION => 0I",
          "Z I",
          "Q COMMIT PREPARED 'gid-1'",
          "C COMMIT PREPARED => 0I",
          "Z I",
          "Q BEGIN",
          "C BEGIN",
          "Z T",
          "Q SELECT 1/0",
          "E",
          "Z E",
          "Q PREPARE TRANSACTION 'gid-2'",
          "C ROLLBACK => 0I",
          "Z I => 0I"},
         "tx=2 sp=1 p=1 rb=1 max=2"},
        {"START TRANSACTION, END and ABORT",
         {"Q START TRANSACTION READ ONLY", "C START TRANSACTION => 1T|ro=on", "Z T", "Q END",
          "C COMMIT => 0I", "Z I", "Q BEGIN WORK", "C BEGIN", "Z T", "Q ABORT WORK",
          "C ROLLBACK => 0I", "Z I => 0I"},
         "tx=2 c=1 rb=1 max=1"},
        {"trailing semicolons, comments and quoted semicolons",
         {"Q   BEGIN ; \n => 0I|q=2", "C BEGIN => 1T", "Z T", "Q COMMIT -- done;", "C COMMIT => 0I",
          "Z I", "Q BEGIN;SAVEPOINT \"a;b\";", "C BEGIN", "C SAVEPOINT => 2T|sp=a;b", "Z T",
          "Q ROLLBACK", "C ROLLBACK", "Z I => 0I"},
         "tx=2 c=1 rb=1 sp=1 max=2"},
        {"a statement merged run: several Executes, one Sync",
         {"P |SELECT 1", "B |", "X ", "X ", "X ", "S => 0I|q=2", "C SELECT 1", "C SELECT 1",
          "N => 0I|q=1", "Z I => 0I|q=0"},
         ""},
        {"merged Syncs",
         {"S", "S", "S => 0I|q=1|sync=3", "Z I => 0I|q=1|sync=2", "Z I", "Z I => 0I|q=0|sync=0",
          "Z I => 0I|sync=0"},
         ""},
};

static void test_scenarios(void)
{
	for (size_t i = 0; i < ARRAY_LEN(scenarios); i++) {
		const struct scenario *sc = &scenarios[i];
		struct txn_counts counts = {0};
		struct txn t;

		txn_init(&t, &counts);
		for (size_t k = 0; k < ARRAY_LEN(sc->steps) && sc->steps[k]; k++) {
			const char *step = sc->steps[k];
			const char *arrow = strstr(step, " => ");
			char where[600];

			run_op(&t, step, arrow ? (size_t)(arrow - step) : strlen(step));
			snprintf(where, sizeof(where), "%s, step %zu [%s]", sc->name, k + 1, step);
			if (arrow)
				check_want(&t, arrow + 4, where);
		}
		check_counts(&counts, sc->counts, sc->name);
		txn_free(&t);
	}
}

/* ---- bounds ---- */

static void q(struct txn *t, const char *sql)
{
	txn_on_query(t, sql, strlen(sql));
}

static void cc(struct txn *t, const char *tag)
{
	txn_on_command_complete(t, tag, strlen(tag));
}

static void test_overflow(void)
{
	struct txn_counts counts = {0};
	struct txn t;
	char *big;
	size_t off = 0;

	/* 3000 Execute + Sync pairs pipelined inside a transaction: 6000 units. */
	txn_init(&t, &counts);
	q(&t, "BEGIN");
	cc(&t, "BEGIN");
	txn_on_ready(&t, 'T');
	txn_on_parse(&t, "", "SELECT 1", 8);
	for (int i = 0; i < 3000; i++) {
		txn_on_bind(&t, "", "");
		txn_on_execute(&t, "");
		txn_on_sync(&t);
	}
	CHECK(t.lost, "overflow: lost");
	CHECK(t.q_len == 0, "overflow: queue emptied");
	CHECK(t.syncs_pending == 3000, "overflow: syncs still counted (%u)", t.syncs_pending);
	CHECK(counts.resyncs == 1, "overflow: one resync");
	for (int i = 0; i < 3000; i++) {
		cc(&t, i == 10 ? "SAVEPOINT" : "SELECT 1");
		txn_on_ready(&t, 'T');
		if (i == 2998)
			CHECK(t.lost, "overflow: lost until the last RFQ");
	}
	CHECK(!t.lost && t.depth == 1 && t.status == 'T', "overflow: recovered in the block");
	CHECK(t.q_cap <= 16, "overflow: the grown ring is given back (%u)", t.q_cap);
	CHECK(counts.resyncs == 1, "overflow: still one resync");
	q(&t, "SAVEPOINT a");
	cc(&t, "SAVEPOINT");
	txn_on_ready(&t, 'T');
	CHECK(t.depth == 2 && !t.lost, "overflow: tracking again");

	/* 5000 savepoints in one simple query overflow in the middle of the split. */
	big = malloc(5000 * 16 + 1);
	for (int i = 0; i < 5000; i++)
		off += (size_t)sprintf(big + off, "SAVEPOINT s%d;", i);
	txn_on_query(&t, big, off);
	CHECK(t.lost && t.q_len == 0 && t.syncs_pending == 1, "overflow in a split");
	CHECK(counts.resyncs == 2, "overflow in a split: resyncs %llu",
	      (unsigned long long)counts.resyncs);
	txn_on_error(&t);
	txn_on_ready(&t, 'E');
	CHECK(!t.lost && t.depth == 2 && t.status == 'E', "overflow in a split: recovered");
	free(big);

	/* Runs of TXN_OTHER and of Syncs merge: no overflow. */
	q(&t, "ROLLBACK");
	cc(&t, "ROLLBACK");
	txn_on_ready(&t, 'I');
	for (int i = 0; i < 10000; i++)
		txn_on_execute(&t, "");
	txn_on_sync(&t);
	for (int i = 0; i < 10000; i++)
		txn_on_sync(&t);
	CHECK(!t.lost && t.q_len == 2, "merging: %u entries", t.q_len);
	for (int i = 0; i < 10000; i++)
		cc(&t, "SELECT 1");
	for (int i = 0; i < 10001; i++)
		txn_on_ready(&t, 'I');
	CHECK(!t.lost && t.q_len == 0 && t.syncs_pending == 0, "merging: drained");
	CHECK(counts.resyncs == 2, "merging: no resync");
	txn_free(&t);

	/* A NULL counts pointer counts nothing and breaks nothing. */
	txn_init(&t, NULL);
	q(&t, "BEGIN; SAVEPOINT a");
	cc(&t, "BEGIN");
	cc(&t, "SAVEPOINT");
	cc(&t, "BOGUS");
	txn_on_ready(&t, 'T');
	CHECK(t.depth == 2 && !t.lost, "NULL counts");
	txn_free(&t);
}

static void test_savepoint_list(void)
{
	struct txn t;
	char out[8];
	char big[256];

	txn_init(&t, NULL);
	q(&t, "BEGIN; SAVEPOINT abc; SAVEPOINT de; SAVEPOINT fghij");
	cc(&t, "BEGIN");
	cc(&t, "SAVEPOINT");
	cc(&t, "SAVEPOINT");
	cc(&t, "SAVEPOINT");
	txn_on_ready(&t, 'T');
	CHECK_STR(txn_savepoint_list(&t, big, sizeof(big)), "abc,de,fghij", "list: full");
	CHECK_STR(txn_savepoint_list(&t, out, sizeof(out)), "abc,de,", "list: truncated to 7");
	CHECK_STR(txn_savepoint_list(&t, out, 4), "abc", "list: truncated to 3");
	CHECK_STR(txn_savepoint_list(&t, out, 1), "", "list: room for NUL only");
	out[0] = 'x';
	CHECK(txn_savepoint_list(&t, out, 0) == out && out[0] == 'x', "list: n = 0");
	txn_free(&t);

	/* A deep transaction's savepoint array goes with it. */
	txn_init(&t, NULL);
	q(&t, "BEGIN");
	cc(&t, "BEGIN");
	txn_on_ready(&t, 'T');
	for (int i = 0; i < 100; i++) {
		char sql[32];

		snprintf(sql, sizeof(sql), "SAVEPOINT s%d", i);
		q(&t, sql);
		cc(&t, "SAVEPOINT");
		txn_on_ready(&t, 'T');
	}
	CHECK(t.depth == 101 && t.savepoints_cap >= 100, "deep: depth %d", t.depth);
	CHECK_STR(txn_savepoint_list(&t, big, 12), "s0,s1,s2,s3", "deep: list head");
	q(&t, "ROLLBACK");
	cc(&t, "ROLLBACK");
	txn_on_ready(&t, 'I');
	CHECK(t.depth == 0 && t.savepoints == NULL && t.savepoints_cap == 0, "deep: array freed");
	txn_free(&t);
}

/* ---- a simulated PostgreSQL: the tracker must agree with it at every ReadyForQuery ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static const char *const vocab[] = {
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT a",
        "SAVEPOINT b",
        "RELEASE a",
        "RELEASE SAVEPOINT b",
        "ROLLBACK TO a",
        "ROLLBACK TO SAVEPOINT b",
        "SELECT 1",
        "SELECT 1/0",
        "COMMIT AND CHAIN",
        "ROLLBACK AND CHAIN",
        "SET TRANSACTION READ ONLY",
        "START TRANSACTION",
        "END",
        "ABORT",
        "SAVEPOINT \"x y\"",
        "RELEASE \"x y\"",
        "SELECT 2",
};

#define SIM_MAX_SP 64

struct sim {
	int depth;
	char status;
	char sp[SIM_MAX_SP]; /* names as one letter: a, b, x ("x y") */
};

static char sp_letter(const char *stmt)
{
	const char *last = stmt + strlen(stmt) - 1;

	return *last == '"' ? 'x' : *last;
}

/* Cuts the savepoints from index i on. */
static void sim_cut(struct sim *s, int i)
{
	s->depth = i + 1;
}

static int sim_find(const struct sim *s, char name)
{
	for (int i = s->depth - 2; i >= 0; i--)
		if (s->sp[i] == name)
			return i;
	return -1;
}

/* Runs one statement as PostgreSQL 15 would; returns its tag, or NULL for an error. */
static const char *sim_exec(struct sim *s, const char *st)
{
	bool aborted = s->status == 'E';
	bool chain = strstr(st, "CHAIN") != NULL;
	int i;

	if (strncmp(st, "ROLLBACK TO", 11) == 0) {
		if (s->depth == 0 || (i = sim_find(s, sp_letter(st))) < 0)
			return NULL;
		sim_cut(s, i + 1);
		s->status = 'T';
		return "ROLLBACK";
	}
	if (strncmp(st, "COMMIT", 6) == 0 || strcmp(st, "END") == 0 ||
	    strncmp(st, "ROLLBACK", 8) == 0 || strcmp(st, "ABORT") == 0) {
		bool commit = st[0] == 'C' || st[0] == 'E';
		const char *tag = commit && !aborted ? "COMMIT" : "ROLLBACK";

		if (s->depth == 0)
			return chain ? NULL : (commit ? "COMMIT" : "ROLLBACK");
		s->depth = 0;
		s->status = 'I';
		if (chain) {
			s->depth = 1;
			s->status = 'T';
		}
		return tag;
	}
	if (aborted)
		return NULL; /* "current transaction is aborted" */
	if (strcmp(st, "BEGIN") == 0 || strcmp(st, "START TRANSACTION") == 0) {
		if (s->depth == 0) {
			s->depth = 1;
			s->status = 'T';
		}
		return st[0] == 'B' ? "BEGIN" : "START TRANSACTION";
	}
	if (strncmp(st, "SAVEPOINT", 9) == 0) {
		if (s->depth == 0 || s->depth > SIM_MAX_SP)
			return NULL;
		s->sp[s->depth - 1] = sp_letter(st);
		s->depth++;
		return "SAVEPOINT";
	}
	if (strncmp(st, "RELEASE", 7) == 0) {
		if (s->depth == 0 || (i = sim_find(s, sp_letter(st))) < 0)
			return NULL;
		sim_cut(s, i);
		return "RELEASE";
	}
	if (strcmp(st, "SELECT 1/0") == 0)
		return NULL;
	if (strncmp(st, "SET", 3) == 0)
		return "SET";
	return "SELECT 1";
}

struct reply {
	char kind; /* 'C', 'E', 'N', 'Z' */
	const char *tag;
	char status; /* Z: the status, and the state the tracker must then have */
	int depth;
	char sps[SIM_MAX_SP * 4 + 1];
};

struct replies {
	struct reply r[256];
	size_t head, len;
};

static void push_reply(struct replies *rs, char kind, const char *tag, const struct sim *s)
{
	struct reply *r = &rs->r[(rs->head + rs->len++) % ARRAY_LEN(rs->r)];
	size_t off = 0;

	r->kind = kind;
	r->tag = tag;
	r->status = s->status;
	r->depth = s->depth;
	r->sps[0] = '\0';
	for (int i = 0; i < s->depth - 1; i++)
		off += (size_t)sprintf(r->sps + off, "%s%s", i ? "," : "",
		                       s->sp[i] == 'x' ? "x y" : (s->sp[i] == 'a' ? "a" : "b"));
}

/* Runs a batch of statements up to its sync point, queueing the replies. */
static void sim_batch(struct sim *s, struct replies *rs, const char **stmts, int n, bool simple)
{
	for (int i = 0; i < n; i++) {
		const char *tag = sim_exec(s, stmts[i]);

		if (tag == NULL) {
			if (s->depth > 0)
				s->status = 'E';
			push_reply(rs, 'E', NULL, s);
			break;
		}
		push_reply(rs, 'C', tag, s);
	}
	if (simple && n == 0)
		push_reply(rs, 'N', NULL, s);
	push_reply(rs, 'Z', NULL, s);
}

static void deliver(struct txn *t, struct replies *rs, size_t n, long iter)
{
	while (n-- > 0 && rs->len > 0) {
		const struct reply *r = &rs->r[rs->head];
		char sps[1024];

		rs->head = (rs->head + 1) % ARRAY_LEN(rs->r);
		rs->len--;
		switch (r->kind) {
		case 'C':
			cc(t, r->tag);
			break;
		case 'E':
			txn_on_error(t);
			break;
		case 'N':
			txn_on_no_effect(t);
			break;
		default:
			txn_on_ready(t, r->status);
			CHECK(t->depth == r->depth && t->status == r->status,
			      "simulation %ld: tracker %d%c, server %d%c", iter, t->depth,
			      t->status, r->depth, r->status);
			CHECK_STR(txn_savepoint_list(t, sps, sizeof(sps)), r->sps,
			          "simulation %ld: savepoints [%s]", iter, sps);
			break;
		}
	}
}

static void test_simulation(void)
{
	struct txn_counts counts = {0};
	struct sim s = {.status = 'I'};
	struct replies rs = {.len = 0};
	struct txn t;
	int named = 0;

	txn_init(&t, &counts);
	for (long iter = 0; iter < 20000; iter++) {
		const char *stmts[3];
		int n = (int)rnd(4);
		bool simple = rnd(2) == 0;

		for (int i = 0; i < n; i++)
			stmts[i] = vocab[rnd(ARRAY_LEN(vocab))];
		if (s.depth > 20) {
			stmts[0] = "ROLLBACK";
			n = n ? n : 1;
		}
		if (simple) {
			char sql[256];
			size_t off = 0;

			for (int i = 0; i < n; i++)
				off += (size_t)snprintf(sql + off, sizeof(sql) - off, "%s%s%s",
				                        i ? ";" : (rnd(4) ? "" : "/* x; */ "),
				                        rnd(3) ? " " : "\n", stmts[i]);
			if (rnd(3) == 0)
				off += (size_t)snprintf(sql + off, sizeof(sql) - off, ";");
			txn_on_query(&t, sql, off);
		} else {
			for (int i = 0; i < n; i++) {
				char name[16] = "";

				if (rnd(3) == 0)
					snprintf(name, sizeof(name), "n%d", named++);
				txn_on_parse(&t, name, stmts[i], strlen(stmts[i]));
				txn_on_bind(&t, "", name);
				if (name[0])
					txn_on_close(&t, 'S', name);
				txn_on_execute(&t, "");
			}
			txn_on_sync(&t);
		}
		sim_batch(&s, &rs, stmts, n, simple);
		/* Pipeline a few batches at times, then let the answers catch up. */
		if (rs.len > 200 || rnd(3) != 0)
			deliver(&t, &rs, rnd(3) == 0 ? rs.len : rnd((unsigned)rs.len + 1), iter);
	}
	deliver(&t, &rs, rs.len, -1);
	CHECK(counts.resyncs == 0, "simulation: %llu resyncs", (unsigned long long)counts.resyncs);
	CHECK(t.q_len == 0 && t.syncs_pending == 0, "simulation: drained");
	CHECK(counts.transactions >= counts.commits + counts.rollbacks, "simulation: counts");
	/* The run must have exercised every path, not idled at depth 0. */
	CHECK(counts.transactions > 1000 && counts.savepoints > 100 && counts.releases > 10 &&
	              counts.rollbacks_to > 10 && counts.max_depth >= 4,
	      "simulation: coverage");
	txn_free(&t);
}

/* ---- torture: random feeds and replies, in any order; only invariants hold ---- */

static void check_invariants(const struct txn *t, long iter)
{
	char sps[4096];
	int names = 0;

	CHECK(t->depth >= 0, "torture %ld: depth %d", iter, t->depth);
	CHECK(t->status == 'I' || t->status == 'T' || t->status == 'E', "torture %ld: status",
	      iter);
	txn_savepoint_list(t, sps, sizeof(sps));
	if (sps[0] != '\0') {
		names = 1;
		for (const char *p = sps; *p; p++)
			names += *p == ',';
	}
	CHECK(names == (t->depth > 0 ? t->depth - 1 : 0), "torture %ld: %d names at depth %d", iter,
	      names, t->depth);
	CHECK(t->q_len <= 4096, "torture %ld: queue %u", iter, t->q_len);
	CHECK(!t->lost || t->q_len == 0, "torture %ld: lost with a queue", iter);
}

static void test_torture(void)
{
	static const char *const tags[] = {
	        "BEGIN", "COMMIT",   "ROLLBACK",   "SAVEPOINT",           "RELEASE",
	        "SET",   "SELECT 1", "INSERT 0 1", "PREPARE TRANSACTION", "START TRANSACTION",
	};
	static const char *const names[] = {"", "p", "q"};
	struct txn_counts counts = {0};
	struct txn t;

	txn_init(&t, &counts);
	for (long iter = 0; iter < 10000; iter++) {
		const char *st = vocab[rnd(ARRAY_LEN(vocab))];

		switch (rnd(12)) {
		case 0:
			q(&t, st);
			break;
		case 1: {
			char sql[128];

			snprintf(sql, sizeof(sql), "%s; %s", st, vocab[rnd(ARRAY_LEN(vocab))]);
			q(&t, sql);
			break;
		}
		case 2:
			txn_on_parse(&t, names[rnd(3)], st, strlen(st));
			break;
		case 3:
			txn_on_bind(&t, names[rnd(3)], names[rnd(3)]);
			break;
		case 4:
			txn_on_execute(&t, names[rnd(3)]);
			break;
		case 5:
			txn_on_close(&t, rnd(2) ? 'S' : 'P', names[rnd(3)]);
			break;
		case 6:
			txn_on_sync(&t);
			break;
		case 7:
		case 8:
			cc(&t, tags[rnd(ARRAY_LEN(tags))]);
			break;
		case 9:
			txn_on_error(&t);
			break;
		case 10:
			txn_on_no_effect(&t);
			break;
		default: {
			char status = "ITE"[rnd(3)];

			txn_on_ready(&t, status);
			CHECK(t.status == status && (t.depth == 0) == (status == 'I'),
			      "torture %ld: after RFQ %c: depth %d", iter, status, t.depth);
			break;
		}
		}
		check_invariants(&t, iter);
	}
	txn_free(&t);
}

int main(void)
{
	test_classify();
	test_names();
	test_scenarios();
	test_overflow();
	test_savepoint_list();
	test_simulation();
	test_torture();
	UNIT_DONE();
}
