/*
 * The SQL readers on arbitrary statement text: sqlscan_split (each statement a slice of the
 * input), sqlscan_single, sqlscan_word/sqlscan_ident, txn_classify of each statement, pin's
 * first looks (pin_text_wants_probe, pin_refusal, pin_tag_effect), pin's set_config reader (each
 * name a slice of the input; found only where the first look saw a session-level call) and the
 * prepared-statement DEALLOCATE finder (each name a slice of the input, in order).
 */
#include "fuzz.h"

#include "pgtide/pin.h"
#include "pgtide/prepared.h"
#include "pgtide/sqlscan.h"
#include "pgtide/txn.h"

struct split_state {
	const char *sql;
	size_t len;
	const char *last_end; /* where the previous statement ended */
	size_t n;
};

static bool on_stmt(void *arg, const char *stmt, size_t len)
{
	struct split_state *st = arg;
	FUZZ_ASSERT(stmt >= st->sql && stmt + len <= st->sql + st->len,
	            "a statement is a slice of the input");
	FUZZ_ASSERT(stmt >= st->last_end, "statements come in order without overlap");
	FUZZ_ASSERT(len > 0, "empty statements are not passed");
	st->last_end = stmt + len;
	st->n++;

	struct txn_stmt t;
	txn_classify(stmt, len, &t);
	FUZZ_ASSERT(t.kind <= TXN_PREPARE_TRANSACTION, "a known statement kind");
	FUZZ_ASSERT(memchr(t.name, 0, sizeof(t.name)), "savepoint name is a string");
	(void)pin_refusal(stmt, len);
	(void)pin_text_wants_probe(stmt, len);
	return true;
}

struct sc_state {
	const char *sql;
	size_t len;
	size_t n;
};

static void on_set_config(void *arg, const char *name, size_t n)
{
	struct sc_state *st = arg;
	FUZZ_ASSERT((name == NULL) == (n == 0), "an unknown name has no length");
	FUZZ_ASSERT(!name || (name >= st->sql && name + n <= st->sql + st->len),
	            "a set_config name is a slice of the input");
	st->n++;
}

struct dealloc_state {
	const char *sql;
	size_t len;
	size_t last_before;
	size_t n;
};

static bool on_dealloc(void *arg, const struct prep_dealloc *d)
{
	struct dealloc_state *st = arg;
	FUZZ_ASSERT(d->name_off <= st->len && d->name_len <= st->len - d->name_off,
	            "a DEALLOCATE name is a slice of the input");
	FUZZ_ASSERT(strlen(d->name) <= SQLSCAN_NAME_MAX, "name within NAMEDATALEN");
	FUZZ_ASSERT(st->n == 0 || d->before >= st->last_before, "DEALLOCATEs in order");
	st->last_before = d->before;
	st->n++;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	char *sql = (char *)fuzz_dup(data, size);
	if (!sql)
		return 0;

	struct split_state ss = {sql, size, sql, 0};
	size_t n = sqlscan_split(sql, size, on_stmt, &ss);
	FUZZ_ASSERT(n == ss.n, "the count is the statements passed");
	if (sqlscan_single(sql, size))
		FUZZ_ASSERT(n <= 1, "single means one statement at most");

	/* Words and identifiers from the start, as the classifiers read them. */
	const char *p = sql, *end = sql + size;
	for (int i = 0; i < 64 && p < end; i++) {
		char name[SQLSCAN_NAME_MAX + 1];
		const char *before = p;
		p = sqlscan_skip_space(p, end);
		FUZZ_ASSERT(p >= before && p <= end, "skip_space stays in the input");
		if (sqlscan_word(&p, end, "begin") || sqlscan_ident(&p, end, name)) {
			FUZZ_ASSERT(p > before && p <= end, "a word or identifier moves forward");
			continue;
		}
		p++;
	}

	struct txn_stmt t;
	txn_classify(sql, size, &t);
	unsigned want = pin_text_wants_probe(sql, size);
	FUZZ_ASSERT(!(want & PIN_TEXT_SET_CONFIG) || (want & PIN_TEXT_PROBE),
	            "a session-level set_config asks for the probe");
	struct sc_state sc = {sql, size, 0};
	pin_set_config_names(sql, size, on_set_config, &sc);
	FUZZ_ASSERT(sc.n == 0 || want, "set_config calls found where the first look saw none");
	(void)pin_refusal(sql, size);
	(void)pin_tag_effect(sql, size);
	(void)pin_tag_effect_of(sql, size);

	struct dealloc_state ds = {sql, size, 0, 0};
	bool mentions = prep_mentions_deallocate(sql, size);
	prep_find_deallocates(sql, size, on_dealloc, &ds);
	FUZZ_ASSERT(mentions || ds.n == 0, "no DEALLOCATE found where the first look saw none");
	free(sql);
	return 0;
}
