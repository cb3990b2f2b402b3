/*
 * The transaction tracker fed a sequence of client messages and server replies decoded from
 * the input, in any order (a server or client that misbehaves included). After every step the
 * tracker's invariants must hold: depth >= 0, depth - 1 savepoint names, each a string within
 * SQLSCAN_NAME_MAX, depth 0 after ReadyForQuery 'I' and >= 1 after any other status, the
 * counters' max_depth at least the depth.
 *
 * Input: a list of operations, each an opcode byte then, for those that carry text, a length
 * byte and that many bytes (cut at the end of the input). Text arguments with two parts (Parse:
 * name and SQL; Bind: portal and statement) are split at the first '|'.
 */
#include "fuzz.h"

#include "pgtide/txn.h"

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t take_u8(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

/* The next text argument as a NUL-terminated heap copy (n gets its length). */
static char *take_text(struct input *in, size_t *n)
{
	size_t want = take_u8(in);
	/* A long statement now and then: 255 + the next byte * 16. */
	if (want == 255)
		want += (size_t)take_u8(in) * 16;
	if (want > in->left)
		want = in->left;
	char *s = fuzz_strdup(in->p, want);
	in->p += want;
	in->left -= want;
	*n = want;
	return s;
}

static void check(const struct txn *t, const struct txn_counts *c, const char *after)
{
	FUZZ_ASSERT(t->depth >= 0, after);
	/* Outside a block the status is never 'T' or 'E'; inside, never 'I'. */
	FUZZ_ASSERT(t->depth > 0 || (t->status != 'T' && t->status != 'E'), after);
	FUZZ_ASSERT(t->depth == 0 || t->status != 'I', after);
	FUZZ_ASSERT(t->depth <= 1 || t->savepoints != NULL, after);
	FUZZ_ASSERT(t->depth - 1 <= t->savepoints_cap, after);
	for (int i = 0; i < t->depth - 1; i++) {
		FUZZ_ASSERT(t->savepoints[i] != NULL, after);
		FUZZ_ASSERT(strlen(t->savepoints[i]) <= SQLSCAN_NAME_MAX, after);
	}
	FUZZ_ASSERT(c->max_depth >= (uint64_t)t->depth, after);
	FUZZ_ASSERT(t->q_len <= t->q_cap, after);
	char list[128];
	char *r = txn_savepoint_list(t, list, sizeof(list));
	FUZZ_ASSERT(r == list && memchr(list, 0, sizeof(list)), "savepoint list is a string");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct txn_counts counts = {0};
	struct txn t;
	txn_init(&t, &counts);
	int steps = 0;

	while (in.left > 0 && steps++ < 4096) {
		uint8_t op = take_u8(&in);
		size_t n = 0;
		char *s = NULL, *bar;
		switch (op % 13) {
		case 0: /* Query */
			s = take_text(&in, &n);
			if (s)
				txn_on_query(&t, s, n);
			check(&t, &counts, "after Query");
			break;
		case 1: /* Parse name|sql */
			s = take_text(&in, &n);
			if (!s)
				break;
			bar = memchr(s, '|', n);
			if (bar) {
				*bar = '\0';
				txn_on_parse(&t, s, bar + 1, n - (size_t)(bar + 1 - s));
			} else {
				txn_on_parse(&t, "", s, n);
			}
			check(&t, &counts, "after Parse");
			break;
		case 2: /* Bind portal|stmt */
			s = take_text(&in, &n);
			if (!s)
				break;
			bar = strchr(s, '|');
			if (bar) {
				*bar = '\0';
				txn_on_bind(&t, s, bar + 1);
			} else {
				txn_on_bind(&t, "", s);
			}
			check(&t, &counts, "after Bind");
			break;
		case 3: /* Execute */
			s = take_text(&in, &n);
			if (s)
				txn_on_execute(&t, s);
			check(&t, &counts, "after Execute");
			break;
		case 4: /* Close 'S' or 'P' (or anything) */
			op = take_u8(&in);
			s = take_text(&in, &n);
			if (s)
				txn_on_close(&t, (op & 0x80) ? (char)op : ((op & 1) ? 'S' : 'P'),
				             s);
			check(&t, &counts, "after Close");
			break;
		case 5: /* Sync */
			txn_on_sync(&t);
			check(&t, &counts, "after Sync");
			break;
		case 6: /* a Query too large to read */
			txn_on_query_opaque(&t);
			check(&t, &counts, "after an opaque Query");
			break;
		case 7: /* CommandComplete */
			s = take_text(&in, &n);
			if (s)
				txn_on_command_complete(&t, s, n);
			check(&t, &counts, "after CommandComplete");
			break;
		case 8: /* EmptyQueryResponse / PortalSuspended */
			txn_on_no_effect(&t);
			check(&t, &counts, "after EmptyQueryResponse");
			break;
		case 9: /* ErrorResponse */
			txn_on_error(&t);
			check(&t, &counts, "after ErrorResponse");
			break;
		case 10: /* ReadyForQuery, usually a real status */
		case 11: {
			op = take_u8(&in);
			char st = (op & 0x80) ? (char)op : "ITE"[op % 3];
			txn_on_ready(&t, st);
			check(&t, &counts, "after ReadyForQuery");
			/* Any other status byte is left to the caller to refuse. */
			if (st == 'I')
				FUZZ_ASSERT(t.depth == 0, "ReadyForQuery 'I': depth 0");
			else if (st == 'T' || st == 'E')
				FUZZ_ASSERT(t.depth >= 1 && t.status == st,
				            "ReadyForQuery in a block: depth >= 1");
			break;
		}
		default: { /* a statement and its CommandComplete, the usual round trip */
			s = take_text(&in, &n);
			if (!s)
				break;
			struct txn_stmt st;
			txn_classify(s, n, &st);
			FUZZ_ASSERT(st.kind <= TXN_PREPARE_TRANSACTION, "a known statement kind");
			FUZZ_ASSERT(memchr(st.name, 0, sizeof(st.name)),
			            "savepoint name is a string");
			txn_on_query(&t, s, n);
			break;
		}
		}
		free(s);
	}
	txn_free(&t);
	return 0;
}
