/*
 * Transaction depth tracking per client. Statements are classified and queued in the order the
 * client sends them; their effects are applied in the order the server answers them, and each
 * ReadyForQuery reconciles the result with the server's own transaction status. Pure.
 *
 * Why a queue: a client may pipeline several statements and Syncs before the first answer
 * comes back, and a statement only changes the transaction state if it succeeded, which only
 * its reply says. When the replies stop matching the queue (a split we got wrong, an overflow)
 * the tracker is "lost": it then follows ReadyForQuery alone until nothing is in flight.
 */
#include "pgtide/txn.h"

#include <stdlib.h>
#include <string.h>

#define TXN_QUEUE_MAX   4096 /* queued units (entries) per client before giving up the order */
#define TXN_QUEUE_FIRST 4    /* first ring size: a query and its sync, with room to pipeline */
#define TXN_QUEUE_KEEP  16   /* ring entries an idle client keeps (a burst's are given back) */
#define TXN_NAMED_MAX   1024 /* stored named statements + portals per client */
#define PEND_SYNC       0xff /* struct txn_pending.kind of a sync point */

/* One queued unit: a statement awaiting its reply, or a sync point awaiting ReadyForQuery. */
struct txn_pending {
	uint8_t kind;       /* enum txn_kind, or PEND_SYNC */
	uint8_t isolation;  /* BEGIN, SET TRANSACTION: as struct txn_stmt */
	uint8_t read_only;  /* idem */
	uint8_t deferrable; /* idem */
	union {
		uint32_t count; /* TXN_OTHER, PEND_SYNC: consecutive units merged in this entry */
		bool chain;     /* COMMIT, ROLLBACK: AND CHAIN */
	} u;
	char *name; /* SAVEPOINT, RELEASE, ROLLBACK TO: malloc'd savepoint name; else NULL */
};

/*
 * Portals die when their transaction ends, which the client's stream does not show: only a
 * ReadyForQuery 'I' does, and it may arrive after the client has already bound portals for
 * the next batch. So a portal remembers how many ReadyForQuery messages answer Syncs sent
 * before its Bind: those cannot end its transaction.
 */
struct txn_portal {
	struct txn_stmt stmt; /* first member: struct txn's unnamed_portal points here */
	uint32_t behind;      /* ReadyForQuery messages still to come before its own */
};

/* A named prepared statement or portal that is a transaction statement. */
struct txn_named {
	struct txn_named *next;
	struct txn_stmt stmt;
	uint32_t behind; /* portals: as struct txn_portal */
	char what;       /* 'S' statement, 'P' portal */
	char name[];     /* NUL-terminated */
};

static bool has_name(uint8_t kind)
{
	return kind == TXN_SAVEPOINT || kind == TXN_RELEASE || kind == TXN_ROLLBACK_TO;
}

/* ---- the queue: a ring of q_cap (a power of two) entries, allocated on first use ---- */

static inline struct txn_pending *q_at(const struct txn *t, uint32_t i)
{
	return &t->q[(t->q_head + i) & (t->q_cap - 1)];
}

static inline void q_drop_head(struct txn *t)
{
	struct txn_pending *h = q_at(t, 0);

	if (h->name) {
		free(h->name);
		h->name = NULL;
	}
	t->q_head = (t->q_head + 1) & (t->q_cap - 1);
	t->q_len--;
}

static void q_clear(struct txn *t)
{
	while (t->q_len > 0)
		q_drop_head(t);
}

/* Appends e (taking its name), merging runs of TXN_OTHER or syncs; false when full. */
static inline bool q_push(struct txn *t, const struct txn_pending *e)
{
	if (t->q_len > 0 && (e->kind == TXN_OTHER || e->kind == PEND_SYNC)) {
		struct txn_pending *tail = q_at(t, t->q_len - 1);

		if (tail->kind == e->kind && tail->u.count < UINT32_MAX) {
			tail->u.count++;
			return true;
		}
	}
	if (t->q_len == t->q_cap) {
		uint32_t cap = t->q_cap ? t->q_cap * 2 : TXN_QUEUE_FIRST;
		struct txn_pending *q;

		if (t->q_len >= TXN_QUEUE_MAX || (q = malloc(cap * sizeof(*q))) == NULL)
			return false;
		for (uint32_t i = 0; i < t->q_len; i++)
			q[i] = *q_at(t, i);
		free(t->q);
		t->q = q;
		t->q_cap = cap;
		t->q_head = 0;
	}
	*q_at(t, t->q_len++) = *e;
	return true;
}

/* The order of replies is lost: follow ReadyForQuery only until nothing is in flight. */
static void go_lost(struct txn *t)
{
	if (!t->lost && t->counts)
		t->counts->resyncs++;
	t->lost = true;
	q_clear(t);
}

/* Queues s; NULL is TXN_OTHER. */
static void queue_stmt(struct txn *t, const struct txn_stmt *s)
{
	static const struct txn_stmt other = {.kind = TXN_OTHER};

	struct txn_pending e = {.name = NULL};

	if (t->lost)
		return;
	if (s == NULL)
		s = &other;
	e.kind = s->kind;
	e.isolation = s->isolation;
	e.read_only = s->read_only;
	e.deferrable = s->deferrable;
	if (s->kind == TXN_OTHER)
		e.u.count = 1;
	else
		e.u.chain = s->chain;
	if (has_name(s->kind) && (e.name = strdup(s->name)) == NULL) {
		go_lost(t);
		return;
	}
	if (!q_push(t, &e)) {
		free(e.name);
		go_lost(t);
	}
}

static void queue_sync(struct txn *t)
{
	struct txn_pending e = {.kind = PEND_SYNC, .u.count = 1};

	if (t->syncs_pending < UINT32_MAX)
		t->syncs_pending++;
	if (!t->lost && !q_push(t, &e))
		go_lost(t);
}

/* Takes the head statement unit into *out (its name with it); false if the head is a sync. */
static bool q_take_stmt(struct txn *t, struct txn_pending *out)
{
	struct txn_pending *h;

	if (t->q_len == 0 || (h = q_at(t, 0))->kind == PEND_SYNC)
		return false;
	*out = *h;
	if (h->kind == TXN_OTHER && h->u.count > 1) {
		h->u.count--;
	} else {
		h->name = NULL;
		q_drop_head(t);
	}
	return true;
}

/* ---- named statements and portals ---- */

static struct txn_named **named_find(struct txn *t, char what, const char *name, size_t *n)
{
	struct txn_named **link = &t->named;

	for (*n = 0; *link; link = &(*link)->next, (*n)++)
		if ((*link)->what == what && strcmp((*link)->name, name) == 0)
			break;
	return link;
}

static const struct txn_stmt *named_get(struct txn *t, char what, const char *name)
{
	size_t n;
	struct txn_named *e = *named_find(t, what, name, &n);

	return e ? &e->stmt : NULL;
}

/* Stores s under (what, name), or forgets the name when s is NULL (TXN_OTHER). */
static void named_set(struct txn *t, char what, const char *name, const struct txn_stmt *s)
{
	size_t n;
	struct txn_named **link = named_find(t, what, name, &n);
	struct txn_named *e = *link;

	if (e && s) {
		e->stmt = *s;
		e->behind = t->syncs_pending;
	} else if (e) {
		*link = e->next;
		free(e);
	} else if (s && n < TXN_NAMED_MAX) {
		/* Past the cap the statement reads as TXN_OTHER; its tag then sends the
		 * tracker to a resync rather than letting a client grow us without bound. */
		size_t len = strlen(name);

		if ((e = malloc(sizeof(*e) + len + 1)) == NULL)
			return;
		e->stmt = *s;
		e->behind = t->syncs_pending;
		e->what = what;
		memcpy(e->name, name, len + 1);
		e->next = t->named;
		t->named = e;
	}
}

/*
 * Sets an unnamed slot (statement or portal) to a copy of s, or empties it (s NULL:
 * TXN_OTHER). Both hold a struct txn_portal so that one function serves.
 */
static void slot_set(struct txn *t, struct txn_stmt **slot, const struct txn_stmt *s)
{
	struct txn_portal *p = (struct txn_portal *)*slot;

	if (s == NULL) {
		if (p) {
			free(p);
			*slot = NULL;
		}
		return;
	}
	if (p == NULL && (p = malloc(sizeof(*p))) == NULL)
		return;
	p->stmt = *s;
	p->behind = t->syncs_pending;
	*slot = &p->stmt;
}

/* A ReadyForQuery arrived: portals of the batch it ends die with it if it ends a transaction. */
static void portals_ready(struct txn *t, char status)
{
	struct txn_portal *p = (struct txn_portal *)t->unnamed_portal;
	struct txn_named **link = &t->named;

	if (p && p->behind > 0)
		p->behind--;
	else if (p && status == 'I')
		slot_set(t, &t->unnamed_portal, NULL);
	while (*link) {
		struct txn_named *e = *link;

		if (e->what == 'P' && e->behind > 0) {
			e->behind--;
		} else if (e->what == 'P' && status == 'I') {
			*link = e->next;
			free(e);
			continue;
		}
		link = &e->next;
	}
}

/* ---- transaction state ---- */

static void note_depth(struct txn *t)
{
	if (t->counts && (uint64_t)t->depth > t->counts->max_depth)
		t->counts->max_depth = (uint64_t)t->depth;
}

static void begin_block(struct txn *t, uint8_t iso, uint8_t ro, uint8_t def)
{
	t->depth = 1;
	t->status = 'T';
	t->isolation = iso;
	t->read_only = ro;
	t->deferrable = def;
	if (t->counts)
		t->counts->transactions++;
	note_depth(t);
}

/* Drops the savepoints from index i (0 = oldest) on. */
static void savepoints_cut(struct txn *t, int i)
{
	for (int k = i; k < t->depth - 1; k++)
		free(t->savepoints[k]);
	if (t->depth > 1)
		t->depth = i + 1;
}

static void end_block(struct txn *t)
{
	savepoints_cut(t, 0);
	if (t->savepoints_cap > 16) { /* a deep transaction's array goes with it */
		free(t->savepoints);
		t->savepoints = NULL;
		t->savepoints_cap = 0;
	}
	t->depth = 0;
	t->status = 'I';
	t->isolation = TXN_ISO_DEFAULT;
	t->read_only = TXN_FLAG_UNSET;
	t->deferrable = TXN_FLAG_UNSET;
}

/* The newest savepoint named name (savepoint names may repeat), or -1. */
static int savepoint_find(const struct txn *t, const char *name)
{
	for (int i = t->depth - 2; i >= 0; i--)
		if (strcmp(t->savepoints[i], name) == 0)
			return i;
	return -1;
}

/* Pushes a savepoint, taking ownership of name; false (name freed) if out of memory. */
static bool savepoint_push(struct txn *t, char *name)
{
	int n = t->depth - 1;

	if (n == t->savepoints_cap) {
		int cap = t->savepoints_cap ? t->savepoints_cap * 2 : 4;
		char **sp = realloc(t->savepoints, (size_t)cap * sizeof(*sp));

		if (sp == NULL) {
			free(name);
			return false;
		}
		t->savepoints = sp;
		t->savepoints_cap = cap;
	}
	t->savepoints[n] = name;
	t->depth++;
	return true;
}

#define COUNT(t, field)                                                                            \
	do {                                                                                       \
		if ((t)->counts)                                                                   \
			(t)->counts->field++;                                                      \
	} while (0)

/* COMMIT, ROLLBACK, PREPARE TRANSACTION that succeeded. */
static void apply_end(struct txn *t, const struct txn_pending *e, bool tag_rollback)
{
	uint8_t iso = t->isolation, ro = t->read_only, def = t->deferrable;

	if (t->depth == 0)
		return; /* outside a block PostgreSQL only warns */
	if (e->kind == TXN_PREPARE_TRANSACTION && !tag_rollback)
		COUNT(t, prepared);
	else if (e->kind == TXN_COMMIT && !tag_rollback && t->status != 'E')
		COUNT(t, commits);
	else
		COUNT(t, rollbacks);
	end_block(t);
	/* AND CHAIN starts the next transaction with the same characteristics, even after a
	 * COMMIT that rolled back. */
	if (e->kind != TXN_PREPARE_TRANSACTION && e->u.chain)
		begin_block(t, iso, ro, def);
}

/* Applies a statement the server reports done; false if that cannot be (order lost). */
static bool apply(struct txn *t, struct txn_pending *e, bool tag_rollback)
{
	int i;

	switch (e->kind) {
	case TXN_BEGIN:
		if (t->depth == 0) /* BEGIN inside a block only warns */
			begin_block(t, e->isolation, e->read_only, e->deferrable);
		break;
	case TXN_COMMIT:
	case TXN_ROLLBACK:
	case TXN_PREPARE_TRANSACTION:
		apply_end(t, e, tag_rollback);
		break;
	case TXN_SAVEPOINT:
		/* Success proves a block we missed the start of. */
		if (t->depth == 0)
			begin_block(t, TXN_ISO_DEFAULT, TXN_FLAG_UNSET, TXN_FLAG_UNSET);
		if (!savepoint_push(t, e->name)) {
			e->name = NULL;
			return false;
		}
		e->name = NULL;
		t->status = 'T';
		COUNT(t, savepoints);
		note_depth(t);
		break;
	case TXN_RELEASE:
		if ((i = savepoint_find(t, e->name)) < 0)
			return false;
		savepoints_cut(t, i);
		COUNT(t, releases);
		break;
	case TXN_ROLLBACK_TO:
		if ((i = savepoint_find(t, e->name)) < 0)
			return false;
		savepoints_cut(t, i + 1);
		t->status = 'T';
		COUNT(t, rollbacks_to);
		break;
	case TXN_SET_TRANSACTION:
		if (t->depth == 0) /* outside a block PostgreSQL only warns */
			break;
		if (e->isolation != TXN_ISO_DEFAULT)
			t->isolation = e->isolation;
		if (e->read_only != TXN_FLAG_UNSET)
			t->read_only = e->read_only;
		if (e->deferrable != TXN_FLAG_UNSET)
			t->deferrable = e->deferrable;
		break;
	default:
		break;
	}
	return true;
}

static bool tag_is(const char *tag, size_t len, const char *want)
{
	size_t n = strlen(want);

	return len == n && memcmp(tag, want, n) == 0;
}

/*
 * The tags only transaction statements produce (the splitter went wrong if others get one).
 * Runs for every CommandComplete: a switch on the length and fixed-size compares.
 */
static bool tag_is_txn(const char *tag, size_t len)
{
	switch (len) {
	case 5:
		return memcmp(tag, "BEGIN", 5) == 0;
	case 6:
		return memcmp(tag, "COMMIT", 6) == 0;
	case 7:
		return memcmp(tag, "RELEASE", 7) == 0;
	case 8:
		return memcmp(tag, "ROLLBACK", 8) == 0;
	case 9:
		return memcmp(tag, "SAVEPOINT", 9) == 0;
	case 17:
		return memcmp(tag, "START TRANSACTION", 17) == 0;
	case 19:
		return memcmp(tag, "PREPARE TRANSACTION", 19) == 0;
	default:
		return false;
	}
}

static bool tag_agrees(uint8_t kind, const char *tag, size_t len, bool tag_rollback)
{
	switch (kind) {
	case TXN_OTHER:
		return !tag_is_txn(tag, len);
	case TXN_BEGIN:
		return tag_is(tag, len, "BEGIN") || tag_is(tag, len, "START TRANSACTION");
	case TXN_COMMIT: /* COMMIT of a failed transaction answers ROLLBACK */
		return tag_is(tag, len, "COMMIT") || tag_rollback;
	case TXN_ROLLBACK:
	case TXN_ROLLBACK_TO:
		return tag_rollback;
	case TXN_SAVEPOINT:
		return tag_is(tag, len, "SAVEPOINT");
	case TXN_RELEASE:
		return tag_is(tag, len, "RELEASE");
	case TXN_SET_TRANSACTION:
		return tag_is(tag, len, "SET");
	case TXN_PREPARE_TRANSACTION:
		return tag_is(tag, len, "PREPARE TRANSACTION") || tag_rollback;
	default:
		return false;
	}
}

/* ---- the public API ---- */

void txn_init(struct txn *t, struct txn_counts *counts)
{
	memset(t, 0, sizeof(*t));
	t->status = 'I';
	t->counts = counts;
}

void txn_free(struct txn *t)
{
	savepoints_cut(t, 0);
	free(t->savepoints);
	q_clear(t);
	free(t->q);
	slot_set(t, &t->unnamed_stmt, NULL);
	slot_set(t, &t->unnamed_portal, NULL);
	while (t->named) {
		struct txn_named *e = t->named;

		t->named = e->next;
		free(e);
	}
	memset(t, 0, sizeof(*t));
}

static bool split_stmt(void *arg, const char *stmt, size_t len)
{
	struct txn *t = arg;
	struct txn_stmt s;

	txn_classify(stmt, len, &s);
	queue_stmt(t, &s);
	return !t->lost;
}

/* sql with at most a trailing ';' (sqlscan_single said so), without it. */
static size_t strip_semicolon(const char *sql, size_t len)
{
	while (len > 0 && (sql[len - 1] == ' ' || (sql[len - 1] >= '\t' && sql[len - 1] <= '\r')))
		len--;
	return len > 0 && sql[len - 1] == ';' ? len - 1 : len;
}

void txn_on_query(struct txn *t, const char *sql, size_t len)
{
	/* exec_simple_query drops the unnamed statement, and replaces the unnamed portal with
	 * its own, dropped when done. */
	if (t->unnamed_stmt)
		slot_set(t, &t->unnamed_stmt, NULL);
	if (t->unnamed_portal)
		slot_set(t, &t->unnamed_portal, NULL);
	/* The hot path: nothing in flight and one statement that is not a transaction
	 * statement (most queries): its unit and its sync point go straight into the ring. */
	if (!t->lost && t->q_len == 0 && t->q_cap >= 2 && t->syncs_pending < UINT32_MAX &&
	    sqlscan_single(sql, len)) {
		struct txn_stmt st;

		txn_classify(sql, strip_semicolon(sql, len), &st);
		if (st.kind == TXN_OTHER) {
			t->q_head = 0;
			t->q[0] = (struct txn_pending){.kind = TXN_OTHER, .u.count = 1};
			t->q[1] = (struct txn_pending){.kind = PEND_SYNC, .u.count = 1};
			t->q_len = 2;
			t->syncs_pending++;
			return;
		}
		queue_stmt(t, &st);
		queue_sync(t);
		return;
	}
	if (!t->lost) {
		if (sqlscan_single(sql, len)) {
			/* One statement or none: an empty one is TXN_OTHER too, and is answered
			 * by the EmptyQueryResponse that pops it. */
			struct txn_stmt s;

			txn_classify(sql, strip_semicolon(sql, len), &s);
			queue_stmt(t, &s);
		} else if (sqlscan_split(sql, len, split_stmt, t) == 0) {
			queue_stmt(t, NULL);
		}
	}
	queue_sync(t);
}

/* Its statements are unknown, so their replies cannot be matched: follow RFQ alone. */
void txn_on_query_opaque(struct txn *t)
{
	slot_set(t, &t->unnamed_stmt, NULL);
	slot_set(t, &t->unnamed_portal, NULL);
	go_lost(t);
	queue_sync(t);
}

/* Collects the only statement of a Parse; a second one makes the Parse fail on the server. */
struct one_stmt {
	const char *sql;
	size_t len;
	size_t n;
};

static bool one_stmt_fn(void *arg, const char *stmt, size_t len)
{
	struct one_stmt *o = arg;

	o->sql = stmt;
	o->len = len;
	return ++o->n < 2;
}

void txn_on_parse(struct txn *t, const char *name, const char *sql, size_t len)
{
	struct txn_stmt s;

	if (sqlscan_single(sql, len)) {
		txn_classify(sql, strip_semicolon(sql, len), &s);
	} else {
		struct one_stmt o = {0};

		sqlscan_split(sql, len, one_stmt_fn, &o);
		if (o.n == 1)
			txn_classify(o.sql, o.len, &s);
		else
			txn_classify("", 0, &s); /* the server refuses it: TXN_OTHER */
	}
	if (name[0] == '\0')
		slot_set(t, &t->unnamed_stmt, s.kind == TXN_OTHER ? NULL : &s);
	else
		named_set(t, 'S', name, s.kind == TXN_OTHER ? NULL : &s);
}

void txn_on_bind(struct txn *t, const char *portal, const char *stmt)
{
	const struct txn_stmt *s = stmt[0] ? named_get(t, 'S', stmt) : t->unnamed_stmt;

	if (portal[0] == '\0')
		slot_set(t, &t->unnamed_portal, s);
	else
		named_set(t, 'P', portal, s);
}

void txn_on_execute(struct txn *t, const char *portal)
{
	queue_stmt(t, portal[0] ? named_get(t, 'P', portal) : t->unnamed_portal);
}

void txn_on_close(struct txn *t, char what, const char *name)
{
	if (what != 'S' && what != 'P')
		return;
	if (name[0] != '\0')
		named_set(t, what, name, NULL);
	else
		slot_set(t, what == 'S' ? &t->unnamed_stmt : &t->unnamed_portal, NULL);
}

void txn_on_sync(struct txn *t)
{
	queue_sync(t);
}

void txn_on_command_complete(struct txn *t, const char *tag, size_t tag_len)
{
	struct txn_pending e;
	bool tag_rollback;

	if (t->lost)
		return;
	if (t->q_len > 0 && q_at(t, 0)->kind == TXN_OTHER) { /* the hot path, in place */
		struct txn_pending *h = q_at(t, 0);

		if (h->u.count > 1) {
			h->u.count--;
		} else {
			t->q_head = (t->q_head + 1) & (t->q_cap - 1);
			t->q_len--;
		}
		if (tag_is_txn(tag, tag_len))
			go_lost(t);
		return;
	}
	if (!q_take_stmt(t, &e)) {
		go_lost(t);
		return;
	}
	tag_rollback = tag_is(tag, tag_len, "ROLLBACK");
	if (!tag_agrees(e.kind, tag, tag_len, tag_rollback) || !apply(t, &e, tag_rollback))
		go_lost(t);
	free(e.name); /* unless apply took it */
}

void txn_on_no_effect(struct txn *t)
{
	struct txn_pending e;

	if (t->lost)
		return;
	if (!q_take_stmt(t, &e)) {
		go_lost(t);
		return;
	}
	free(e.name);
}

void txn_on_error(struct txn *t)
{
	if (t->lost)
		return;
	/* The failed statement, or the one whose Parse/Bind failed, and everything the server
	 * skips until the Sync. An error with a sync point at the head (a Parse or Bind with no
	 * Execute, a FunctionCall) has no statement to pop. */
	while (t->q_len > 0 && q_at(t, 0)->kind != PEND_SYNC)
		q_drop_head(t);
	if (t->depth > 0)
		t->status = 'E';
}

/* ReadyForQuery is the authority: the tracker takes its status, whatever it missed. */
static void follow_status(struct txn *t, char status)
{
	if (status == 'I') {
		if (t->depth > 0) {
			if (t->status == 'E')
				COUNT(t, rollbacks);
			else
				COUNT(t, commits);
			end_block(t);
		}
	} else if (t->depth == 0) {
		begin_block(t, TXN_ISO_DEFAULT, TXN_FLAG_UNSET, TXN_FLAG_UNSET);
	}
	t->status = status;
}

void txn_on_ready(struct txn *t, char status)
{
	/* The hot path: the one sync point in flight is answered, outside any transaction, with
	 * no portal or named statement to age. */
	if (!t->lost && t->syncs_pending == 1 && t->q_len == 1 && status == 'I' && t->depth == 0 &&
	    !t->unnamed_portal && !t->named) {
		struct txn_pending *h = q_at(t, 0);

		if (h->kind == PEND_SYNC && h->u.count == 1) {
			t->q_len = 0;
			t->syncs_pending = 0;
			t->status = 'I';
			return;
		}
	}
	if (!t->lost && t->syncs_pending == 0) {
		/* Nothing asked for this ReadyForQuery: statements queued ahead of a sync the
		 * client has not sent yet no longer line up. */
		if (t->q_len > 0)
			go_lost(t);
	} else if (!t->lost) {
		/* Leftovers of this sync point, then the sync point itself. */
		while (t->q_len > 0 && q_at(t, 0)->kind != PEND_SYNC)
			q_drop_head(t);
		if (t->q_len > 0 && q_at(t, 0)->u.count > 1)
			q_at(t, 0)->u.count--;
		else if (t->q_len > 0)
			q_drop_head(t);
	}
	if (t->syncs_pending > 0)
		t->syncs_pending--;

	/* Any other status byte is a protocol violation someone else reports; it still ends
	 * its sync point. */
	if (status == 'I' || status == 'T' || status == 'E')
		follow_status(t, status);
	if (t->unnamed_portal || t->named)
		portals_ready(t, status);

	if (t->lost && t->syncs_pending == 0) {
		t->lost = false;
		q_clear(t);
	}
	if (t->q_len == 0 && t->q_cap > TXN_QUEUE_KEEP) {
		free(t->q);
		t->q = NULL;
		t->q_cap = t->q_head = 0;
	}
}

const char *txn_isolation_name(enum txn_isolation iso)
{
	static const char *const names[] = {"default", "read uncommitted", "read committed",
	                                    "repeatable read", "serializable"};

	return (unsigned)iso < sizeof(names) / sizeof(names[0]) ? names[iso] : "default";
}

char *txn_savepoint_list(const struct txn *t, char *out, size_t n)
{
	size_t used = 0;

	if (n == 0)
		return out;
	out[0] = '\0';
	for (int i = 0; i < t->depth - 1; i++) {
		size_t len = strlen(t->savepoints[i]);

		if (i > 0 && used + 1 < n)
			out[used++] = ',';
		if (len > n - 1 - used)
			len = n - 1 - used;
		memcpy(out + used, t->savepoints[i], len);
		used += len;
	}
	out[used] = '\0';
	return out;
}
