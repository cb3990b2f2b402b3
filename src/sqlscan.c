/*
 * A small SQL lexer: statement splitting as PostgreSQL's scanner (scan.l) and psql's splitter
 * (psqlscan.l) see the text, and keyword/identifier reading at the start of a statement. Pure.
 *
 * Only what decides where a ';' separates statements is lexed: quotes, comments, dollar quotes,
 * parentheses, identifiers (a '$' inside one is not a dollar quote) and the BEGIN ATOMIC
 * heuristic. Everything else is skipped a byte at a time. standard_conforming_strings is
 * assumed on (PostgreSQL's default since 9.1): a client that turns it off and writes \' in a
 * plain string may be split wrongly, and the tracker then trusts ReadyForQuery (txn.c).
 */
#include "pgtide/sqlscan.h"

#include <stdint.h>
#include <string.h>

/* scan.l's {space}: [ \t\n\r\f\v] */
static inline bool sc_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static inline bool sc_alpha(unsigned char c)
{
	return (unsigned char)((c | 0x20) - 'a') < 26;
}

static inline bool sc_digit(unsigned char c)
{
	return (unsigned char)(c - '0') < 10;
}

/* {ident_start}: [A-Za-z\200-\377_] */
static inline bool sc_ident_start(unsigned char c)
{
	return sc_alpha(c) || c == '_' || c >= 0x80;
}

/* {dolq_cont}: [A-Za-z\200-\377_0-9]; a dollar-quote tag never holds a '$' */
static inline bool sc_dolq_cont(unsigned char c)
{
	return sc_ident_start(c) || sc_digit(c);
}

/* {ident_cont}: [A-Za-z\200-\377_0-9\$] */
static inline bool sc_ident_cont(unsigned char c)
{
	return sc_dolq_cont(c) || c == '$';
}

static inline unsigned char sc_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* True if w (n bytes) is keyword kw (lower case), ignoring ASCII case. */
static bool sc_word_is(const char *w, size_t n, const char *kw)
{
	size_t i = 0;

	for (; i < n; i++)
		if (kw[i] == '\0' || sc_lower((unsigned char)w[i]) != (unsigned char)kw[i])
			return false;
	return kw[i] == '\0';
}

/* p is just past "--": the comment runs to a newline, which stays whitespace. */
static const char *skip_line_comment(const char *p, const char *end)
{
	while (p < end && *p != '\n' && *p != '\r')
		p++;
	return p;
}

/* p is just past the comment opener. Block comments nest in PostgreSQL, unlike in C. */
static const char *skip_block_comment(const char *p, const char *end)
{
	int depth = 1;

	while (p + 1 < end) {
		if (p[0] == '/' && p[1] == '*') {
			depth++;
			p += 2;
		} else if (p[0] == '*' && p[1] == '/') {
			p += 2;
			if (--depth == 0)
				return p;
		} else {
			p++;
		}
	}
	return end;
}

const char *sqlscan_skip_space(const char *p, const char *end)
{
	while (p < end) {
		unsigned char c = (unsigned char)*p;

		if (sc_space(c))
			p++;
		else if (c == '-' && p + 1 < end && p[1] == '-')
			p = skip_line_comment(p + 2, end);
		else if (c == '/' && p + 1 < end && p[1] == '*')
			p = skip_block_comment(p + 2, end);
		else
			break;
	}
	return p;
}

/*
 * p is just past a closing quote. scan.l's {quotecontinue}: whitespace holding a newline (and
 * -- comments) then another quote continues the same literal. Only matters for E'...', whose
 * continuation keeps backslash escapes; returns just past the new quote, or NULL.
 */
static const char *quote_continue(const char *p, const char *end)
{
	bool newline = false;

	while (p < end) {
		char c = *p;

		if (c == '\n' || c == '\r') {
			newline = true;
			p++;
		} else if (c == ' ' || c == '\t' || c == '\f' || c == '\v') {
			p++;
		} else if (c == '-' && p + 1 < end && p[1] == '-') {
			p = skip_line_comment(p + 2, end);
		} else {
			break;
		}
	}
	return newline && p < end && *p == '\'' ? p + 1 : NULL;
}

/* p is just past the opening quote of '...', U&'...', B'...', X'...' or N'...'. */
static const char *skip_std_string(const char *p, const char *end)
{
	for (;;) {
		const char *q = memchr(p, '\'', (size_t)(end - p));

		if (q == NULL)
			return end;
		if (q + 1 < end && q[1] == '\'') {
			p = q + 2;
			continue;
		}
		return q + 1;
	}
}

/* p is just past E' : backslash escapes any byte, '' is a quote too. */
static const char *skip_e_string(const char *p, const char *end)
{
	while (p < end) {
		char c = *p;

		if (c == '\\') {
			if (end - p < 2)
				return end;
			p += 2;
		} else if (c == '\'') {
			const char *q;

			if (p + 1 < end && p[1] == '\'') {
				p += 2;
				continue;
			}
			q = quote_continue(p + 1, end);
			if (q == NULL)
				return p + 1;
			p = q;
		} else {
			p++;
		}
	}
	return end;
}

/* p is just past the opening '"'; "" is a quote inside. */
static const char *skip_quoted_ident(const char *p, const char *end)
{
	for (;;) {
		const char *q = memchr(p, '"', (size_t)(end - p));

		if (q == NULL)
			return end;
		if (q + 1 < end && q[1] == '"') {
			p = q + 2;
			continue;
		}
		return q + 1;
	}
}

/*
 * p is at a '$' that does not continue an identifier. If a dollar-quote delimiter ($$ or
 * $tag$) starts here, returns the end of the whole quoted string (the end of sql if
 * unterminated); otherwise NULL ($1 parameters, a stray '$').
 *
 * Searching for the first "$tag$" in the body gives the same end as psqlscan.l's token by token
 * scan: a '$' inside the body is only ever consumed as the start of a delimiter attempt, and a
 * mismatched delimiter gives its final '$' back (yyless), so the first occurrence wins.
 */
static const char *skip_dollar_quote(const char *p, const char *end)
{
	const char *q = p + 1;
	const char *body, *close;
	size_t taglen;

	if (q < end && sc_ident_start((unsigned char)*q)) {
		q++;
		while (q < end && sc_dolq_cont((unsigned char)*q))
			q++;
	}
	if (q >= end || *q != '$')
		return NULL;
	body = q + 1;
	taglen = (size_t)(body - p);
	close = memmem(body, (size_t)(end - body), p, taglen);
	return close ? close + taglen : end;
}

/* What the splitter tracks within one statement. */
struct scan_state {
	int paren;         /* '(' not yet closed: a ';' inside does not split (CREATE RULE) */
	int begin_depth;   /* BEGIN/CASE ... END nesting in a CREATE FUNCTION body */
	unsigned n_idents; /* identifiers (keywords included) seen so far */
	char idents[4];    /* first letters of the leading create/or/replace/function/procedure */
	bool nonempty;     /* something other than whitespace and comments */
};

/*
 * psql's heuristic for SQL-standard function bodies (CREATE [OR REPLACE] FUNCTION|PROCEDURE ...
 * BEGIN ATOMIC ... END): PostgreSQL's grammar knows the body, a lexer does not, so psql tracks
 * the statement's first words and then counts BEGIN (and CASE inside one) against END. Copied
 * in behaviour so that pgtide splits a script exactly where psql sent it as one statement.
 */
static void track_ident(struct scan_state *s, const char *w, size_t n)
{
	if (s->n_idents < sizeof(s->idents)) {
		char first = 0;

		if (sc_word_is(w, n, "create") || sc_word_is(w, n, "function") ||
		    sc_word_is(w, n, "procedure") || sc_word_is(w, n, "or") ||
		    sc_word_is(w, n, "replace"))
			first = (char)sc_lower((unsigned char)w[0]);
		s->idents[s->n_idents] = first;
	}
	if (s->n_idents < UINT32_MAX)
		s->n_idents++;

	if (s->idents[0] != 'c' || s->paren != 0)
		return;
	if (!(s->idents[1] == 'f' || s->idents[1] == 'p' ||
	      (s->idents[1] == 'o' && s->idents[2] == 'r' &&
	       (s->idents[3] == 'f' || s->idents[3] == 'p'))))
		return;
	if (sc_word_is(w, n, "begin")) {
		s->begin_depth++;
	} else if (sc_word_is(w, n, "case")) {
		if (s->begin_depth >= 1) /* a CASE outside BEGIN ATOMIC ends no block */
			s->begin_depth++;
	} else if (sc_word_is(w, n, "end")) {
		if (s->begin_depth > 0)
			s->begin_depth--;
	}
}

/* p is at an {ident_start} byte: a literal with a prefix, or an identifier / keyword. */
static const char *scan_word(struct scan_state *s, const char *p, const char *end)
{
	unsigned char c = sc_lower((unsigned char)*p);
	const char *q;

	if (p + 1 < end && p[1] == '\'') {
		if (c == 'e')
			return skip_e_string(p + 2, end);
		if (c == 'b' || c == 'x' || c == 'n')
			return skip_std_string(p + 2, end);
	}
	if (c == 'u' && end - p >= 3 && p[1] == '&') {
		if (p[2] == '\'')
			return skip_std_string(p + 3, end);
		if (p[2] == '"')
			return skip_quoted_ident(p + 3, end);
	}
	q = p + 1;
	while (q < end && sc_ident_cont((unsigned char)*q))
		q++;
	track_ident(s, p, (size_t)(q - p));
	return q;
}

size_t sqlscan_split(const char *sql, size_t len, sqlscan_fn fn, void *arg)
{
	const char *p = sql, *end = sql + len, *start = sql;
	struct scan_state s = {0};
	size_t n = 0;

	while (p < end) {
		unsigned char c = (unsigned char)*p;

		if (sc_space(c)) {
			p++;
			continue;
		}
		switch (c) {
		case ';':
			if (s.paren == 0 && s.begin_depth == 0) {
				if (s.nonempty) {
					n++;
					if (!fn(arg, start, (size_t)(p - start)))
						return n;
				}
				memset(&s, 0, sizeof(s));
				start = ++p;
				continue;
			}
			p++;
			break;
		case '-':
			if (p + 1 < end && p[1] == '-') {
				p = skip_line_comment(p + 2, end);
				continue;
			}
			p++;
			break;
		case '/':
			if (p + 1 < end && p[1] == '*') {
				p = skip_block_comment(p + 2, end);
				continue;
			}
			p++;
			break;
		case '\'':
			p = skip_std_string(p + 1, end);
			break;
		case '"':
			p = skip_quoted_ident(p + 1, end);
			break;
		case '$': {
			const char *q = skip_dollar_quote(p, end);

			p = q ? q : p + 1;
			break;
		}
		case '(':
			s.paren++;
			p++;
			break;
		case ')':
			if (s.paren > 0)
				s.paren--;
			p++;
			break;
		default:
			if (sc_ident_start(c)) {
				p = scan_word(&s, p, end);
			} else if (sc_digit(c)) {
				/* A number (1e5, 0x1f, 1_000) is no identifier, and a '$' after it
				 * may open a dollar quote. */
				p++;
				while (p < end && (sc_alpha((unsigned char)*p) ||
				                   sc_digit((unsigned char)*p) || *p == '_'))
					p++;
			} else {
				p++;
			}
			break;
		}
		s.nonempty = true;
	}
	if (s.nonempty) {
		n++;
		fn(arg, start, (size_t)(end - start));
	}
	return n;
}

bool sqlscan_single(const char *sql, size_t len)
{
	/* The hot path: one memchr over a typical short query. A ';' inside a quote or comment
	 * answers false too; the caller then pays for a real split. */
	const char *semi = len > 0 ? memchr(sql, ';', len) : NULL;
	const char *end = sql + len;

	if (semi == NULL)
		return true;
	for (const char *p = semi + 1; p < end; p++)
		if (!sc_space((unsigned char)*p))
			return false;
	return true;
}

bool sqlscan_word(const char **pp, const char *end, const char *keyword)
{
	const char *p = sqlscan_skip_space(*pp, end);
	size_t i = 0;

	for (; keyword[i] != '\0'; i++)
		if (p + i >= end || sc_lower((unsigned char)p[i]) != (unsigned char)keyword[i])
			return false;
	if (p + i < end && sc_ident_cont((unsigned char)p[i]))
		return false;
	*pp = p + i;
	return true;
}

/*
 * Truncates out (len bytes collected, next = the byte after them in the full name) to
 * SQLSCAN_NAME_MAX bytes the way PostgreSQL's truncate_identifier does with pg_mbcliplen: never
 * in the middle of a UTF-8 character (the encoding nearly every server uses).
 */
static size_t clip_name(const char *out, size_t len, bool truncated, unsigned char next)
{
	if (!truncated || (next & 0xC0) != 0x80)
		return len;
	while (len > 0) {
		len--;
		if (((unsigned char)out[len] & 0xC0) != 0x80)
			break;
	}
	return len;
}

bool sqlscan_ident(const char **pp, const char *end, char out[SQLSCAN_NAME_MAX + 1])
{
	const char *p = sqlscan_skip_space(*pp, end);
	size_t n = 0;
	bool truncated = false;
	unsigned char next = 0;
	unsigned char c;

	if (p >= end)
		return false;
	c = (unsigned char)*p;
	if (c == '"') {
		const char *q = p + 1;

		for (;;) {
			unsigned char b;

			if (q >= end)
				return false; /* unterminated: the server reports a syntax error */
			b = (unsigned char)*q;
			if (b == '"') {
				if (q + 1 < end && q[1] == '"')
					q++;
				else
					break;
			}
			if (n < SQLSCAN_NAME_MAX) {
				out[n++] = (char)b;
			} else if (!truncated) {
				truncated = true;
				next = b;
			}
			q++;
		}
		if (n == 0)
			return false; /* "" is a zero-length delimited identifier: an error */
		p = q + 1;
	} else if (sc_ident_start(c)) {
		unsigned char l = sc_lower(c);

		/* Literals with a prefix letter are not identifiers. */
		if (p + 1 < end && p[1] == '\'' && (l == 'e' || l == 'b' || l == 'x' || l == 'n'))
			return false;
		if (l == 'u' && end - p >= 3 && p[1] == '&' && (p[2] == '\'' || p[2] == '"'))
			return false;
		while (p < end && sc_ident_cont((unsigned char)*p)) {
			unsigned char b = sc_lower((unsigned char)*p++);

			if (n < SQLSCAN_NAME_MAX) {
				out[n++] = (char)b;
			} else if (!truncated) {
				truncated = true;
				next = b;
			}
		}
	} else {
		return false;
	}
	n = clip_name(out, n, truncated, next);
	out[n] = '\0';
	*pp = p;
	return true;
}
