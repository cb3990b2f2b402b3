/*
 * Table-driven tests for prepared.c: the registry, a server's cache (LRU bound, stale
 * generations), the reply ring's plain pushes, the copy of a batch kept for a replay, the
 * cached-plan error, and finding DEALLOCATE statements in a simple Query.
 */
#include "pgtide/prepared.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static struct prep_stmt *intern(struct prep_registry *r, const char *sql)
{
	return prep_intern(r, sql, strlen(sql), NULL, 0);
}

static void test_registry(void)
{
	struct prep_registry r = {0};
	struct prep_stmt *a = intern(&r, "select 1");
	struct prep_stmt *b = intern(&r, "select 1");
	struct prep_stmt *c = intern(&r, "select 2");
	uint8_t oid[4] = {0, 0, 0, 23};
	struct prep_stmt *d = prep_intern(&r, "select 1", 8, oid, 1);
	CHECK(a && a == b, "the same text is one statement");
	CHECK(c && c != a && d && d != a, "other text or types: another statement");
	CHECK(a->refs == 2, "two references, got %u", a->refs);
	CHECK(strcmp(a->name, "pgtide_1") == 0 && strcmp(c->name, "pgtide_2") == 0,
	      "server-side names %s %s", a->name, c->name);
	CHECK(a->gen == 0, "a new statement is at generation 0");
	CHECK(r.n == 3, "three statements, got %u", r.n);
	prep_unref(&r, b);
	prep_unref(&r, a);
	CHECK(r.n == 2, "the last reference frees it, got %u left", r.n);
	prep_unref(&r, c);
	prep_unref(&r, d);
	CHECK(r.n == 0, "all gone");
	prep_registry_free(&r);
}

static void test_cache_lru(void)
{
	struct prep_registry r = {0};
	struct prep_cache c = {0};
	struct prep_stmt *s[4];
	char sql[32];
	for (int i = 0; i < 4; i++) {
		snprintf(sql, sizeof(sql), "select %d", i);
		s[i] = intern(&r, sql);
	}
	CHECK(prep_cache_lookup(&c, s[0]) == PREP_MISS, "empty cache: miss");
	CHECK(prep_cache_add(&c, s[0]) && prep_cache_add(&c, s[1]), "add two");
	CHECK(prep_cache_evict(&c, 2, s[1]) == NULL, "within the bound: nothing evicted");
	CHECK(prep_cache_lookup(&c, s[0]) == PREP_HIT, "s0 is there (and now most recent)");
	CHECK(prep_cache_add(&c, s[2]), "add a third");
	struct prep_stmt *out = prep_cache_evict(&c, 2, s[2]);
	CHECK(out == s[1], "the least recently used goes: s1, got %s", out ? out->name : "none");
	prep_unref(&r, out);
	CHECK(prep_cache_evict(&c, 2, s[2]) == NULL, "back within the bound");
	CHECK(prep_cache_lookup(&c, s[1]) == PREP_MISS, "s1 is gone");
	CHECK(prep_cache_evict(&c, 0, s[2]) == NULL, "max 0: no bound");
	/* the one being added is never the one evicted, even when least recently used */
	CHECK(prep_cache_lookup(&c, s[0]) == PREP_HIT, "s0 used");
	out = prep_cache_evict(&c, 1, s[2]);
	CHECK(out == s[0], "evicts around the kept one: s0, got %s", out ? out->name : "none");
	prep_unref(&r, out);
	CHECK(prep_cache_evict(&c, 1, s[2]) == NULL && c.n == 1, "one left (%u)", c.n);
	prep_cache_del(&c, &r, s[2]);
	CHECK(c.n == 0 && prep_cache_lookup(&c, s[2]) == PREP_MISS, "deleted");
	prep_cache_clear(&c, &r);
	for (int i = 0; i < 4; i++)
		prep_unref(&r, s[i]);
	CHECK(r.n == 0, "the cache released its references (%u left)", r.n);
	prep_registry_free(&r);
}

static void test_cache_stale(void)
{
	struct prep_registry r = {0};
	struct prep_cache a = {0}, b = {0};
	struct prep_stmt *s = intern(&r, "select * from t");
	struct prep_stmt *o = intern(&r, "select 2");
	CHECK(prep_cache_add(&a, s) && prep_cache_add(&b, s), "two servers have it");

	/* server a reports the plan must change result type */
	prep_stmt_changed(&a, s);
	CHECK(s->gen == 1, "the generation moves on, got %u", s->gen);
	CHECK(prep_cache_lookup(&a, s) == PREP_STALE, "a's copy is stale");
	CHECK(prep_cache_lookup(&b, s) == PREP_STALE, "so is b's");
	prep_cache_refresh(&a, s);
	CHECK(prep_cache_lookup(&a, s) == PREP_HIT, "a prepared it again");

	/* b reports it too, for its old copy: a's new one stays current */
	prep_stmt_changed(&b, s);
	CHECK(s->gen == 1, "no second move for a copy already stale, got %u", s->gen);
	CHECK(prep_cache_lookup(&a, s) == PREP_HIT, "a's copy is still current");
	CHECK(prep_cache_lookup(&b, s) == PREP_STALE, "b's is stale");
	/* a current copy reported again (another ALTER): everyone's goes */
	prep_stmt_changed(&a, s);
	CHECK(s->gen == 2 && prep_cache_lookup(&a, s) == PREP_STALE, "gen %u", s->gen);
	/* a server without it reports it (evicted meanwhile): everyone's goes */
	prep_cache_refresh(&a, s);
	struct prep_cache none = {0};
	prep_stmt_changed(&none, s);
	CHECK(s->gen == 3 && prep_cache_lookup(&a, s) == PREP_STALE, "gen %u", s->gen);

	/* a Parse that did not happen: forgotten when current, kept when stale */
	prep_cache_refresh(&a, s);
	prep_cache_undo(&a, &r, s);
	CHECK(prep_cache_lookup(&a, s) == PREP_MISS, "a current entry is forgotten");
	prep_cache_undo(&b, &r, s);
	CHECK(prep_cache_lookup(&b, s) == PREP_STALE, "a stale entry stays (old version there)");

	/* a skipped Close: the server keeps it; recorded stale, beyond the bound if need be */
	CHECK(prep_cache_add(&a, o), "a has another statement");
	CHECK(prep_cache_mark_stale(&a, s), "mark s stale on a");
	CHECK(a.n == 2 && prep_cache_lookup(&a, s) == PREP_STALE, "added back, stale");
	CHECK(prep_cache_mark_stale(&a, o) && prep_cache_lookup(&a, o) == PREP_STALE,
	      "an entry that is there is marked stale");
	prep_cache_refresh(&a, o);
	CHECK(prep_cache_mark_stale(&b, s) && prep_cache_lookup(&b, s) == PREP_STALE,
	      "stale stays stale");
	prep_cache_del(&a, &r, s);
	CHECK(prep_cache_mark_stale(&a, s), "mark again");
	struct prep_stmt *out = prep_cache_evict(&a, 1, NULL);
	CHECK(out == s, "a statement marked stale is first out, got %s", out ? out->name : "none");
	prep_unref(&r, out);

	prep_cache_clear(&a, &r);
	prep_cache_clear(&b, &r);
	prep_unref(&r, s);
	prep_unref(&r, o);
	CHECK(r.n == 0, "all released (%u left)", r.n);
	prep_registry_free(&r);
}

static void test_ring_plain(void)
{
	struct prep_registry r = {0};
	struct prep_ring q = {0};
	CHECK(!prep_ring_push_plain(&q, PX_BIND), "no room before the first full push");
	CHECK(prep_ring_push(&q, PX_PARSE, NULL, NULL), "full push grows the ring");
	CHECK(prep_ring_push_plain(&q, PX_BIND), "then plain pushes fit");
	prep_ring_plain_off(&q, PREP_PLAIN_OFF_COPY, true);
	CHECK(!prep_ring_push_plain(&q, PX_EXECUTE) && !prep_ring_plain_on(&q),
	      "plain pushes off: refused");
	for (int i = 0; i < 40; i++)
		CHECK(prep_ring_push(&q, PX_EXECUTE, NULL, NULL), "full push %d", i);
	CHECK(!prep_ring_push_plain(&q, PX_SYNC), "still off after the ring grew");
	prep_ring_plain_off(&q, PREP_PLAIN_OFF_SKIP, true);
	prep_ring_plain_off(&q, PREP_PLAIN_OFF_COPY, false);
	CHECK(!prep_ring_push_plain(&q, PX_SYNC), "off while one reason remains");
	prep_ring_plain_off(&q, PREP_PLAIN_OFF_SKIP, false);
	CHECK(prep_ring_plain_on(&q) && prep_ring_push_plain(&q, PX_SYNC), "on again");
	CHECK(q.len == 43, "43 entries, got %u", q.len);
	struct prep_expect_ent *t = prep_ring_tail(&q);
	CHECK(t->kind == PX_SYNC, "the tail is the last pushed");
	CHECK(prep_ring_pop_plain(&q, '1') && prep_ring_pop_plain(&q, '2'), "Parse, Bind answered");
	CHECK(!prep_ring_pop_plain(&q, '2'), "a BindComplete for an Execute: full path");
	prep_ring_free(&q, &r);
	prep_registry_free(&r);
}

static void put_msg(uint8_t *out, size_t *n, char type, const char *body)
{
	size_t len = strlen(body);
	uint32_t l = (uint32_t)(4 + len);
	out[*n] = (uint8_t)type;
	out[*n + 1] = (uint8_t)(l >> 24);
	out[*n + 2] = (uint8_t)(l >> 16);
	out[*n + 3] = (uint8_t)(l >> 8);
	out[*n + 4] = (uint8_t)l;
	memcpy(out + *n + 5, body, len);
	*n += 5 + len;
}

static void test_replay_copy(void)
{
	struct prep_registry reg = {0};
	struct prep_replay r = {0};
	struct prep_stmt *s = intern(&reg, "select * from t");
	uint8_t buf[64];
	size_t n = 0;
	put_msg(buf, &n, 'B', "bind");
	size_t b_len = n;
	put_msg(buf, &n, 'E', "exec");
	put_msg(buf, &n, 'S', "");
	CHECK(prep_replay_start(&r, s, buf, (uint32_t)b_len), "start with the Bind");
	CHECK(s->refs == 2, "the copy holds a reference");
	CHECK(prep_replay_append(&r, buf + b_len, (uint32_t)(n - b_len)), "append Execute+Sync");
	size_t off = 0;
	const uint8_t *m;
	uint32_t len;
	const char want[] = {'B', 'E', 'S'};
	const uint32_t want_len[] = {9, 9, 5};
	for (size_t i = 0; i < 3; i++) {
		CHECK(prep_replay_next(&r.copy, &off, &m, &len), "message %zu", i);
		CHECK(m[0] == want[i] && len == want_len[i], "message %zu: %c/%u", i, m[0], len);
	}
	CHECK(!prep_replay_next(&r.copy, &off, &m, &len), "three messages, no more");

	/* a truncated copy yields no partial message */
	struct pbuf cut = {.data = r.copy.data, .len = r.copy.len - 2, .cap = r.copy.cap};
	off = 0;
	int seen = 0;
	while (prep_replay_next(&cut, &off, &m, &len))
		seen++;
	CHECK(seen == 2, "whole messages only, got %d", seen);

	/* the bound */
	static uint8_t big[PREP_REPLAY_MAX];
	memset(big, 'x', sizeof(big));
	big[0] = 'B';
	uint32_t bl = PREP_REPLAY_MAX - (uint32_t)r.copy.len;
	big[1] = (uint8_t)((bl - 1) >> 24);
	big[2] = (uint8_t)((bl - 1) >> 16);
	big[3] = (uint8_t)((bl - 1) >> 8);
	big[4] = (uint8_t)(bl - 1);
	CHECK(prep_replay_append(&r, big, bl), "up to PREP_REPLAY_MAX fits");
	CHECK(r.copy.len == PREP_REPLAY_MAX, "exactly the bound");
	CHECK(!prep_replay_append(&r, buf + b_len + 9, 5), "one byte more does not");
	CHECK(!prep_replay_append(&r, buf, 3), "a fragment is refused");

	prep_replay_reset(&r, &reg);
	CHECK(r.state == PREP_REPLAY_OFF && !r.stmt && r.copy.len == 0, "reset");
	CHECK(r.copy.cap == 0, "a large buffer is freed");
	CHECK(s->refs == 1, "the reference went");
	CHECK(prep_replay_start(&r, s, big, PREP_REPLAY_MAX), "a first message of the bound fits");
	prep_replay_reset(&r, &reg);
	CHECK(prep_replay_start(&r, s, buf, (uint32_t)b_len), "start again");
	prep_replay_reset(&r, &reg);
	CHECK(r.copy.cap > 0, "a small buffer is kept for the next batch");
	prep_replay_free(&r, &reg);
	CHECK(r.copy.cap == 0 && s->refs == 1, "freed");
	prep_unref(&reg, s);
	prep_registry_free(&reg);
}

static void test_cached_plan_error(void)
{
	static const struct {
		const char *name;
		const char *fields; /* "Xvalue|Xvalue|..." */
		bool want;
	} cases[] = {
	        {"PostgreSQL 15's",
	         "SERROR|VERROR|C0A000|Mcached plan must not change result type|Fplancache.c|L722|"
	         "RRevalidateCachedQuery",
	         true},
	        {"translated message, routine says it",
	         "SERREUR|VERROR|C0A000|Mle plan mis en cache ne doit pas changer le type du "
	         "résultat|RRevalidateCachedQuery",
	         true},
	        {"no routine field, English message",
	         "SERROR|C0A000|Mcached plan must not change "
	         "result type",
	         true},
	        {"other 0A000", "SERROR|C0A000|Mcannot do that|Rsomewhere", false},
	        {"other SQLSTATE, same routine", "SERROR|C42P01|Mx|RRevalidateCachedQuery", false},
	        {"no SQLSTATE", "SERROR|Mcached plan must not change result type", false},
	        {"empty", "", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint8_t body[512];
		size_t n = 0;
		const char *p = cases[i].fields;
		while (*p) {
			const char *bar = strchr(p, '|');
			size_t l = bar ? (size_t)(bar - p) : strlen(p);
			memcpy(body + n, p, l);
			n += l;
			body[n++] = 0;
			p += l + (bar ? 1 : 0);
		}
		body[n++] = 0;
		CHECK(prep_is_cached_plan_error(body, n) == cases[i].want, "%s", cases[i].name);
	}
	/* malformed: a field without its NUL */
	const uint8_t bad[] = {'C', '0', 'A', '0', '0', '0'};
	CHECK(!prep_is_cached_plan_error(bad, sizeof(bad)), "unterminated field");
}

#define MAX_FOUND 6

struct found {
	size_t n;
	size_t stop_after;
	char names[MAX_FOUND][SQLSCAN_NAME_MAX + 1];
	char written[MAX_FOUND][80];
	size_t before[MAX_FOUND];
	const char *sql;
};

static bool collect(void *arg, const struct prep_dealloc *d)
{
	struct found *f = arg;
	if (f->n < MAX_FOUND) {
		memcpy(f->names[f->n], d->name, sizeof(d->name));
		size_t l = d->name_len < 79 ? d->name_len : 79;
		memcpy(f->written[f->n], f->sql + d->name_off, l);
		f->written[f->n][l] = 0;
		f->before[f->n] = d->before;
	}
	f->n++;
	return !f->stop_after || f->n < f->stop_after;
}

static void test_find_deallocates(void)
{
	static const struct {
		const char *sql;
		const char *names; /* "name@before/as written;..." */
	} cases[] = {
	        {"DEALLOCATE s1", "s1@0/s1"},
	        {"deallocate prepare S1;", "s1@0/S1"},
	        {"DEALLOCATE \"Mixed\"\"Q\"", "Mixed\"Q@0/\"Mixed\"\"Q\""},
	        {"BEGIN; DEALLOCATE in_tx; ROLLBACK", "in_tx@1/in_tx"},
	        {"select 1;; ; deallocate a; select 'deallocate b'; DEALLOCATE PREPARE c",
	         "a@1/a;c@3/c"},
	        {"/* c */ DEALLOCATE -- x\n  x /* y */ ;", "x@0/x"},
	        {"DEALLOCATE prepare", "prepare@0/prepare"},
	        {"DEALLOCATE PREPARE prepare", "prepare@0/prepare"},
	        {"DEALLOCATE all; DEALLOCATE x", ""},
	        {"DEALLOCATE x; DEALLOCATE PREPARE ALL; DEALLOCATE y", "x@0/x"},
	        {"DEALLOCATE \"all\"", "all@0/\"all\""},
	        {"DEALLOCATE x y", ""},
	        {"DEALLOCATE", ""},
	        {"DEALLOCATE 'x'", ""},
	        {"deallocated x; deallocatex", ""},
	        {"select $$; DEALLOCATE q$$; DEALLOCATE r", "r@1/r"},
	        {"PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p", "p@2/p"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct found f = {.sql = cases[i].sql};
		prep_find_deallocates(cases[i].sql, strlen(cases[i].sql), collect, &f);
		char got[256] = "";
		for (size_t k = 0; k < f.n && k < MAX_FOUND; k++) {
			char one[200];
			snprintf(one, sizeof(one), "%s%s@%zu/%s", k ? ";" : "", f.names[k],
			         f.before[k], f.written[k]);
			strncat(got, one, sizeof(got) - strlen(got) - 1);
		}
		CHECK_STR(got, cases[i].names, "%s: got '%s', want '%s'", cases[i].sql, got,
		          cases[i].names);
	}
	struct found f = {.sql = "DEALLOCATE a; DEALLOCATE b; DEALLOCATE c", .stop_after = 2};
	prep_find_deallocates(f.sql, strlen(f.sql), collect, &f);
	CHECK(f.n == 2, "the callback stops the scan, got %zu", f.n);
}

static void test_mentions_deallocate(void)
{
	static const struct {
		const char *sql;
		bool want;
	} cases[] = {
	        {"DEALLOCATE x", true},
	        {"select 1; deallocate all", true},
	        {"DeAlLoCaTe", true},
	        {"select 'deallocate'", true},
	        {"select 1", false},
	        {"deallocat", false},
	        {"dealloc ate", false},
	        {"", false},
	        {"xxdeallocatexx", true},
	        {"DEALLOCAT\xC5", false},
	        {"select 1; -- the end: deallocate", true},
	        {"deallocatedeallocate", true},
	        {"dealldeallocate", true},
	        {"dEaLlOcAtE", true},
	        {"deallocat e deallocat", false},
	        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaadeallocate", true},
	        {"ttttttttttttttttttttttttttttttdeallocatt", false},
	        {"@EALLOCATE", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		CHECK(prep_mentions_deallocate(cases[i].sql, strlen(cases[i].sql)) == cases[i].want,
		      "'%s'", cases[i].sql);
	CHECK(!prep_mentions_deallocate("DEALLOCATE", 9), "length is respected");
}

int main(void)
{
	test_registry();
	test_cache_lru();
	test_cache_stale();
	test_ring_plain();
	test_replay_copy();
	test_cached_plan_error();
	test_find_deallocates();
	test_mentions_deallocate();
	UNIT_DONE();
}
