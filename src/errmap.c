/*
 * Error classification: an ErrorResponse into @prisma/adapter-pg 7's MappedError, as JSON, with
 * the extra fields derived the way its convertDriverError derives them (facts sheet, section a).
 * Pure: no I/O, no globals. The derivations copy JavaScript string operations (split, match,
 * replace) on purpose, quirks included, so that an app sees the same error through pgtide.
 */
#include "pgtide/errmap.h"

#include <string.h>

/* A piece of a field value; never NUL-terminated on its own. */
struct errmap_span {
	const char *p;
	size_t len;
};

static const char *const errmap_kind_names[ERRMAP_N_KINDS] = {
        [ERRMAP_POSTGRES] = "postgres",
        [ERRMAP_LENGTH_MISMATCH] = "LengthMismatch",
        [ERRMAP_VALUE_OUT_OF_RANGE] = "ValueOutOfRange",
        [ERRMAP_INVALID_INPUT_VALUE] = "InvalidInputValue",
        [ERRMAP_UNIQUE_CONSTRAINT] = "UniqueConstraintViolation",
        [ERRMAP_NULL_CONSTRAINT] = "NullConstraintViolation",
        [ERRMAP_FOREIGN_KEY_CONSTRAINT] = "ForeignKeyConstraintViolation",
        [ERRMAP_RESTRICT] = "RestrictViolation",
        [ERRMAP_DATABASE_DOES_NOT_EXIST] = "DatabaseDoesNotExist",
        [ERRMAP_DATABASE_ACCESS_DENIED] = "DatabaseAccessDenied",
        [ERRMAP_AUTHENTICATION_FAILED] = "AuthenticationFailed",
        [ERRMAP_TRANSACTION_WRITE_CONFLICT] = "TransactionWriteConflict",
        [ERRMAP_TABLE_DOES_NOT_EXIST] = "TableDoesNotExist",
        [ERRMAP_COLUMN_NOT_FOUND] = "ColumnNotFound",
        [ERRMAP_DATABASE_ALREADY_EXISTS] = "DatabaseAlreadyExists",
        [ERRMAP_TOO_MANY_CONNECTIONS] = "TooManyConnections",
};

static const struct {
	const char *sqlstate;
	enum errmap_kind kind;
} errmap_sqlstates[] = {
        {"22001", ERRMAP_LENGTH_MISMATCH},
        {"22003", ERRMAP_VALUE_OUT_OF_RANGE},
        {"22P02", ERRMAP_INVALID_INPUT_VALUE},
        {"23505", ERRMAP_UNIQUE_CONSTRAINT},
        {"23502", ERRMAP_NULL_CONSTRAINT},
        {"23503", ERRMAP_FOREIGN_KEY_CONSTRAINT},
        {"23001", ERRMAP_RESTRICT},
        {"3D000", ERRMAP_DATABASE_DOES_NOT_EXIST},
        {"28000", ERRMAP_DATABASE_ACCESS_DENIED},
        {"28P01", ERRMAP_AUTHENTICATION_FAILED},
        {"40001", ERRMAP_TRANSACTION_WRITE_CONFLICT},
        {"40P01", ERRMAP_TRANSACTION_WRITE_CONFLICT},
        {"42P01", ERRMAP_TABLE_DOES_NOT_EXIST},
        {"42703", ERRMAP_COLUMN_NOT_FOUND},
        {"42P04", ERRMAP_DATABASE_ALREADY_EXISTS},
        {"53300", ERRMAP_TOO_MANY_CONNECTIONS},
};

const char *errmap_kind_name(enum errmap_kind k)
{
	/* An out-of-range value is a caller bug; "postgres" is the kind that promises least. */
	if ((unsigned)k >= ERRMAP_N_KINDS)
		return errmap_kind_names[ERRMAP_POSTGRES];
	return errmap_kind_names[k];
}

enum errmap_kind errmap_kind_of(const char *sqlstate)
{
	if (!sqlstate)
		return ERRMAP_POSTGRES;
	for (size_t i = 0; i < sizeof(errmap_sqlstates) / sizeof(errmap_sqlstates[0]); i++)
		if (strcmp(sqlstate, errmap_sqlstates[i].sqlstate) == 0)
			return errmap_sqlstates[i].kind;
	return ERRMAP_POSTGRES;
}

/* ---- JSON output ---- */

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes left), or 0. Overlong forms,
 * surrogates and code points above U+10FFFF are ill-formed (RFC 3629), so a JSON parser
 * downstream never sees them.
 */
static size_t errmap_utf8_len(const unsigned char *s, size_t n)
{
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
	    (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
		return 0;
	return len;
}

/* Appends s as a JSON string (RFC 8259), each byte of ill-formed UTF-8 as U+FFFD. */
static void errmap_json_str(struct pbuf *b, const char *s, size_t n)
{
	static const char hexdig[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	pbuf_put_u8(b, '"');
	while (i < n) {
		unsigned char c = u[i];
		const char *esc = NULL;

		switch (c) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		default:
			break;
		}
		if (esc) {
			pbuf_put(b, esc, 2);
			i++;
		} else if (c < 0x20) {
			char x[6] = {'\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 0xF]};
			pbuf_put(b, x, sizeof(x));
			i++;
		} else {
			size_t len = errmap_utf8_len(u + i, n - i);
			if (len == 0) {
				pbuf_put(b, "\xEF\xBF\xBD", 3);
				i++;
			} else {
				pbuf_put(b, u + i, len);
				i += len;
			}
		}
	}
	pbuf_put_u8(b, '"');
}

/* Appends ,"key":"value" — every member but "kind" follows another. */
static void errmap_json_member(struct pbuf *b, const char *key, struct errmap_span v)
{
	pbuf_put_u8(b, ',');
	errmap_json_str(b, key, strlen(key));
	pbuf_put_u8(b, ':');
	errmap_json_str(b, v.p, v.len);
}

static void errmap_json_member_cstr(struct pbuf *b, const char *key, const char *v)
{
	if (v)
		errmap_json_member(b, key, (struct errmap_span){v, strlen(v)});
}

/* Appends ,"constraint":{"index":"name"}. */
static void errmap_json_index(struct pbuf *b, const char *name)
{
	pbuf_put(b, ",\"constraint\":{\"index\":", 23);
	errmap_json_str(b, name, strlen(name));
	pbuf_put_u8(b, '}');
}

/* Appends ,"constraint":{"fields":[...]} with keys split on ", " as JS split does. */
static void errmap_json_fields(struct pbuf *b, struct errmap_span keys)
{
	size_t start = 0;

	pbuf_put(b, ",\"constraint\":{\"fields\":[", 25);
	for (size_t i = 0; i <= keys.len;) {
		if (i == keys.len ||
		    (i + 1 < keys.len && keys.p[i] == ',' && keys.p[i + 1] == ' ')) {
			if (start > 0)
				pbuf_put_u8(b, ',');
			errmap_json_str(b, keys.p + start, i - start);
			if (i == keys.len)
				break;
			i += 2;
			start = i;
		} else {
			i++;
		}
	}
	pbuf_put(b, "]}", 2);
}

/* ---- the derivations, each a JavaScript expression from adapter-pg ---- */

/* s.split(sep)[idx] (idx 0-based); false when there are not that many parts. */
static bool errmap_split_at(struct errmap_span s, char sep, size_t idx, struct errmap_span *out)
{
	size_t start = 0, part = 0;

	for (size_t i = 0; i <= s.len; i++) {
		if (i < s.len && s.p[i] != sep)
			continue;
		if (part == idx) {
			*out = (struct errmap_span){s.p + start, i - start};
			return true;
		}
		part++;
		start = i + 1;
	}
	return false;
}

/* s.split(sep).pop(): the text after the last sep (all of s without one). */
static struct errmap_span errmap_split_last(struct errmap_span s, char sep)
{
	size_t start = 0;

	for (size_t i = 0; i < s.len; i++)
		if (s.p[i] == sep)
			start = i + 1;
	return (struct errmap_span){s.p + start, s.len - start};
}

/*
 * word.split('"').at(1): the text after the first double quote up to the next one (or the end
 * of the word, if it is not closed). False when the word holds no double quote.
 */
static bool errmap_quoted(struct errmap_span word, struct errmap_span *out)
{
	return errmap_split_at(word, '"', 1, out);
}

static struct errmap_span errmap_span_of(const char *s)
{
	return (struct errmap_span){s, s ? strlen(s) : 0};
}

/* message.split(' ').at(idx)?.split('"').at(1) */
static bool errmap_quoted_word(const char *msg, size_t idx, struct errmap_span *out)
{
	struct errmap_span word;

	return msg && errmap_split_at(errmap_span_of(msg), ' ', idx, &word) &&
	       errmap_quoted(word, out);
}

/* message.split(',').find(s => s.startsWith(' database'))?.split('"').at(1) */
static bool errmap_access_denied_db(const char *msg, struct errmap_span *out)
{
	static const char prefix[] = " database";
	struct errmap_span part;

	if (!msg)
		return false;
	for (size_t i = 0; errmap_split_at(errmap_span_of(msg), ',', i, &part); i++)
		if (part.len >= sizeof(prefix) - 1 &&
		    memcmp(part.p, prefix, sizeof(prefix) - 1) == 0)
			return errmap_quoted(part, out);
	return false;
}

/* detail?.match(/Key \(([^)]+)\)/)?.at(1): the first "Key (" followed by text and a ")". */
static bool errmap_detail_keys(const char *detail, struct errmap_span *out)
{
	const char *p = detail;

	while (p && (p = strstr(p, "Key (")) != NULL) {
		const char *keys = p + 5;
		const char *close = strchr(keys, ')');
		if (!close)
			return false;
		if (close > keys) {
			*out = (struct errmap_span){keys, (size_t)(close - keys)};
			return true;
		}
		p++;
	}
	return false;
}

/*
 * The table adapter-pg guesses for a 23505 without 't': the constraint name without the
 * suffix "_<fields joined by _>_key" that PostgreSQL gives a UNIQUE constraint by default.
 * A name without that suffix is left whole (removing an absent suffix changes nothing).
 */
static struct errmap_span errmap_table_from_constraint(const char *name, struct errmap_span keys)
{
	size_t nlen = strlen(name), seps = 0;

	for (size_t i = 0; i + 1 < keys.len; i++)
		if (keys.p[i] == ',' && keys.p[i + 1] == ' ') {
			seps++;
			i++;
		}
	/* "_" + fields with each ", " become "_" + "_key" */
	size_t suffix = 1 + keys.len - seps + 4;
	if (nlen < suffix)
		return (struct errmap_span){name, nlen};
	const char *q = name + nlen - suffix;
	if (*q++ != '_')
		return (struct errmap_span){name, nlen};
	for (size_t i = 0; i < keys.len; i++) {
		char want = keys.p[i];
		if (i + 1 < keys.len && keys.p[i] == ',' && keys.p[i + 1] == ' ') {
			want = '_';
			i++;
		}
		if (*q++ != want)
			return (struct errmap_span){name, nlen};
	}
	if (memcmp(q, "_key", 4) != 0)
		return (struct errmap_span){name, nlen};
	return (struct errmap_span){name, nlen - suffix};
}

/* Is there a JavaScript line terminator (which "." does not match) in s? */
static bool errmap_has_line_terminator(struct errmap_span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] == '\n' || s.p[i] == '\r')
			return true;
		/* U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR */
		if (i + 2 < s.len && (unsigned char)s.p[i] == 0xE2 &&
		    (unsigned char)s.p[i + 1] == 0x80 &&
		    ((unsigned char)s.p[i + 2] == 0xA8 || (unsigned char)s.p[i + 2] == 0xA9))
			return true;
	}
	return false;
}

/*
 * 42703: /^column (.+) does not exist$/, with "..." identifiers unquoted and "" inside them
 * turned into ". PostgreSQL writes `column "x" does not exist` for a bare name but
 * `column t.x does not exist` (unquoted) for a qualified one; both give the plain name.
 * Appends the member itself since the unquoted text is built on the fly.
 */
static void errmap_json_missing_column(struct pbuf *b, const char *msg)
{
	static const char head[] = "column ", tail[] = " does not exist";
	const size_t hl = sizeof(head) - 1, tl = sizeof(tail) - 1;
	size_t n = msg ? strlen(msg) : 0;

	if (n < hl + 1 + tl || memcmp(msg, head, hl) != 0 || memcmp(msg + n - tl, tail, tl) != 0)
		return;
	struct errmap_span cap = {msg + hl, n - hl - tl};
	if (errmap_has_line_terminator(cap))
		return;

	struct pbuf name = {0};
	bool quoted = false;
	for (size_t i = 0; i < cap.len; i++) {
		if (cap.p[i] != '"') {
			pbuf_put_u8(&name, (uint8_t)cap.p[i]);
		} else if (quoted && i + 1 < cap.len && cap.p[i + 1] == '"') {
			pbuf_put_u8(&name, '"');
			i++;
		} else {
			quoted = !quoted;
		}
	}
	if (name.oom) {
		/* Leaving the field out is what a failed derivation does anyway. */
		pbuf_free(&name);
		return;
	}
	errmap_json_member(b, "column", (struct errmap_span){(const char *)name.data, name.len});
	pbuf_free(&name);
}

static void errmap_json_quoted_member(struct pbuf *b, const char *key, bool found,
                                      struct errmap_span v)
{
	if (found)
		errmap_json_member(b, key, v);
}

enum errmap_kind errmap_classify(const struct proto_error *e, struct pbuf *json)
{
	enum errmap_kind kind = errmap_kind_of(e->sqlstate);
	const char *name = errmap_kind_name(kind);
	struct errmap_span v = {0};
	struct errmap_span keys = {0};
	bool found;

	pbuf_put(json, "{\"kind\":", 8);
	errmap_json_str(json, name, strlen(name));

	switch (kind) {
	case ERRMAP_LENGTH_MISMATCH:
		errmap_json_member_cstr(json, "column", e->column);
		break;
	case ERRMAP_VALUE_OUT_OF_RANGE:
	case ERRMAP_TOO_MANY_CONNECTIONS:
		errmap_json_member_cstr(json, "cause", e->message);
		break;
	case ERRMAP_INVALID_INPUT_VALUE:
		errmap_json_member_cstr(json, "message", e->message);
		break;
	case ERRMAP_UNIQUE_CONSTRAINT:
		found = errmap_detail_keys(e->detail, &keys);
		if (e->constraint)
			errmap_json_index(json, e->constraint);
		else if (found)
			errmap_json_fields(json, keys);
		if (e->table)
			errmap_json_member_cstr(json, "table", e->table);
		else if (found && e->constraint)
			errmap_json_member(json, "table",
			                   errmap_table_from_constraint(e->constraint, keys));
		break;
	case ERRMAP_NULL_CONSTRAINT:
		if (errmap_detail_keys(e->detail, &keys))
			errmap_json_fields(json, keys);
		break;
	case ERRMAP_FOREIGN_KEY_CONSTRAINT:
	case ERRMAP_RESTRICT:
		if (e->column)
			errmap_json_fields(json, errmap_span_of(e->column));
		else if (e->constraint)
			errmap_json_index(json, e->constraint);
		break;
	case ERRMAP_DATABASE_DOES_NOT_EXIST:
	case ERRMAP_DATABASE_ALREADY_EXISTS:
		found = errmap_quoted_word(e->message, 1, &v);
		errmap_json_quoted_member(json, "db", found, v);
		break;
	case ERRMAP_DATABASE_ACCESS_DENIED:
		found = errmap_access_denied_db(e->message, &v);
		errmap_json_quoted_member(json, "db", found, v);
		break;
	case ERRMAP_AUTHENTICATION_FAILED:
		found = e->message &&
		        errmap_quoted(errmap_split_last(errmap_span_of(e->message), ' '), &v);
		errmap_json_quoted_member(json, "user", found, v);
		break;
	case ERRMAP_TABLE_DOES_NOT_EXIST:
		found = errmap_quoted_word(e->message, 1, &v);
		errmap_json_quoted_member(json, "table", found, v);
		break;
	case ERRMAP_COLUMN_NOT_FOUND:
		errmap_json_missing_column(json, e->message);
		break;
	case ERRMAP_TRANSACTION_WRITE_CONFLICT:
		break;
	case ERRMAP_POSTGRES:
	default:
		errmap_json_member_cstr(json, "code", e->sqlstate);
		errmap_json_member_cstr(json, "severity",
		                        e->severity ? e->severity : e->severity_nl);
		errmap_json_member_cstr(json, "message", e->message);
		errmap_json_member_cstr(json, "detail", e->detail);
		errmap_json_member_cstr(json, "column", e->column);
		errmap_json_member_cstr(json, "hint", e->hint);
		break;
	}
	pbuf_put_u8(json, '}');
	return kind;
}

/* ---- adding a field to an ErrorResponse ---- */

/*
 * Walks an ErrorResponse's fields (protocol 3.0: a code byte and a NUL-terminated string each,
 * then a lone NUL that must be the message's last byte). False if malformed or if a field
 * `code` is already there, since a client would see two values for it.
 */
static bool errmap_fields_ok(const uint8_t *msg, uint32_t len, char code)
{
	if (len < PROTO_HEADER_LEN + 1 || msg[0] != 'E' || proto_get_u32(msg + 1) != len - 1)
		return false;
	for (size_t i = PROTO_HEADER_LEN;;) {
		if (i >= len)
			return false;
		uint8_t c = msg[i++];
		if (c == 0)
			return i == len;
		if (c == (uint8_t)code)
			return false;
		const uint8_t *nul = memchr(msg + i, 0, len - i);
		if (!nul)
			return false;
		i = (size_t)(nul - msg) + 1;
	}
}

bool errmap_add_field(const uint8_t *msg, uint32_t len, char code, const char *value,
                      struct pbuf *out)
{
	/* A zero code would read as the terminator and end the field list early. */
	if (!msg || !value || code == 0 || !errmap_fields_ok(msg, len, code))
		return false;

	size_t vlen = strlen(value);
	/* The length word is a signed int32 on the wire. */
	if ((uint64_t)len + vlen + 1 > INT32_MAX)
		return false;
	uint32_t total = len + 1 + (uint32_t)vlen + 1;

	pbuf_reserve(out, total);
	if (out->oom)
		return false;
	pbuf_put_u8(out, 'E');
	pbuf_put_u32(out, total - 1);
	pbuf_put(out, msg + PROTO_HEADER_LEN, len - PROTO_HEADER_LEN - 1);
	pbuf_put_u8(out, (uint8_t)code);
	pbuf_put(out, value, vlen + 1);
	pbuf_put_u8(out, 0);
	return true;
}
