/* Unit tests of pin.c: when to probe, what to refuse, probe rows. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pgtide/pin.h"
#include "unit.h"

static void test_text_wants_probe(void)
{
	static const struct {
		const char *sql;
		bool want;
	} cases[] = {
	        {"select 1", false},
	        {"insert into t values (1)", false},
	        {"INSERT INTO t VALUES (1), (2)", false},
	        {"select pg_advisory_lock(1)", true},
	        {"SELECT PG_ADVISORY_LOCK(72707369)", true},
	        {"select pg_try_advisory_lock_shared($1)", true},
	        {"select pg_advisory_unlock(1)", true},
	        {"select pg_advisory_unlock_all()", true},
	        {"select pg_advisory_xact_lock(1)", false},
	        {"select pg_try_advisory_xact_lock_shared(1)", false},
	        {"select pg_advisory_xact_lock(1), pg_advisory_lock(2)", true},
	        {"select 'advisory'", false},
	        {"select advisory", false},
	        {"select advisory_notes from t", true}, /* a false alarm costs one probe */
	        {"select * from pgbench_accounts where aid = 1", false},
	        {"ADVISORY_LOCK", true},
	        {"x advisory_XACT", false},
	        {"create temp table t (a int)", true},
	        {"CREATE TABLE t AS SELECT 1", true},
	        {"  /* c */ create temporary table t as select 1", true},
	        {"-- x\ncreate view v as select 1", true},
	        {"created", false},
	        {"select 1; create temp table t (a int)", false}, /* the tag shows that one */
	        {"", false},
	        {"adv", false},
	        /* set_config: only the literal true as is_local ends with the transaction */
	        {"select set_config('app.user', $1, true)", false},
	        {"SELECT SET_CONFIG('app.user', '42', TRUE)", false},
	        {"select set_config('a.b', 'x', 't'), set_config('c', 'y', 'on')", false},
	        {"select set_config('app.user', $1, false)", true},
	        {"select set_config('work_mem', '1MB', $3)", true},
	        {"select pg_catalog.set_config('a.b', f(1, 2), false)", true},
	        {"select set_config('a.b', 'x,)', true), set_config($1, 'y', 0 = 1)", true},
	        {"select set_config('a.b', 'x'", true}, /* cut short: may be session-level */
	        {"select my_set_config('a', 'b', false)", false},
	        {"select set_configs('a', 'b', false)", false},
	        {"select set_config", false}, /* not a call */
	        {"select reset_config('a')", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK((pin_text_wants_probe(cases[i].sql, strlen(cases[i].sql)) != 0) ==
		              cases[i].want,
		      "%s", cases[i].sql);
	const char *sc = "select set_config('app.user', $1, false)";
	CHECK(pin_text_wants_probe(sc, strlen(sc)) == (PIN_TEXT_PROBE | PIN_TEXT_SET_CONFIG), "%s",
	      sc);
	const char *adv = "select pg_advisory_lock(1)";
	CHECK(pin_text_wants_probe(adv, strlen(adv)) == PIN_TEXT_PROBE, "%s", adv);
}

struct names_seen {
	char text[256];
};

static void collect_name(void *arg, const char *name, size_t n)
{
	struct names_seen *s = arg;
	size_t o = strlen(s->text);
	snprintf(s->text + o, sizeof(s->text) - o, "%s%.*s", o ? "|" : "", name ? (int)n : 1,
	         name ? name : "?");
}

static void test_set_config_names(void)
{
	static const struct {
		const char *sql;
		const char *names;
	} cases[] = {
	        {"select set_config('app.user', $1, false)", "app.user"},
	        {"select set_config('app.a', '1', true), set_config('app.b', '2', false)", "app.b"},
	        {"SELECT Set_Config( 'work_mem' , '1MB' , false ), set_config($1, 'v', false)",
	         "work_mem|?"},
	        {"select set_config(E'app.x', 'v', false)", "?"},
	        {"select set_config('it''s', 'v', false)", "?"},
	        {"select set_config('a.b', (select 'x, y'), false)", "a.b"},
	        {"select set_config('a.b', 'v', true)", ""},
	        {"select 1", ""},
	        {"select set_config('a.b', 'v'", "a.b"},
	        /* found by fuzz_sql: an empty literal is no name (NULL, not a 0-byte name) */
	        {"select set_config('', 'v', false)", "?"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct names_seen s = {{0}};
		pin_set_config_names(cases[i].sql, strlen(cases[i].sql), collect_name, &s);
		CHECK(strcmp(s.text, cases[i].names) == 0, "%s: got '%s', want '%s'", cases[i].sql,
		      s.text, cases[i].names);
	}
}

static void test_tag_effect(void)
{
	static const struct {
		const char *tag;
		unsigned effect;
	} cases[] = {
	        {"SELECT 1", 0},
	        {"SET", PIN_TAG_CREATES | PIN_TAG_DROPS},
	        {"RESET", PIN_TAG_DROPS},
	        {"ROLLBACK", 0},
	        {"RELEASE", 0},
	        {"LISTEN", PIN_TAG_CREATES},
	        {"UNLISTEN", PIN_TAG_DROPS},
	        {"UPDATE 3", 0},
	        {"PREPARE", PIN_TAG_CREATES},
	        {"PREPARE TRANSACTION", 0},
	        {"CREATE TABLE", PIN_TAG_CREATES},
	        {"CREATE VIEW", PIN_TAG_CREATES},
	        {"CREATE FUNCTION", PIN_TAG_CREATES},
	        {"COMMIT", 0},
	        {"COPY 5", 0},
	        {"CLOSE CURSOR", PIN_TAG_DROPS},
	        {"CLOSE CURSOR ALL", PIN_TAG_DROPS},
	        {"DECLARE CURSOR", PIN_TAG_CREATES},
	        {"DEALLOCATE", PIN_TAG_DROPS},
	        {"DEALLOCATE ALL", PIN_TAG_DROPS},
	        {"DELETE 1", 0},
	        {"DISCARD ALL", PIN_TAG_DROPS},
	        {"DISCARD TEMP", PIN_TAG_DROPS},
	        {"DROP TABLE", PIN_TAG_DROPS},
	        {"DO", 0},
	        {"BEGIN", 0},
	        {"INSERT 0 1", 0},
	        {"", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(pin_tag_effect(cases[i].tag, strlen(cases[i].tag)) == cases[i].effect, "%s",
		      cases[i].tag);
}

static void test_refusal(void)
{
	static const struct {
		const char *sql;
		unsigned kind;
	} cases[] = {
	        {"select 1", 0},
	        {"LISTEN chan", PIN_LISTEN},
	        {"listen \"Chan\"", PIN_LISTEN},
	        {"unlisten *", 0},
	        {"notify chan", 0},
	        {"select 1; listen c; select 2", PIN_LISTEN},
	        {"select ';listen c'", 0},
	        {"declare c cursor with hold for select 1", PIN_HOLD},
	        {"DECLARE c BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1", PIN_HOLD},
	        {"declare c cursor without hold for select 1", 0},
	        {"declare c cursor for select 'with hold'", 0},
	        {"declare \"with\" cursor for select 1", 0},
	        {"prepare p as select 1", PIN_PREPARE},
	        {"PREPARE p(int) AS SELECT $1", PIN_PREPARE},
	        {"prepare transaction 'gid'", 0},
	        {"create temp table t (a int)", PIN_TEMP},
	        {"create temporary view v as select 1", PIN_TEMP},
	        {"create global temporary table t (a int)", PIN_TEMP},
	        {"create local temp sequence s", PIN_TEMP},
	        {"create or replace temp view v as select 1", PIN_TEMP},
	        {"create table t (a int)", 0},
	        {"create table temp (a int)", 0},
	        {"select 1 into temp t", PIN_TEMP},
	        {"select * into temporary table t from x", PIN_TEMP},
	        {"select * into t from x", 0},
	        {"select pg_advisory_lock(1)", PIN_ADVISORY},
	        {"select pg_try_advisory_lock_shared(31)", PIN_ADVISORY},
	        {"select PG_TRY_ADVISORY_LOCK(1)", PIN_ADVISORY},
	        {"select pg_advisory_xact_lock(1)", 0},
	        {"select pg_advisory_unlock(1)", 0},
	        {"select pg_advisory_unlock_all()", 0},
	        {"set role app", PIN_ROLE},
	        {"SET SESSION ROLE app", PIN_ROLE},
	        {"set role none", 0},
	        {"set local role app", 0},
	        {"set session authorization app", PIN_ROLE},
	        {"set session authorization default", 0},
	        {"set work_mem = '7MB'", 0},
	        {"set session work_mem = '7MB'", 0},
	        {"", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(pin_refusal(cases[i].sql, strlen(cases[i].sql)) == cases[i].kind,
		      "%s: got %u", cases[i].sql, pin_refusal(cases[i].sql, strlen(cases[i].sql)));
}

/* Builds a DataRow body of text columns (NULL: SQL NULL). */
static uint32_t row(uint8_t *out, int n, const char *const *cols)
{
	uint32_t o = 0;
	out[o++] = (uint8_t)(n >> 8);
	out[o++] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		int32_t l = cols[i] ? (int32_t)strlen(cols[i]) : -1;
		uint32_t u = (uint32_t)l;
		out[o++] = (uint8_t)(u >> 24);
		out[o++] = (uint8_t)(u >> 16);
		out[o++] = (uint8_t)(u >> 8);
		out[o++] = (uint8_t)u;
		if (l > 0) {
			memcpy(out + o, cols[i], (size_t)l);
			o += (uint32_t)l;
		}
	}
	return o;
}

static void test_read_row(void)
{
	uint8_t b[256];
	struct pin_row r;
	const char *s1[] = {"s", "work_mem", "7MB"};
	uint32_t n = row(b, 3, s1);
	CHECK(pin_read_row(b, n, &r) && r.kind == 's', "setting row");
	CHECK(r.name_len == 8 && memcmp(r.name, "work_mem", 8) == 0, "name");
	CHECK(r.value_len == 3 && memcmp(r.value, "7MB", 3) == 0, "value");
	const char *s2[] = {"s", "search_path", ""};
	n = row(b, 3, s2);
	CHECK(pin_read_row(b, n, &r) && r.value_len == 0, "empty value");
	const char *p1[] = {"p", "010001", ""};
	n = row(b, 3, p1);
	CHECK(pin_read_row(b, n, &r) && r.kind == 'p' && r.kinds == (PIN_LISTEN | PIN_ROLE),
	      "state row %u", r.kinds);
	const char *p0[] = {"p", "000000", ""};
	n = row(b, 3, p0);
	CHECK(pin_read_row(b, n, &r) && r.kinds == 0, "no state");
	const char *bad1[] = {"p", "0100", ""};
	n = row(b, 3, bad1);
	CHECK(!pin_read_row(b, n, &r), "short state");
	const char *bad2[] = {"p", "01x001", ""};
	n = row(b, 3, bad2);
	CHECK(!pin_read_row(b, n, &r), "bad digit");
	const char *bad3[] = {"x", "a", "b"};
	n = row(b, 3, bad3);
	CHECK(!pin_read_row(b, n, &r), "unknown kind");
	n = row(b, 2, s1);
	CHECK(!pin_read_row(b, n, &r), "two columns");
	n = row(b, 3, s1);
	CHECK(!pin_read_row(b, n - 1, &r), "truncated");
	CHECK(!pin_read_row(b, 1, &r), "tiny");
	const char *nul[] = {"s", NULL, "v"};
	n = row(b, 3, nul);
	CHECK(!pin_read_row(b, n, &r), "null name");
	/* every truncation of a good row is refused, never read past the end */
	n = row(b, 3, p1);
	for (uint32_t i = 0; i < n; i++)
		CHECK(!pin_read_row(b, i, &r), "truncated at %u", i);
}

static void test_names(void)
{
	char buf[128];
	CHECK_STR(pin_kinds_text(PIN_LISTEN | PIN_TEMP, buf, sizeof(buf)),
	          "LISTEN, temporary table", "text");
	CHECK_STR(pin_kinds_text(0, buf, sizeof(buf)), "", "none");
	CHECK_STR(pin_kind_name(PIN_ADVISORY), "session advisory lock", "name");
	CHECK(pin_mode_of("on") == PIN_MODE_ON && pin_mode_of("off") == PIN_MODE_OFF &&
	              pin_mode_of("error") == PIN_MODE_ERROR && pin_mode_of("OFF") == PIN_MODE_OFF,
	      "modes");
	CHECK(pin_mode_valid("on") && pin_mode_valid("Error") && !pin_mode_valid("yes") &&
	              !pin_mode_valid(""),
	      "valid");
}

int main(void)
{
	test_text_wants_probe();
	test_set_config_names();
	test_tag_effect();
	test_refusal();
	test_read_row();
	test_names();
	UNIT_DONE();
}
