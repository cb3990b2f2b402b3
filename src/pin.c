/*
 * Session state that pins a client to its server: what to ask PostgreSQL, when, and what to
 * refuse under pin_session_state = error. See pin.h.
 */
#include "pgtide/pin.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pgtide/params.h"
#include "pgtide/proto.h"
#include "pgtide/sqlscan.h"

/* Kinds in bit order (enum pin_kind). */
static const char *const pin_kind_names[PIN_N_KINDS] = {
        "session advisory lock", "LISTEN",   "temporary table", "cursor WITH HOLD",
        "SQL-level PREPARE",     "SET ROLE",
};

/*
 * The probe. pg_settings.source is 'session' for what SET and set_config(..., false) changed;
 * role and session_authorization are not in pg_settings (GUC_NO_SHOW_ALL), so they are asked
 * directly: pg_stat_activity.usename stays the user that logged in.
 */
static const char pin_probe_base[] =
        "SELECT 's'::text, name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings"
        " WHERE source = 'session' "
        "UNION ALL SELECT 'p', "
        "(EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
        " AND pid = pg_catalog.pg_backend_pid()))::int::text"
        " || (EXISTS (SELECT FROM pg_catalog.pg_listening_channels()))::int::text"
        " || (EXISTS (SELECT FROM pg_catalog.pg_class"
        " WHERE relnamespace = pg_catalog.pg_my_temp_schema())"
        " OR EXISTS (SELECT FROM pg_catalog.pg_proc"
        " WHERE pronamespace = pg_catalog.pg_my_temp_schema())"
        " OR EXISTS (SELECT FROM pg_catalog.pg_type"
        " WHERE typnamespace = pg_catalog.pg_my_temp_schema()))::int::text"
        " || (EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable))::int::text"
        " || (EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql))::int::text"
        " || (pg_catalog.current_setting('role') <> 'none' OR session_user <> (SELECT usename"
        " FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()))::int::text,"
        " ''";

void pin_probe_sql(struct pbuf *b, char *const *custom, size_t n)
{
	pbuf_put(b, pin_probe_base, sizeof(pin_probe_base) - 1);
	if (n > 0) {
		static const char head[] = " UNION ALL SELECT 's', n, v FROM (SELECT n, "
		                           "pg_catalog.current_setting(n, true)"
		                           " AS v FROM (VALUES ";
		pbuf_put(b, head, sizeof(head) - 1);
		for (size_t i = 0; i < n; i++) {
			if (i)
				pbuf_put(b, ", ", 2);
			pbuf_put_u8(b, '(');
			params_quote_value(b, custom[i]);
			pbuf_put_u8(b, ')');
		}
		static const char tail[] = ") AS c(n)) AS s WHERE v IS NOT NULL";
		pbuf_put(b, tail, sizeof(tail) - 1);
	}
	pbuf_put_u8(b, 0);
}

const char *pin_kind_alternative(unsigned kind)
{
	switch (kind) {
	case PIN_ADVISORY:
		return "pg_advisory_xact_lock(), which ends with the transaction";
	case PIN_TEMP:
		return "CREATE TEMP TABLE ... ON COMMIT DROP inside a transaction";
	case PIN_HOLD:
		return "a cursor without WITH HOLD inside a transaction";
	case PIN_PREPARE:
		return "protocol-level prepared statements, which pgtide keeps per client";
	case PIN_ROLE:
		return "SET LOCAL ROLE inside a transaction";
	default:
		return "a session-mode pool";
	}
}

bool pin_mode_valid(const char *v)
{
	return v && (strcasecmp(v, "on") == 0 || strcasecmp(v, "off") == 0 ||
	             strcasecmp(v, "error") == 0);
}

const char *pin_kind_name(unsigned kind)
{
	for (int i = 0; i < PIN_N_KINDS; i++)
		if (kind == 1u << i)
			return pin_kind_names[i];
	return "session state";
}

const char *pin_kinds_text(unsigned bits, char *out, size_t n)
{
	size_t o = 0;
	if (n == 0)
		return out;
	out[0] = '\0';
	for (int i = 0; i < PIN_N_KINDS && o < n; i++) {
		if (!(bits & (1u << i)))
			continue;
		int w = snprintf(out + o, n - o, "%s%s", o ? ", " : "", pin_kind_names[i]);
		if (w < 0)
			break;
		o += (size_t)w;
	}
	return out;
}

/* True if the ASCII letters at p equal word (lower case), in any case. */
static bool eq_ci(const char *p, const char *word, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((char)(p[i] | 0x20) != word[i] && p[i] != word[i])
			return false;
	return true;
}

/*
 * Finds word (lower case, its letter at index `key` being a letter rare in SQL) in sql, in any
 * case; calls accept for each occurrence until it says yes.
 */
static bool find_ci(const char *sql, size_t len, const char *word, size_t key,
                    bool (*accept)(const char *at, const char *end))
{
	size_t wl = strlen(word);
	const char *end = sql + len;
	char lo = word[key], up = (char)(lo & ~0x20);
	for (int pass = 0; pass < 2; pass++) {
		char ch = pass ? up : lo;
		for (const char *p = sql; p < end; p++) {
			p = memchr(p, ch, (size_t)(end - p));
			if (!p)
				break;
			const char *at = p - key;
			if (at < sql || (size_t)(end - at) < wl || !eq_ci(at, word, wl))
				continue;
			if (accept(at, end))
				return true;
		}
	}
	return false;
}

static bool any_occurrence(const char *at, const char *end)
{
	(void)at;
	(void)end;
	return true;
}

/* ---- set_config(name, value, is_local) ---- */

static bool ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* [*pp, end) without the blanks around it. */
static void trim(const char **pp, const char **endp)
{
	const char *p = *pp, *e = *endp;
	while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
		p++;
	while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
		e--;
	*pp = p;
	*endp = e;
}

/* An argument that is certainly boolean true: true, or 'true', 't', 'on', 'yes', '1'. */
static bool literal_true(const char *p, const char *e)
{
	size_t n = (size_t)(e - p);
	if (n == 4 && eq_ci(p, "true", 4))
		return true;
	if (n < 3 || p[0] != '\'' || e[-1] != '\'')
		return false;
	p++;
	n -= 2;
	return (n == 4 && eq_ci(p, "true", 4)) || (n == 1 && (*p | 0x20) == 't') ||
	       (n == 2 && eq_ci(p, "on", 2)) || (n == 3 && eq_ci(p, "yes", 3)) ||
	       (n == 1 && *p == '1');
}

struct sc_call {
	const char *name; /* the setting's name if a plain string literal, else NULL */
	size_t name_len;
	bool local; /* is_local is the literal true: the setting ends with its transaction */
};

/*
 * The arguments of a call at p (just after "set_config"): false if no call follows. An
 * argument list cut short, or with anything but the literal true as is_local, counts as a
 * session-level call.
 */
static bool read_set_config(const char *p, const char *end, struct sc_call *c)
{
	*c = (struct sc_call){0};
	p = sqlscan_skip_space(p, end);
	if (p >= end || *p != '(')
		return false;
	const char *arg = ++p;
	int depth = 0, n = 0;
	for (; p < end; p++) {
		char ch = *p;
		if (ch == '\'' || ch == '"') {
			/* A quoted literal or identifier; a doubled quote stays inside. */
			for (p++; p < end && !(*p == ch && (p + 1 >= end || p[1] != ch)); p++)
				if (*p == ch)
					p++;
			if (p >= end)
				break;
			continue;
		}
		if (ch == '(') {
			depth++;
		} else if (ch == ')' && depth > 0) {
			depth--;
		} else if ((ch == ',' || ch == ')') && depth == 0) {
			const char *a = arg, *e = p;
			trim(&a, &e);
			if (n == 0 && e - a > 2 && a[0] == '\'' && e[-1] == '\'' &&
			    !memchr(a + 1, '\'', (size_t)(e - a - 2))) {
				c->name = a + 1;
				c->name_len = (size_t)(e - a - 2);
			} else if (n == 2) {
				c->local = literal_true(a, e);
			}
			n++;
			arg = p + 1;
			if (ch == ')')
				break;
		}
	}
	if (n != 3)
		c->local = false;
	return true;
}

/*
 * Calls fn for each set_config call in sql; stops when fn says no. Found from its '_' (the
 * caller has the position of one), or by scanning.
 */
static void each_set_config(const char *sql, size_t len,
                            bool (*fn)(void *arg, const struct sc_call *c), void *arg)
{
	const char *end = sql + len, *q = sql + 3;
	while (q < end && (q = memchr(q, '_', (size_t)(end - q))) != NULL) {
		struct sc_call c;
		if ((size_t)(end - q) > 7 && eq_ci(q - 3, "set", 3) && eq_ci(q + 1, "config", 6) &&
		    (q - 3 == sql || !ident_char(q[-4])) && !ident_char(q[7]) &&
		    read_set_config(q + 7, end, &c) && !fn(arg, &c))
			return;
		q++;
	}
}

struct sc_names {
	void (*fn)(void *arg, const char *name, size_t n);
	void *arg;
	bool session;
};

static bool sc_session(void *arg, const struct sc_call *c)
{
	struct sc_names *s = arg;
	if (c->local)
		return true;
	s->session = true;
	if (s->fn)
		s->fn(s->arg, c->name, c->name_len);
	return s->fn != NULL; /* only asked whether there is one: stop */
}

void pin_set_config_names(const char *sql, size_t len,
                          void (*fn)(void *arg, const char *name, size_t n), void *arg)
{
	struct sc_names s = {fn, arg, false};
	each_set_config(sql, len, sc_session, &s);
}

unsigned pin_text_wants_probe(const char *sql, size_t len)
{
	const char *end = sql + len, *p = sql;
	if (len >= 6) {
		char c = sql[0];
		if ((c | 0x20) == 'c' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		    c == '-' || c == '/') {
			if (sqlscan_word(&p, end, "create"))
				return PIN_TEXT_PROBE;
		}
	}
	/*
	 * "advisory_" not followed by "xact", and "set_config": found from their '_', one memchr
	 * that needs no case folding (most statements have few underscores, each checked in a few
	 * instructions).
	 */
	const char *q = sql + 3;
	while (q < end && (q = memchr(q, '_', (size_t)(end - q))) != NULL) {
		char before = (char)(q[-1] | 0x20); /* most underscores stop here */
		if (before == 'y' && q - sql >= 8 && eq_ci(q - 8, "advisory", 8) &&
		    !((size_t)(end - q) > 4 && eq_ci(q + 1, "xact", 4)))
			return PIN_TEXT_PROBE;
		if (before == 't' && (size_t)(end - q) > 7 && eq_ci(q - 3, "set", 3) &&
		    eq_ci(q + 1, "config", 6) && (q - 3 == sql || !ident_char(q[-4]))) {
			struct sc_names s = {NULL, NULL, false};
			each_set_config(q - 3, (size_t)(end - q + 3), sc_session, &s);
			if (s.session)
				return PIN_TEXT_PROBE | PIN_TEXT_SET_CONFIG;
		}
		q++;
	}
	return 0;
}

/* ---- tags ---- */

static bool tag_is(const char *tag, size_t len, const char *want)
{
	size_t n = strlen(want);
	return len == n && memcmp(tag, want, n) == 0;
}

static bool tag_starts(const char *tag, size_t len, const char *want)
{
	size_t n = strlen(want);
	return len > n && memcmp(tag, want, n) == 0;
}

unsigned pin_tag_effect_of(const char *tag, size_t len)
{
	if (len < 3)
		return 0;
	switch (tag[0]) {
	case 'S': /* SET; not SELECT n */
		return tag_is(tag, len, "SET") ? PIN_TAG_CREATES | PIN_TAG_DROPS : 0;
	case 'R': /* RESET; not ROLLBACK, RELEASE */
		return tag_is(tag, len, "RESET") ? PIN_TAG_DROPS : 0;
	case 'L':
		return tag_is(tag, len, "LISTEN") ? PIN_TAG_CREATES : 0;
	case 'U': /* UNLISTEN; not UPDATE n */
		return tag_is(tag, len, "UNLISTEN") ? PIN_TAG_DROPS : 0;
	case 'P': /* PREPARE; not PREPARE TRANSACTION */
		return tag_is(tag, len, "PREPARE") ? PIN_TAG_CREATES : 0;
	case 'C': /* CREATE ..., CLOSE CURSOR [ALL]; not COMMIT, COPY n */
		if (tag[1] == 'R' && tag_starts(tag, len, "CREATE "))
			return PIN_TAG_CREATES;
		if (tag[1] == 'L' &&
		    (tag_is(tag, len, "CLOSE CURSOR") || tag_is(tag, len, "CLOSE CURSOR ALL")))
			return PIN_TAG_DROPS;
		return 0;
	case 'D': /* DECLARE CURSOR, DEALLOCATE [ALL], DISCARD ..., DROP ...; not DELETE n */
		if (tag[1] == 'E') {
			if (tag_is(tag, len, "DECLARE CURSOR"))
				return PIN_TAG_CREATES;
			if (tag_is(tag, len, "DEALLOCATE") || tag_is(tag, len, "DEALLOCATE ALL"))
				return PIN_TAG_DROPS;
			return 0;
		}
		if (tag_starts(tag, len, "DISCARD ") || tag_starts(tag, len, "DROP "))
			return PIN_TAG_DROPS;
		return 0;
	default:
		return 0;
	}
}

/* ---- pin_session_state = error ---- */

/* "advisory_lock" (not _xact_lock, not _unlock): takes a session lock. */
static bool refuse_advisory(const char *sql, size_t len)
{
	return find_ci(sql, len, "advisory_lock", 2, any_occurrence);
}

/* The word after "into", if that is TEMP or TEMPORARY. */
static bool into_temp(const char *at, const char *end)
{
	const char *p = at + 4;
	if (at > end || (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')))
		return false;
	return sqlscan_word(&p, end, "temp") || sqlscan_word(&p, end, "temporary");
}

struct refusal {
	unsigned kind;
};

static unsigned statement_refusal(const char *sql, size_t len)
{
	const char *end = sql + len, *p = sql;
	char w[SQLSCAN_NAME_MAX + 1];
	if (sqlscan_word(&p, end, "listen"))
		return PIN_LISTEN;
	if (sqlscan_word(&p, end, "declare")) {
		/* DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR
		 * [{WITH | WITHOUT} HOLD] FOR query */
		if (!sqlscan_ident(&p, end, w))
			return 0;
		for (int i = 0; i < 8 && sqlscan_ident(&p, end, w); i++) {
			if (strcmp(w, "for") == 0)
				return 0;
			if (strcmp(w, "with") == 0 && sqlscan_word(&p, end, "hold"))
				return PIN_HOLD;
		}
		return 0;
	}
	if (sqlscan_word(&p, end, "prepare")) {
		const char *q = p;
		if (sqlscan_word(&q, end, "transaction")) {
			q = sqlscan_skip_space(q, end);
			if (q < end && (*q == '\'' || *q == 'E' || *q == 'e' || *q == 'U' ||
			                *q == 'u' || *q == '$'))
				return 0; /* PREPARE TRANSACTION 'gid' */
		}
		return PIN_PREPARE;
	}
	if (sqlscan_word(&p, end, "create")) {
		if (sqlscan_word(&p, end, "or"))
			(void)sqlscan_word(&p, end, "replace");
		if (!sqlscan_word(&p, end, "global"))
			(void)sqlscan_word(&p, end, "local");
		if (sqlscan_word(&p, end, "temp") || sqlscan_word(&p, end, "temporary"))
			return PIN_TEMP;
		return refuse_advisory(sql, len) ? PIN_ADVISORY : 0;
	}
	if (sqlscan_word(&p, end, "set")) {
		if (sqlscan_word(&p, end, "local"))
			return 0;
		bool session = sqlscan_word(&p, end, "session");
		if (sqlscan_word(&p, end, "role"))
			return sqlscan_word(&p, end, "none") ? 0 : PIN_ROLE;
		if (session && sqlscan_word(&p, end, "authorization"))
			return sqlscan_word(&p, end, "default") ? 0 : PIN_ROLE;
		return 0;
	}
	if (sqlscan_word(&p, end, "select") || sqlscan_word(&p, end, "with")) {
		if (find_ci(sql, len, "into", 0, into_temp))
			return PIN_TEMP;
	}
	return refuse_advisory(sql, len) ? PIN_ADVISORY : 0;
}

static bool refusal_one(void *arg, const char *stmt, size_t len)
{
	struct refusal *r = arg;
	r->kind = statement_refusal(stmt, len);
	return r->kind == 0;
}

unsigned pin_refusal(const char *sql, size_t len)
{
	struct refusal r = {0};
	sqlscan_split(sql, len, refusal_one, &r);
	return r.kind;
}

/* ---- probe rows ---- */

static bool read_col(const uint8_t **pp, const uint8_t *end, const char **s, uint32_t *n)
{
	const uint8_t *p = *pp;
	if (end - p < 4)
		return false;
	int32_t l = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
	                      (uint32_t)p[3]);
	p += 4;
	if (l < 0) {
		*s = "";
		*n = 0;
	} else {
		if (end - p < l)
			return false;
		*s = (const char *)p;
		*n = (uint32_t)l;
		p += l;
	}
	*pp = p;
	return true;
}

bool pin_read_row(const uint8_t *body, uint32_t len, struct pin_row *out)
{
	const uint8_t *p = body, *end = body + len;
	const char *k;
	uint32_t kn;
	memset(out, 0, sizeof(*out));
	if (len < 2 || p[0] != 0 || p[1] != 3)
		return false;
	p += 2;
	if (!read_col(&p, end, &k, &kn) || !read_col(&p, end, &out->name, &out->name_len) ||
	    !read_col(&p, end, &out->value, &out->value_len) || p != end || kn != 1)
		return false;
	out->kind = k[0];
	if (out->kind == 's')
		return out->name_len > 0;
	if (out->kind != 'p' || out->name_len != PIN_N_KINDS)
		return false;
	for (int i = 0; i < PIN_N_KINDS; i++) {
		if (out->name[i] == '1')
			out->kinds |= 1u << i;
		else if (out->name[i] != '0')
			return false;
	}
	return true;
}
