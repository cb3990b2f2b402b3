/*
 * Statement classification for the transaction tracker (txn.h): which statements change the
 * transaction state, read the way PostgreSQL's grammar (gram.y) reads them. Pure.
 *
 * Only exactness on statements the server accepts matters: anything else fails on the server
 * and the tracker never applies it. A statement classified TXN_OTHER that turns out to be a
 * transaction statement shows in its CommandComplete tag and makes the tracker resync.
 */
#include "pgtide/txn.h"

#include <string.h>

/* TXN_OTHER, no modes, no name: all zero, in the bytes up to name[0]. */
static void stmt_reset(struct txn_stmt *s)
{
	memset(s, 0, offsetof(struct txn_stmt, name) + 1);
}

static bool at_end(const char *p, const char *end)
{
	return sqlscan_skip_space(p, end) == end;
}

/* Matches keywords written with single spaces between them ("isolation level read only"). */
static bool words(const char **pp, const char *end, const char *seq)
{
	const char *p = *pp;
	char kw[16];

	while (*seq) {
		size_t n = strcspn(seq, " ");

		if (n >= sizeof(kw))
			return false; /* no keyword is that long */
		memcpy(kw, seq, n);
		kw[n] = '\0';
		if (!sqlscan_word(&p, end, kw))
			return false;
		seq += n + (seq[n] == ' ');
	}
	*pp = p;
	return true;
}

/* opt_transaction: [WORK | TRANSACTION] */
static void opt_transaction(const char **pp, const char *end)
{
	if (!sqlscan_word(pp, end, "work"))
		(void)sqlscan_word(pp, end, "transaction");
}

/* opt_transaction_chain: [AND [NO] CHAIN] */
static bool opt_chain(const char **pp, const char *end, struct txn_stmt *out)
{
	if (words(pp, end, "and chain"))
		out->chain = true;
	else if (!words(pp, end, "and no chain") && sqlscan_word(pp, end, "and"))
		return false;
	return true;
}

/* transaction_mode_item (gram.y). */
static const struct {
	const char *words;
	uint8_t isolation, read_only, deferrable;
} txn_modes[] = {
        {"isolation level serializable", TXN_ISO_SERIALIZABLE, 0, 0},
        {"isolation level repeatable read", TXN_ISO_REPEATABLE_READ, 0, 0},
        {"isolation level read committed", TXN_ISO_READ_COMMITTED, 0, 0},
        {"isolation level read uncommitted", TXN_ISO_READ_UNCOMMITTED, 0, 0},
        {"read only", 0, TXN_FLAG_ON, 0},
        {"read write", 0, TXN_FLAG_OFF, 0},
        {"deferrable", 0, 0, TXN_FLAG_ON},
        {"not deferrable", 0, 0, TXN_FLAG_OFF},
};

/*
 * The rest of the statement is a transaction_mode_list: the comma between modes is optional,
 * and a repeated mode overrides, as PostgreSQL applies them in order.
 */
static bool rest_is_modes(const char *p, const char *end, struct txn_stmt *out, bool required)
{
	p = sqlscan_skip_space(p, end);
	if (p == end)
		return !required;
	for (;;) {
		size_t i = 0;

		while (i < sizeof(txn_modes) / sizeof(txn_modes[0]) &&
		       !words(&p, end, txn_modes[i].words))
			i++;
		if (i == sizeof(txn_modes) / sizeof(txn_modes[0]))
			return false;
		if (txn_modes[i].isolation)
			out->isolation = txn_modes[i].isolation;
		if (txn_modes[i].read_only)
			out->read_only = txn_modes[i].read_only;
		if (txn_modes[i].deferrable)
			out->deferrable = txn_modes[i].deferrable;
		p = sqlscan_skip_space(p, end);
		if (p == end)
			return true;
		if (*p == ',')
			p++;
	}
}

/*
 * [SAVEPOINT] name. "SAVEPOINT" is an unreserved keyword, so "RELEASE savepoint" releases the
 * savepoint named savepoint, as PostgreSQL's grammar reads it.
 */
static bool savepoint_name(const char **pp, const char *end, bool opt_keyword, char *name)
{
	const char *q = *pp;

	if (opt_keyword && sqlscan_word(&q, end, "savepoint") && sqlscan_ident(&q, end, name)) {
		*pp = q;
		return true;
	}
	return sqlscan_ident(pp, end, name);
}

/*
 * A string constant (Sconst): '...', E'...', U&'...' or $tag$...$tag$; false if none ends
 * there. (A literal continued on the next line, 'a'<newline>'b', reads as TXN_OTHER: its tag
 * then resyncs the tracker, a fair price for a form no client sends.)
 */
static bool skip_sconst(const char **pp, const char *end)
{
	const char *p = sqlscan_skip_space(*pp, end), *q;
	bool esc = end - p >= 2 && (*p | 0x20) == 'e' && p[1] == '\'';
	size_t tag;

	if (p < end && *p == '$') {
		for (q = p + 1; q < end && *q != '$' && (unsigned char)*q > ' '; q++)
			;
		if (q >= end || (p[1] >= '0' && p[1] <= '9')) /* $1 is a parameter */
			return false;
		tag = (size_t)(q + 1 - p);
		q = memmem(q + 1, (size_t)(end - q - 1), p, tag);
		*pp = q ? q + tag : *pp;
		return q != NULL;
	}
	if (esc)
		p++;
	else if (end - p >= 3 && (*p | 0x20) == 'u' && p[1] == '&' && p[2] == '\'')
		p += 2;
	if (p >= end || *p != '\'')
		return false;
	for (p++; p < end; p++) {
		if (esc && *p == '\\') {
			if (++p == end)
				return false;
		} else if (*p == '\'') {
			if (p + 1 < end && p[1] == '\'') {
				p++;
				continue;
			}
			*pp = p + 1;
			return true;
		}
	}
	return false;
}

static bool classify_begin(const char *p, const char *end, struct txn_stmt *out)
{
	if (sqlscan_word(&p, end, "begin")) {
		opt_transaction(&p, end);
	} else if (!sqlscan_word(&p, end, "start") || !sqlscan_word(&p, end, "transaction")) {
		return false;
	}
	out->kind = TXN_BEGIN;
	return rest_is_modes(p, end, out, false);
}

static bool classify_end(const char *p, const char *end, struct txn_stmt *out)
{
	bool rollback = sqlscan_word(&p, end, "rollback");

	if (rollback || sqlscan_word(&p, end, "abort"))
		out->kind = TXN_ROLLBACK;
	else if (sqlscan_word(&p, end, "commit") || sqlscan_word(&p, end, "end"))
		out->kind = TXN_COMMIT;
	else
		return false;
	opt_transaction(&p, end);
	if (rollback && sqlscan_word(&p, end, "to")) {
		out->kind = TXN_ROLLBACK_TO;
		return savepoint_name(&p, end, true, out->name) && at_end(p, end);
	}
	return opt_chain(&p, end, out) && at_end(p, end);
}

/* SAVEPOINT, SET TRANSACTION, START TRANSACTION. */
static bool classify_s(const char *p, const char *end, struct txn_stmt *out)
{
	if ((p[1] | 0x20) == 't')
		return classify_begin(p, end, out);
	if ((p[1] | 0x20) == 'a') {
		if (!sqlscan_word(&p, end, "savepoint"))
			return false;
		out->kind = TXN_SAVEPOINT;
		return sqlscan_ident(&p, end, out->name) && at_end(p, end);
	}
	if (sqlscan_word(&p, end, "set")) {
		/* SET LOCAL / SESSION TRANSACTION are the same statement in the grammar
		 * (set_rest); SET SESSION CHARACTERISTICS is not. */
		if (!sqlscan_word(&p, end, "local"))
			(void)sqlscan_word(&p, end, "session");
		if (!sqlscan_word(&p, end, "transaction"))
			return false;
		out->kind = TXN_SET_TRANSACTION;
		return rest_is_modes(p, end, out, true);
	}
	return false;
}

/*
 * Could p (3 bytes or more) start a transaction statement? Checks the first letters of ABORT,
 * BEGIN, COMMIT, END, PREPARE, RELEASE, ROLLBACK, SAVEPOINT, SET and START. This is the hot
 * path: SELECT, INSERT, UPDATE, DELETE and WITH are turned away here.
 */
static inline __attribute__((always_inline)) bool maybe_txn(const char *p)
{
	char c1 = (char)(p[1] | 0x20);

	switch (p[0] | 0x20) {
	case 'a':
		return c1 == 'b';
	case 'b':
		return c1 == 'e';
	case 'c':
		return c1 == 'o';
	case 'e':
		return c1 == 'n';
	case 'p':
		return c1 == 'r';
	case 'r':
		return c1 == 'e' || c1 == 'o';
	case 's':
		return c1 == 'a' || c1 == 't' || (c1 == 'e' && (p[2] | 0x20) == 't');
	default:
		return false;
	}
}

/* p holds 3 bytes or more and maybe_txn said yes: classify for real. */
static __attribute__((noinline)) void classify(const char *p, const char *end, struct txn_stmt *out)
{
	bool ok;

	switch (*p | 0x20) {
	case 'a':
	case 'c':
	case 'e':
		ok = classify_end(p, end, out);
		break;
	case 'r':
		if (sqlscan_word(&p, end, "release")) {
			out->kind = TXN_RELEASE;
			ok = savepoint_name(&p, end, true, out->name) && at_end(p, end);
		} else {
			ok = classify_end(p, end, out);
		}
		break;
	case 'b':
		ok = classify_begin(p, end, out);
		break;
	case 's':
		ok = classify_s(p, end, out);
		break;
	default: /* 'p' */
		ok = sqlscan_word(&p, end, "prepare") && sqlscan_word(&p, end, "transaction") &&
		     skip_sconst(&p, end) && at_end(p, end);
		out->kind = TXN_PREPARE_TRANSACTION;
		break;
	}
	if (!ok)
		stmt_reset(out);
}

/* A statement that starts with space or a comment: skip them, then as below. */
static __attribute__((noinline)) void classify_spaced(const char *p, const char *end,
                                                      struct txn_stmt *out)
{
	p = sqlscan_skip_space(p, end);
	if (end - p >= 3 && maybe_txn(p))
		classify(p, end, out);
}

void txn_classify(const char *sql, size_t len, struct txn_stmt *out)
{
	stmt_reset(out);
	/* Most statements start with their keyword, and END and SET are the shortest. Both calls
	 * are tail calls, so the common rejection costs a couple of dozen instructions. */
	if (len >= 3 && (unsigned char)((sql[0] | 0x20) - 'a') < 26) {
		if (maybe_txn(sql))
			classify(sql, sql + len, out);
	} else if (len > 0) {
		classify_spaced(sql, sql + len, out);
	}
}
