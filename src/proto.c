/* PostgreSQL protocol 3.0: framing, field readers and message builders. Pure: no I/O. */
#include "pgtide/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pbuf ---- */

void pbuf_reserve(struct pbuf *b, size_t extra)
{
	if (b->oom)
		return;
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->data = p;
	b->cap = cap;
}

void pbuf_put(struct pbuf *b, const void *p, size_t n)
{
	pbuf_reserve(b, n);
	if (b->oom || n == 0)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void pbuf_put_u8(struct pbuf *b, uint8_t v)
{
	pbuf_put(b, &v, 1);
}

void pbuf_put_u16(struct pbuf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	pbuf_put(b, x, 2);
}

void pbuf_put_u32(struct pbuf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	pbuf_put(b, x, 4);
}

void pbuf_put_str(struct pbuf *b, const char *s)
{
	pbuf_put(b, s, strlen(s) + 1);
}

void pbuf_reset(struct pbuf *b)
{
	b->len = 0;
	b->oom = false;
}

void pbuf_free(struct pbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

size_t proto_msg_begin(struct pbuf *b, char type)
{
	size_t off = b->len;
	pbuf_put_u8(b, (uint8_t)type);
	pbuf_put_u32(b, 0);
	return off;
}

void proto_msg_end(struct pbuf *b, size_t off)
{
	if (b->oom)
		return;
	uint32_t len = (uint32_t)(b->len - off - 1);
	b->data[off + 1] = (uint8_t)(len >> 24);
	b->data[off + 2] = (uint8_t)(len >> 16);
	b->data[off + 3] = (uint8_t)(len >> 8);
	b->data[off + 4] = (uint8_t)len;
}

/* ---- preader ---- */

void preader_init(struct preader *r, const void *body, size_t len)
{
	r->p = body;
	r->left = len;
	r->err = false;
}

const uint8_t *preader_bytes(struct preader *r, size_t n)
{
	if (r->err || r->left < n) {
		r->err = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

uint8_t preader_u8(struct preader *r)
{
	const uint8_t *p = preader_bytes(r, 1);
	return p ? p[0] : 0;
}

uint16_t preader_u16(struct preader *r)
{
	const uint8_t *p = preader_bytes(r, 2);
	return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t preader_u32(struct preader *r)
{
	const uint8_t *p = preader_bytes(r, 4);
	return p ? proto_get_u32(p) : 0;
}

const char *preader_str(struct preader *r)
{
	if (r->err || r->left == 0) {
		r->err = true;
		return NULL;
	}
	const uint8_t *nul = memchr(r->p, 0, r->left);
	if (!nul) {
		r->err = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	size_t n = (size_t)(nul - r->p) + 1;
	r->p += n;
	r->left -= n;
	return s;
}

/* ---- framing ---- */

enum proto_frame proto_frame_typed(const uint8_t *p, size_t avail, uint32_t max_len, char *type,
                                   uint32_t *len)
{
	if (avail < PROTO_HEADER_LEN)
		return PROTO_FRAME_PARTIAL;
	uint32_t l = proto_get_u32(p + 1);
	/* The length counts itself but not the type byte; 4 is an empty body. */
	if (l < 4 || l > max_len)
		return PROTO_FRAME_BAD_LEN;
	*type = (char)p[0];
	*len = l + 1;
	return PROTO_FRAME_OK;
}

enum proto_frame proto_frame_startup(const uint8_t *p, size_t avail, uint32_t *len)
{
	if (avail < 4)
		return PROTO_FRAME_PARTIAL;
	uint32_t l = proto_get_u32(p);
	/* PostgreSQL: the length includes itself and at least the 4-byte code. */
	if (l < 8 || l > PROTO_STARTUP_MAX)
		return PROTO_FRAME_BAD_LEN;
	*len = l;
	return avail < l ? PROTO_FRAME_PARTIAL : PROTO_FRAME_OK;
}

void proto_parse_startup(uint8_t *p, uint32_t len, struct proto_startup *out)
{
	/* The arrays are filled up to their counts: zeroing them (1.5 KB) is not needed. */
	out->version = 0;
	out->user = out->database = out->options = out->replication = NULL;
	out->n_params = out->n_pq_options = 0;
	out->cancel_pid = out->cancel_key = 0;
	out->kind = PROTO_STARTUP_INVALID;
	out->error = "invalid startup packet layout";
	if (len < 8)
		return;
	uint32_t code = proto_get_u32(p + 4);
	out->version = code;

	switch (code) {
	case PROTO_SSL_REQUEST_CODE:
		if (len != 8)
			return;
		out->kind = PROTO_STARTUP_SSL;
		out->error = NULL;
		return;
	case PROTO_GSSENC_REQUEST_CODE:
		if (len != 8)
			return;
		out->kind = PROTO_STARTUP_GSSENC;
		out->error = NULL;
		return;
	case PROTO_CANCEL_REQUEST_CODE:
		if (len != 16)
			return;
		out->kind = PROTO_STARTUP_CANCEL;
		out->error = NULL;
		out->cancel_pid = proto_get_u32(p + 8);
		out->cancel_key = proto_get_u32(p + 12);
		return;
	default:
		break;
	}
	if ((code >> 16) != 3) {
		out->kind = PROTO_STARTUP_BAD_VERSION;
		out->error = NULL;
		return;
	}

	/* name\0value\0 ... \0 : the final empty name ends the list. */
	uint8_t *q = p + 8;
	uint8_t *end = p + len;
	if (end[-1] != 0) {
		out->error = "invalid startup packet layout: expected terminator as last byte";
		return;
	}
	while (q < end && *q != 0) {
		char *name = (char *)q;
		uint8_t *nul = memchr(q, 0, (size_t)(end - q));
		if (!nul || nul + 1 >= end)
			return;
		char *value = (char *)nul + 1;
		nul = memchr(nul + 1, 0, (size_t)(end - (nul + 1)));
		if (!nul)
			return;
		q = nul + 1;

		if (strcmp(name, "user") == 0)
			out->user = value;
		else if (strcmp(name, "database") == 0)
			out->database = value;
		else if (strcmp(name, "options") == 0)
			out->options = value;
		else if (strcmp(name, "replication") == 0)
			out->replication = value;
		else if (strncmp(name, "_pq_.", 5) == 0) {
			if (out->n_pq_options < PROTO_STARTUP_MAX_PARAMS)
				out->pq_options[out->n_pq_options++] = name;
		} else {
			if (out->n_params >= PROTO_STARTUP_MAX_PARAMS) {
				out->error = "too many startup parameters";
				return;
			}
			out->names[out->n_params] = name;
			out->values[out->n_params] = value;
			out->n_params++;
		}
	}
	if (q + 1 != end) {
		out->error = "invalid startup packet layout: expected terminator as last byte";
		return;
	}
	if (!out->user || !out->user[0]) {
		out->error = "no PostgreSQL user name specified in startup packet";
		out->kind = PROTO_STARTUP_INVALID;
		return;
	}
	if (!out->database || !out->database[0])
		out->database = out->user;
	out->error = NULL;
	out->kind = PROTO_STARTUP_MESSAGE;
}

/*
 * PostgreSQL's pg_split_opts: options are separated by unescaped whitespace; a backslash
 * escapes the next character. Each is then "-c name=value", "-cname=value" or "--name=value".
 */
bool proto_parse_options(const char *options,
                         bool (*fn)(const char *name, const char *value, void *arg), void *arg,
                         char *err, size_t errlen)
{
	size_t n = strlen(options);
	char *buf = malloc(n + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	/* Split into words, unescaping. */
	char **words = calloc(n / 2 + 2, sizeof(char *));
	if (!words) {
		free(buf);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	size_t nw = 0, o = 0;
	const char *s = options;
	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (!*s)
			break;
		words[nw++] = buf + o;
		while (*s && !(*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
			/* As pg_split_opts: a backslash escapes the next character; a trailing one
			 * escapes nothing and is dropped. */
			if (*s == '\\') {
				s++;
				if (!*s)
					break;
			}
			buf[o++] = *s++;
		}
		buf[o++] = 0;
	}

	bool ok = true;
	for (size_t i = 0; i < nw && ok; i++) {
		char *w = words[i];
		char *setting = NULL;
		if (strcmp(w, "-c") == 0) {
			if (i + 1 >= nw) {
				snprintf(err, errlen,
				         "invalid command-line argument for server process: -c");
				ok = false;
				break;
			}
			setting = words[++i];
		} else if (strncmp(w, "-c", 2) == 0) {
			setting = w + 2;
		} else if (strncmp(w, "--", 2) == 0) {
			setting = w + 2;
		} else {
			snprintf(err, errlen,
			         "invalid command-line argument for server process: %.200s", w);
			ok = false;
			break;
		}
		char *eq = strchr(setting, '=');
		if (eq == setting) {
			snprintf(err, errlen, "unrecognized configuration parameter \"\"");
			ok = false;
			break;
		}
		if (!eq) {
			/* PostgreSQL's wording when ParseLongOption finds no value. */
			if (strncmp(w, "--", 2) == 0)
				snprintf(err, errlen, "--%.200s requires a value", setting);
			else
				snprintf(err, errlen, "-c %.200s requires a value", setting);
			ok = false;
			break;
		}
		*eq = 0;
		/* PostgreSQL turns '-' into '_' in names given as --name=value. */
		for (char *c = setting; *c; c++)
			if (*c == '-')
				*c = '_';
		if (!fn(setting, eq + 1, arg)) {
			snprintf(err, errlen, "invalid startup option");
			ok = false;
		}
	}
	free(words);
	free(buf);
	return ok;
}

/* ---- ErrorResponse ---- */

bool proto_parse_error(const uint8_t *body, size_t len, struct proto_error *out)
{
	memset(out, 0, sizeof(*out));
	struct preader r;
	preader_init(&r, body, len);
	for (;;) {
		uint8_t code = preader_u8(&r);
		if (r.err)
			return false;
		if (code == 0)
			break;
		const char *v = preader_str(&r);
		if (!v)
			return false;
		switch (code) {
		case 'S':
			out->severity = v;
			break;
		case 'V':
			out->severity_nl = v;
			break;
		case 'C':
			out->sqlstate = v;
			break;
		case 'M':
			out->message = v;
			break;
		case 'D':
			out->detail = v;
			break;
		case 'H':
			out->hint = v;
			break;
		case 's':
			out->schema = v;
			break;
		case 't':
			out->table = v;
			break;
		case 'c':
			out->column = v;
			break;
		case 'n':
			out->constraint = v;
			break;
		default:
			break;
		}
	}
	return true;
}

static void build_error_fields(struct pbuf *b, char type, const char *severity,
                               const char *sqlstate, const char *message, const char *detail,
                               const char *hint)
{
	size_t off = proto_msg_begin(b, type);
	pbuf_put_u8(b, 'S');
	pbuf_put_str(b, severity);
	pbuf_put_u8(b, 'V');
	pbuf_put_str(b, severity);
	pbuf_put_u8(b, 'C');
	pbuf_put_str(b, sqlstate);
	pbuf_put_u8(b, 'M');
	pbuf_put_str(b, message);
	if (detail) {
		pbuf_put_u8(b, 'D');
		pbuf_put_str(b, detail);
	}
	if (hint) {
		pbuf_put_u8(b, 'H');
		pbuf_put_str(b, hint);
	}
	pbuf_put_u8(b, 0);
	proto_msg_end(b, off);
}

void proto_build_error(struct pbuf *b, const char *severity, const char *sqlstate,
                       const char *message, const char *detail, const char *hint)
{
	build_error_fields(b, 'E', severity, sqlstate, message, detail, hint);
}

void proto_build_notice(struct pbuf *b, const char *severity, const char *sqlstate,
                        const char *message)
{
	build_error_fields(b, 'N', severity, sqlstate, message, NULL, NULL);
}

/* ---- other builders ---- */

void proto_build_auth(struct pbuf *b, uint32_t code, const void *extra, size_t extra_len)
{
	size_t off = proto_msg_begin(b, 'R');
	pbuf_put_u32(b, code);
	pbuf_put(b, extra, extra_len);
	proto_msg_end(b, off);
}

void proto_build_parameter_status(struct pbuf *b, const char *name, const char *value)
{
	size_t off = proto_msg_begin(b, 'S');
	pbuf_put_str(b, name);
	pbuf_put_str(b, value);
	proto_msg_end(b, off);
}

void proto_build_backend_key(struct pbuf *b, uint32_t pid, uint32_t key)
{
	size_t off = proto_msg_begin(b, 'K');
	pbuf_put_u32(b, pid);
	pbuf_put_u32(b, key);
	proto_msg_end(b, off);
}

void proto_build_ready(struct pbuf *b, char status)
{
	size_t off = proto_msg_begin(b, 'Z');
	pbuf_put_u8(b, (uint8_t)status);
	proto_msg_end(b, off);
}

void proto_build_query(struct pbuf *b, const char *sql)
{
	size_t off = proto_msg_begin(b, 'Q');
	pbuf_put_str(b, sql);
	proto_msg_end(b, off);
}

void proto_build_terminate(struct pbuf *b)
{
	size_t off = proto_msg_begin(b, 'X');
	proto_msg_end(b, off);
}

void proto_build_negotiate_version(struct pbuf *b, uint32_t newest_minor, const char *const *opts,
                                   size_t n_opts)
{
	size_t off = proto_msg_begin(b, 'v');
	pbuf_put_u32(b, (3u << 16) | newest_minor);
	pbuf_put_u32(b, (uint32_t)n_opts);
	for (size_t i = 0; i < n_opts; i++)
		pbuf_put_str(b, opts[i]);
	proto_msg_end(b, off);
}

void proto_build_row_description(struct pbuf *b, const char *const *names,
                                 const uint32_t *type_oids, size_t n)
{
	size_t off = proto_msg_begin(b, 'T');
	pbuf_put_u16(b, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		pbuf_put_str(b, names[i]);
		pbuf_put_u32(b, 0);            /* table OID */
		pbuf_put_u16(b, 0);            /* column number */
		pbuf_put_u32(b, type_oids[i]); /* type OID */
		/* typlen: int8 (20) is 8 bytes, int4 (23) 4, text and the rest variable. */
		int16_t typlen = type_oids[i] == 20 ? 8 : type_oids[i] == 23 ? 4 : -1;
		pbuf_put_u16(b, (uint16_t)typlen);
		pbuf_put_u32(b, (uint32_t)-1); /* typmod */
		pbuf_put_u16(b, 0);            /* text format */
	}
	proto_msg_end(b, off);
}

void proto_build_data_row(struct pbuf *b, const char *const *values, size_t n)
{
	size_t off = proto_msg_begin(b, 'D');
	pbuf_put_u16(b, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		if (!values[i]) {
			pbuf_put_u32(b, (uint32_t)-1);
			continue;
		}
		size_t l = strlen(values[i]);
		pbuf_put_u32(b, (uint32_t)l);
		pbuf_put(b, values[i], l);
	}
	proto_msg_end(b, off);
}

void proto_build_command_complete(struct pbuf *b, const char *tag)
{
	size_t off = proto_msg_begin(b, 'C');
	pbuf_put_str(b, tag);
	proto_msg_end(b, off);
}

bool proto_parse_parameter_status(const uint8_t *body, size_t len, const char **name,
                                  const char **value)
{
	struct preader r;
	preader_init(&r, body, len);
	*name = preader_str(&r);
	*value = preader_str(&r);
	return !r.err && r.left == 0;
}
