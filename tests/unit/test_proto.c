/* Table-driven tests for proto.c: pbuf, preader, framing, startup, options, errors, builders. */
#include "pgtide/proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal with embedded NULs, as a (pointer, length) pair without the implicit NUL. */
#define B(s) (s), (sizeof(s) - 1)
/* The same, as designated initializers of .body and .body_len. */
#define BODY(s) .body = (s), .body_len = (sizeof(s) - 1)
/* A byte array literal, as a (pointer, length) pair. */
#define BYTES(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static bool bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Prints bytes as hex into out, for failure messages. */
static const char *hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	out[0] = 0;
	for (size_t i = 0; i < n && o + 4 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%02X ", p[i]);
	return out;
}

/* ---- pbuf ---- */

static void test_pbuf_growth(void)
{
	const struct {
		const char *name;
		size_t total; /* bytes appended */
		size_t chunk; /* in puts of this size */
		size_t cap;   /* expected capacity afterwards */
	} cases[] = {
	        {"first byte allocates 256", 1, 1, 256},
	        {"256 bytes fit the first block", 256, 1, 256},
	        {"257th byte doubles", 257, 1, 512},
	        {"1000 single bytes", 1000, 1, 1024},
	        {"one 5000-byte put", 5000, 5000, 8192},
	        {"chunks of 100 up to 1100", 1100, 100, 2048},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct pbuf b = {0};
		uint8_t chunk[5000];
		size_t done = 0;

		while (done < cases[i].total) {
			size_t n = cases[i].chunk;
			if (n > cases[i].total - done)
				n = cases[i].total - done;
			for (size_t k = 0; k < n; k++)
				chunk[k] = (uint8_t)(done + k);
			pbuf_put(&b, chunk, n);
			done += n;
		}
		CHECK(!b.oom, "pbuf growth %s: no oom", cases[i].name);
		CHECK(b.len == cases[i].total, "pbuf growth %s: len %zu", cases[i].name, b.len);
		CHECK(b.cap == cases[i].cap, "pbuf growth %s: cap %zu, want %zu", cases[i].name,
		      b.cap, cases[i].cap);
		bool same = b.data != NULL;
		for (size_t k = 0; same && k < b.len; k++)
			same = b.data[k] == (uint8_t)k;
		CHECK(same, "pbuf growth %s: contents survive reallocation", cases[i].name);
		pbuf_free(&b);
		CHECK(b.data == NULL && b.len == 0 && b.cap == 0, "pbuf growth %s: free zeroes",
		      cases[i].name);
	}

	/* An empty put on a fresh buffer neither allocates nor fails. */
	struct pbuf e = {0};
	pbuf_put(&e, NULL, 0);
	CHECK(e.len == 0 && e.data == NULL && !e.oom, "pbuf empty put: nothing allocated");
	pbuf_free(&e);
}

static void test_pbuf_ints(void)
{
	enum { U8, U16, U32, STR };
	const struct {
		const char *name;
		int kind;
		uint32_t v;
		const char *s;
		const uint8_t *want;
		size_t want_len;
	} cases[] = {
	        {"u8", U8, 0xAB, NULL, BYTES(0xAB)},
	        {"u16 big-endian", U16, 0x1234, NULL, BYTES(0x12, 0x34)},
	        {"u16 high bit", U16, 0xFF00, NULL, BYTES(0xFF, 0x00)},
	        {"u32 big-endian", U32, 0x01020304, NULL, BYTES(0x01, 0x02, 0x03, 0x04)},
	        {"u32 protocol 3.0", U32, PROTO_VERSION_3_0, NULL, BYTES(0x00, 0x03, 0x00, 0x00)},
	        {"u32 -1", U32, 0xFFFFFFFF, NULL, BYTES(0xFF, 0xFF, 0xFF, 0xFF)},
	        {"str keeps its NUL", STR, 0, "ab", BYTES('a', 'b', 0)},
	        {"empty str is one NUL", STR, 0, "", BYTES(0)},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct pbuf b = {0};
		char h[64];

		switch (cases[i].kind) {
		case U8:
			pbuf_put_u8(&b, (uint8_t)cases[i].v);
			break;
		case U16:
			pbuf_put_u16(&b, (uint16_t)cases[i].v);
			break;
		case U32:
			pbuf_put_u32(&b, cases[i].v);
			break;
		default:
			pbuf_put_str(&b, cases[i].s);
			break;
		}
		CHECK(bytes_eq(b.data, b.len, cases[i].want, cases[i].want_len),
		      "pbuf put %s: got %s", cases[i].name, hex(b.data, b.len, h, sizeof(h)));
		pbuf_free(&b);
	}
}

static void test_pbuf_reset(void)
{
	struct pbuf b = {0};

	for (int i = 0; i < 300; i++)
		pbuf_put_u8(&b, 'x');
	uint8_t *data = b.data;
	size_t cap = b.cap;
	pbuf_reset(&b);
	CHECK(b.len == 0, "pbuf reset: len 0");
	CHECK(b.data == data && b.cap == cap, "pbuf reset: keeps the memory");
	pbuf_put_str(&b, "hi");
	CHECK(b.len == 3 && memcmp(b.data, "hi", 3) == 0, "pbuf reset: next put starts at 0");
	CHECK(b.data == data, "pbuf reset: a small put after reset does not reallocate");
	pbuf_free(&b);
}

static void test_msg_begin_end(void)
{
	const struct {
		const char *name;
		char type;
		size_t prefix; /* bytes already in the buffer */
		size_t body;   /* body bytes between begin and end */
	} cases[] = {
	        {"empty body", 'X', 0, 0},
	        {"one byte", 'Z', 0, 1},
	        {"after another message", 'Q', 6, 9},
	        {"large body", 'D', 3, 70000},
	        {"after an odd prefix", 'C', 1, 300},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct pbuf b = {0};

		for (size_t k = 0; k < cases[i].prefix; k++)
			pbuf_put_u8(&b, 0xEE);
		size_t off = proto_msg_begin(&b, cases[i].type);
		CHECK(off == cases[i].prefix, "msg %s: offset %zu", cases[i].name, off);
		for (size_t k = 0; k < cases[i].body; k++)
			pbuf_put_u8(&b, (uint8_t)k);
		proto_msg_end(&b, off);
		CHECK(b.len == cases[i].prefix + 5 + cases[i].body, "msg %s: total %zu",
		      cases[i].name, b.len);
		CHECK(b.data[off] == (uint8_t)cases[i].type, "msg %s: type byte", cases[i].name);
		CHECK(proto_get_u32(b.data + off + 1) == 4 + cases[i].body,
		      "msg %s: length word %u, want %zu", cases[i].name,
		      proto_get_u32(b.data + off + 1), 4 + cases[i].body);
		bool prefix_ok = true;
		for (size_t k = 0; k < cases[i].prefix; k++)
			prefix_ok = prefix_ok && b.data[k] == 0xEE;
		CHECK(prefix_ok, "msg %s: bytes before the message untouched", cases[i].name);
		pbuf_free(&b);
	}
}

/* ---- preader ---- */

static void test_preader(void)
{
	enum { U8, U16, U32, STR, RAW };
	const struct {
		const char *name;
		const char *body;
		size_t len;
		size_t skip; /* bytes consumed with preader_bytes first */
		int op;
		size_t n;           /* for RAW */
		uint32_t want;      /* for U8/U16/U32 */
		const char *want_s; /* for STR/RAW: expected bytes (NULL: the call returns NULL) */
		bool err;
		size_t left;
	} cases[] = {
	        {"u8", B("\x01\x02"), 0, U8, 0, 0x01, NULL, false, 1},
	        {"u8 at the end", B(""), 0, U8, 0, 0, NULL, true, 0},
	        {"u16 big-endian", B("\x12\x34\x56"), 0, U16, 0, 0x1234, NULL, false, 1},
	        {"u16 with one byte left", B("\x12"), 0, U16, 0, 0, NULL, true, 1},
	        {"u32 big-endian", B("\xDE\xAD\xBE\xEF"), 0, U32, 0, 0xDEADBEEF, NULL, false, 0},
	        {"u32 with three bytes left", B("\x01\x02\x03"), 0, U32, 0, 0, NULL, true, 3},
	        {"u32 after skip past the end", B("\x01\x02\x03\x04\x05"), 2, U32, 0, 0, NULL, true,
	         3},
	        {"str", B("ab\0cd"), 0, STR, 0, 0, "ab", false, 2},
	        {"empty str", B("\0x"), 0, STR, 0, 0, "", false, 1},
	        {"str ending the body", B("abc\0"), 0, STR, 0, 0, "abc", false, 0},
	        {"str missing NUL", B("abc"), 0, STR, 0, 0, NULL, true, 3},
	        {"second str missing NUL", B("ab\0cd"), 3, STR, 0, 0, NULL, true, 2},
	        {"str on an empty body", B(""), 0, STR, 0, 0, NULL, true, 0},
	        {"bytes, all", B("abcd"), 0, RAW, 4, 0, "abcd", false, 0},
	        {"bytes, some", B("abcd"), 1, RAW, 2, 0, "bc", false, 1},
	        {"zero bytes", B("ab"), 0, RAW, 0, 0, "", false, 2},
	        {"bytes past the end", B("abc"), 0, RAW, 4, 0, NULL, true, 3},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct preader r;
		uint32_t got = 0;
		const char *s = NULL;
		size_t s_len = 0;

		preader_init(&r, cases[i].body, cases[i].len);
		if (cases[i].skip)
			preader_bytes(&r, cases[i].skip);
		switch (cases[i].op) {
		case U8:
			got = preader_u8(&r);
			break;
		case U16:
			got = preader_u16(&r);
			break;
		case U32:
			got = preader_u32(&r);
			break;
		case STR:
			s = preader_str(&r);
			s_len = s ? strlen(s) : 0;
			break;
		default:
			s = (const char *)preader_bytes(&r, cases[i].n);
			s_len = cases[i].n;
			break;
		}
		if (cases[i].op == STR || cases[i].op == RAW) {
			if (cases[i].want_s)
				CHECK(s && s_len == strlen(cases[i].want_s) &&
				              memcmp(s, cases[i].want_s, s_len) == 0,
				      "preader %s: got \"%.*s\"", cases[i].name, s ? (int)s_len : 6,
				      s ? s : "(null)");
			else
				CHECK(s == NULL, "preader %s: NULL expected", cases[i].name);
		} else {
			CHECK(got == cases[i].want, "preader %s: got 0x%X", cases[i].name, got);
		}
		CHECK(r.err == cases[i].err, "preader %s: err=%d", cases[i].name, r.err);
		CHECK(r.left == cases[i].left, "preader %s: left %zu, want %zu", cases[i].name,
		      r.left, cases[i].left);
	}

	/* An error sticks: later reads fail even where enough bytes remain. */
	struct preader r;
	preader_init(&r, "\x01\x02", 2);
	CHECK(preader_u32(&r) == 0 && r.err, "preader sticky: u32 on 2 bytes fails");
	CHECK(preader_u8(&r) == 0 && r.err, "preader sticky: then u8 fails too");
	CHECK(preader_str(&r) == NULL, "preader sticky: and str");
}

/* ---- framing ---- */

static void test_frame_typed(void)
{
	const struct {
		const char *name;
		const char *p;
		size_t avail;
		uint32_t max;
		enum proto_frame want;
		char type;
		uint32_t len;
	} cases[] = {
	        {"nothing", B(""), 100, PROTO_FRAME_PARTIAL, 0, 0},
	        {"type byte only", B("Q"), 100, PROTO_FRAME_PARTIAL, 0, 0},
	        {"four bytes", B("Q\0\0\0"), 100, PROTO_FRAME_PARTIAL, 0, 0},
	        {"length 0", B("Q\0\0\0\0"), 100, PROTO_FRAME_BAD_LEN, 0, 0},
	        {"length 3", B("Q\0\0\0\x03"), 100, PROTO_FRAME_BAD_LEN, 0, 0},
	        {"length 4: empty body", B("X\0\0\0\x04"), 100, PROTO_FRAME_OK, 'X', 5},
	        {"ReadyForQuery", B("Z\0\0\0\x05I"), 100, PROTO_FRAME_OK, 'Z', 6},
	        {"length max + 1", B("D\0\0\0\x65"), 100, PROTO_FRAME_BAD_LEN, 0, 0},
	        {"length exactly max", B("D\0\0\0\x64"), 100, PROTO_FRAME_OK, 'D', 101},
	        {"length 0xFFFFFFFF", B("D\xFF\xFF\xFF\xFF"), 100, PROTO_FRAME_BAD_LEN, 0, 0},
	        {"header only of a longer message is OK", B("D\0\x01\0\0"), 1u << 20,
	         PROTO_FRAME_OK, 'D', 65537},
	        {"type byte with the high bit", B("\xF0\0\0\0\x04"), 100, PROTO_FRAME_OK,
	         (char)0xF0, 5},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char type = 0;
		uint32_t len = 0;
		enum proto_frame r = proto_frame_typed((const uint8_t *)cases[i].p, cases[i].avail,
		                                       cases[i].max, &type, &len);
		CHECK(r == cases[i].want, "frame_typed %s: result %d, want %d", cases[i].name, r,
		      cases[i].want);
		if (r == PROTO_FRAME_OK && cases[i].want == PROTO_FRAME_OK) {
			CHECK(type == cases[i].type, "frame_typed %s: type %c", cases[i].name,
			      type);
			CHECK(len == cases[i].len, "frame_typed %s: len %u, want %u", cases[i].name,
			      len, cases[i].len);
		}
	}
}

static void test_frame_startup(void)
{
	const struct {
		const char *name;
		const char *p;
		size_t avail;
		enum proto_frame want;
		uint32_t len; /* 0: not checked */
	} cases[] = {
	        {"nothing", B(""), PROTO_FRAME_PARTIAL, 0},
	        {"three bytes", B("\0\0\0"), PROTO_FRAME_PARTIAL, 0},
	        {"length 0", B("\0\0\0\0"), PROTO_FRAME_BAD_LEN, 0},
	        {"length 7", B("\0\0\0\x07\0\0\0"), PROTO_FRAME_BAD_LEN, 0},
	        {"length 10001", B("\0\0\x27\x11"), PROTO_FRAME_BAD_LEN, 0},
	        {"length 0x80000000", B("\x80\0\0\0"), PROTO_FRAME_BAD_LEN, 0},
	        {"length 10000, only the length here", B("\0\0\x27\x10"), PROTO_FRAME_PARTIAL,
	         10000},
	        {"SSLRequest, whole", B("\0\0\0\x08\x04\xD2\x16\x2F"), PROTO_FRAME_OK, 8},
	        {"SSLRequest, partial body", B("\0\0\0\x08\x04\xD2"), PROTO_FRAME_PARTIAL, 8},
	        {"CancelRequest, partial body", B("\0\0\0\x10\x04\xD2\x16\x2E\0\0"),
	         PROTO_FRAME_PARTIAL, 16},
	        {"more bytes than the packet", B("\0\0\0\x08\x04\xD2\x16\x2FQ\0\0\0"),
	         PROTO_FRAME_OK, 8},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint32_t len = 0;
		enum proto_frame r =
		        proto_frame_startup((const uint8_t *)cases[i].p, cases[i].avail, &len);
		CHECK(r == cases[i].want, "frame_startup %s: result %d, want %d", cases[i].name, r,
		      cases[i].want);
		if (cases[i].len)
			CHECK(len == cases[i].len, "frame_startup %s: len %u, want %u",
			      cases[i].name, len, cases[i].len);
	}
}

/* ---- the first packet ---- */

/* Writes length word + code + body into pkt; returns the packet length. */
static uint32_t make_packet(uint8_t *pkt, uint32_t code, const char *body, size_t body_len)
{
	uint32_t len = (uint32_t)(8 + body_len);

	pkt[0] = (uint8_t)(len >> 24);
	pkt[1] = (uint8_t)(len >> 16);
	pkt[2] = (uint8_t)(len >> 8);
	pkt[3] = (uint8_t)len;
	pkt[4] = (uint8_t)(code >> 24);
	pkt[5] = (uint8_t)(code >> 16);
	pkt[6] = (uint8_t)(code >> 8);
	pkt[7] = (uint8_t)code;
	if (body_len)
		memcpy(pkt + 8, body, body_len);
	return len;
}

static void test_parse_startup(void)
{
	static const char no_user[] = "no PostgreSQL user name specified in startup packet";
	static const char layout[] = "invalid startup packet layout";
	const struct {
		const char *name;
		uint32_t code;
		const char *body;
		size_t body_len;
		enum proto_startup_kind kind;
		const char *user, *database, *options, *replication;
		const char *error; /* expected error prefix; NULL: no error */
		size_t n_params;
		const char *params[8]; /* name, value, ... of the other parameters, in order */
		size_t n_pq;
		const char *pq[2];
		uint32_t cancel_pid, cancel_key;
	} cases[] = {
	        {.name = "libpq StartupMessage",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "alice\0"
	              "database\0"
	              "shop\0"
	              "options\0"
	              "-c search_path=app\0"
	              "application_name\0"
	              "psql\0"
	              "client_encoding\0"
	              "UTF8\0"
	              "\0"),
	         .kind = PROTO_STARTUP_MESSAGE,
	         .user = "alice",
	         .database = "shop",
	         .options = "-c search_path=app",
	         .n_params = 2,
	         .params = {"application_name", "psql", "client_encoding", "UTF8"}},
	        {.name = "JDBC-like order, DateStyle before user",
	         .code = PROTO_VERSION_3_0,
	         BODY("DateStyle\0"
	              "ISO\0"
	              "TimeZone\0"
	              "UTC\0"
	              "user\0"
	              "bob\0"
	              "database\0"
	              "db1\0"
	              "\0"),
	         .kind = PROTO_STARTUP_MESSAGE,
	         .user = "bob",
	         .database = "db1",
	         .n_params = 2,
	         .params = {"DateStyle", "ISO", "TimeZone", "UTC"}},
	        {.name = "database defaults to user",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "alice\0"
	              "\0"),
	         .kind = PROTO_STARTUP_MESSAGE,
	         .user = "alice",
	         .database = "alice"},
	        {.name = "empty database defaults to user",
	         .code = PROTO_VERSION_3_0,
	         BODY("database\0"
	              "\0"
	              "user\0"
	              "alice\0"
	              "\0"),
	         .kind = PROTO_STARTUP_MESSAGE,
	         .user = "alice",
	         .database = "alice"},
	        {.name = "missing user",
	         .code = PROTO_VERSION_3_0,
	         BODY("database\0"
	              "shop\0"
	              "\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = no_user},
	        {.name = "empty user",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "\0"
	              "\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = no_user},
	        {.name = "no parameters at all",
	         .code = PROTO_VERSION_3_0,
	         BODY("\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = no_user},
	        {.name = "header only",
	         .code = PROTO_VERSION_3_0,
	         BODY(""),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "missing final terminator",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "alice\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "last byte not NUL",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "alice"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "name without value",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "alice\0"
	              "foo\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "bytes after the terminator",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "alice\0"
	              "\0"
	              "\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "replication",
	         .code = PROTO_VERSION_3_0,
	         BODY("user\0"
	              "rep\0"
	              "replication\0"
	              "database\0"
	              "\0"),
	         .kind = PROTO_STARTUP_MESSAGE,
	         .user = "rep",
	         .database = "rep",
	         .replication = "database"},
	        {.name = "3.1 with _pq_ options",
	         .code = (3u << 16) | 1,
	         BODY("user\0"
	              "alice\0"
	              "_pq_.foo\0"
	              "on\0"
	              "application_name\0"
	              "x\0"
	              "\0"),
	         .kind = PROTO_STARTUP_MESSAGE,
	         .user = "alice",
	         .database = "alice",
	         .n_params = 1,
	         .params = {"application_name", "x"},
	         .n_pq = 1,
	         .pq = {"_pq_.foo"}},
	        {.name = "protocol 2.0",
	         .code = 2u << 16,
	         BODY("user\0"
	              "alice\0"
	              "\0"),
	         .kind = PROTO_STARTUP_BAD_VERSION},
	        {.name = "protocol 4.0",
	         .code = 4u << 16,
	         BODY("user\0"
	              "alice\0"
	              "\0"),
	         .kind = PROTO_STARTUP_BAD_VERSION},
	        {.name = "SSLRequest",
	         .code = PROTO_SSL_REQUEST_CODE,
	         BODY(""),
	         .kind = PROTO_STARTUP_SSL},
	        {.name = "SSLRequest with a body",
	         .code = PROTO_SSL_REQUEST_CODE,
	         BODY("\0\0\0\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "GSSENCRequest",
	         .code = PROTO_GSSENC_REQUEST_CODE,
	         BODY(""),
	         .kind = PROTO_STARTUP_GSSENC},
	        {.name = "CancelRequest",
	         .code = PROTO_CANCEL_REQUEST_CODE,
	         BODY("\0\0\x30\x39\x89\xAB\xCD\xEF"),
	         .kind = PROTO_STARTUP_CANCEL,
	         .cancel_pid = 12345,
	         .cancel_key = 0x89ABCDEF},
	        {.name = "CancelRequest too short",
	         .code = PROTO_CANCEL_REQUEST_CODE,
	         BODY("\0\0\x30\x39"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	        {.name = "CancelRequest too long",
	         .code = PROTO_CANCEL_REQUEST_CODE,
	         BODY("\0\0\x30\x39\x89\xAB\xCD\xEF\0\0\0\0"),
	         .kind = PROTO_STARTUP_INVALID,
	         .error = layout},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint8_t pkt[256];
		struct proto_startup st;
		uint32_t len = make_packet(pkt, cases[i].code, cases[i].body, cases[i].body_len);

		proto_parse_startup(pkt, len, &st);
		CHECK(st.kind == cases[i].kind, "startup %s: kind %d, want %d (%s)", cases[i].name,
		      st.kind, cases[i].kind, st.error ? st.error : "no error");
		CHECK(st.version == cases[i].code, "startup %s: version 0x%X", cases[i].name,
		      st.version);
		if (cases[i].error)
			CHECK(st.error && strncmp(st.error, cases[i].error,
			                          strlen(cases[i].error)) == 0,
			      "startup %s: error \"%s\"", cases[i].name,
			      st.error ? st.error : "(null)");
		else
			CHECK(st.error == NULL, "startup %s: unexpected error \"%s\"",
			      cases[i].name, st.error);
		if (cases[i].kind == PROTO_STARTUP_CANCEL) {
			CHECK(st.cancel_pid == cases[i].cancel_pid, "startup %s: pid %u",
			      cases[i].name, st.cancel_pid);
			CHECK(st.cancel_key == cases[i].cancel_key, "startup %s: key 0x%X",
			      cases[i].name, st.cancel_key);
		}
		if (cases[i].kind != PROTO_STARTUP_MESSAGE || st.kind != PROTO_STARTUP_MESSAGE)
			continue;
		CHECK_STR(st.user, cases[i].user, "startup %s: user", cases[i].name);
		CHECK_STR(st.database, cases[i].database, "startup %s: database", cases[i].name);
		CHECK_STR(st.options, cases[i].options, "startup %s: options", cases[i].name);
		CHECK_STR(st.replication, cases[i].replication, "startup %s: replication",
		          cases[i].name);
		CHECK(st.n_params == cases[i].n_params, "startup %s: %zu params, want %zu",
		      cases[i].name, st.n_params, cases[i].n_params);
		for (size_t k = 0; k < st.n_params && k < cases[i].n_params; k++) {
			CHECK_STR(st.names[k], cases[i].params[2 * k], "startup %s: param %zu name",
			          cases[i].name, k);
			CHECK_STR(st.values[k], cases[i].params[2 * k + 1],
			          "startup %s: param %zu value", cases[i].name, k);
		}
		CHECK(st.n_pq_options == cases[i].n_pq, "startup %s: %zu _pq_ options",
		      cases[i].name, st.n_pq_options);
		for (size_t k = 0; k < st.n_pq_options && k < cases[i].n_pq; k++)
			CHECK_STR(st.pq_options[k], cases[i].pq[k], "startup %s: _pq_ option %zu",
			          cases[i].name, k);
		/* The result points into the packet, not at copies. */
		CHECK((const uint8_t *)st.user > pkt && (const uint8_t *)st.user < pkt + len,
		      "startup %s: user points into the packet", cases[i].name);
	}
}

static void test_parse_startup_many_params(void)
{
	const struct {
		const char *name;
		size_t n; /* parameters besides user */
		enum proto_startup_kind kind;
	} cases[] = {
	        {"64 parameters", 64, PROTO_STARTUP_MESSAGE},
	        {"65 parameters", 65, PROTO_STARTUP_INVALID},
	        {"200 parameters", 200, PROTO_STARTUP_INVALID},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char body[4096];
		size_t o = 0;
		uint8_t pkt[4200];
		struct proto_startup st;

		memcpy(body, "user\0alice", 11);
		o = 11;
		for (size_t k = 0; k < cases[i].n; k++) {
			o += (size_t)snprintf(body + o, sizeof(body) - o, "p%zu", k) + 1;
			o += (size_t)snprintf(body + o, sizeof(body) - o, "v%zu", k) + 1;
		}
		body[o++] = 0;
		uint32_t len = make_packet(pkt, PROTO_VERSION_3_0, body, o);
		proto_parse_startup(pkt, len, &st);
		CHECK(st.kind == cases[i].kind, "startup %s: kind %d (%s)", cases[i].name, st.kind,
		      st.error ? st.error : "no error");
		if (cases[i].kind == PROTO_STARTUP_MESSAGE) {
			CHECK(st.n_params == cases[i].n, "startup %s: %zu params", cases[i].name,
			      st.n_params);
			CHECK_STR(st.names[63], "p63", "startup %s: last name", cases[i].name);
			CHECK_STR(st.values[63], "v63", "startup %s: last value", cases[i].name);
		} else {
			CHECK_STR(st.error, "too many startup parameters", "startup %s: error",
			          cases[i].name);
		}
	}
}

/* ---- options ---- */

struct collected {
	char text[256]; /* "name=value;" per setting */
};

static bool collect(const char *name, const char *value, void *arg)
{
	struct collected *c = arg;
	size_t o = strlen(c->text);

	if (strcmp(name, "reject_me") == 0)
		return false;
	snprintf(c->text + o, sizeof(c->text) - o, "%s=%s;", name, value);
	return true;
}

static void test_parse_options(void)
{
	const struct {
		const char *name;
		const char *options;
		bool ok;
		const char *settings; /* what fn saw, in order */
		const char *err;      /* exact error when !ok */
	} cases[] = {
	        {"two -c", "-c a=b -c c=d", true, "a=b;c=d;", NULL},
	        {"attached -c", "-ca=b", true, "a=b;", NULL},
	        {"long option, dash to underscore", "--a-b=c", true, "a_b=c;", NULL},
	        {"long option, dash in the value kept", "--a-b=c-d", true, "a_b=c-d;", NULL},
	        {"-c name with a dash", "-c my-opt=x", true, "my_opt=x;", NULL},
	        {"escaped space", "-c search_path=a,\\ b", true, "search_path=a, b;", NULL},
	        {"escaped backslash", "-c a=x\\\\y", true, "a=x\\y;", NULL},
	        {"escaped ordinary character", "-c a=\\x", true, "a=x;", NULL},
	        {"trailing backslash dropped", "-c a=b\\", true, "a=b;", NULL},
	        {"lone trailing backslash is an empty word", "-c a=b \\", false, "a=b;",
	         "invalid command-line argument for server process: "},
	        {"escaped tab", "-c a=x\\\ty", true, "a=x\ty;", NULL},
	        {"value containing '='", "-c a=b=c", true, "a=b=c;", NULL},
	        {"empty value", "-c a=", true, "a=;", NULL},
	        {"extra whitespace and tabs", "  -c a=1\t\t--b=2  \n", true, "a=1;b=2;", NULL},
	        {"mixed forms", "-c x=1 -cy=2 --z=3", true, "x=1;y=2;z=3;", NULL},
	        {"-c takes the next word even if it starts with -", "-c -x=1", true, "_x=1;", NULL},
	        {"empty", "", true, "", NULL},
	        {"only spaces", "   ", true, "", NULL},
	        {"bad option -x", "-x", false, "",
	         "invalid command-line argument for server process: -x"},
	        {"plain word", "foo", false, "",
	         "invalid command-line argument for server process: foo"},
	        {"-c without argument", "-c", false, "",
	         "invalid command-line argument for server process: -c"},
	        {"-c =x", "-c =x", false, "", "unrecognized configuration parameter \"\""},
	        {"-c without =", "-c a", false, "", "-c a requires a value"},
	        {"-- without =", "--a", false, "", "--a requires a value"},
	        {"callback refuses", "-c reject_me=1", false, "", "invalid startup option"},
	        {"good then bad", "-c a=1 -x", false, "a=1;",
	         "invalid command-line argument for server process: -x"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct collected c = {{0}};
		char errbuf[256] = "";
		const char *err = errbuf;
		bool ok =
		        proto_parse_options(cases[i].options, collect, &c, errbuf, sizeof(errbuf));

		CHECK(ok == cases[i].ok, "options %s: ok=%d (%s)", cases[i].name, ok,
		      err ? err : "no error");
		CHECK_STR(c.text, cases[i].settings, "options %s: settings \"%s\", want \"%s\"",
		          cases[i].name, c.text, cases[i].settings);
		if (!cases[i].ok)
			CHECK_STR(err, cases[i].err, "options %s: error \"%s\"", cases[i].name,
			          err ? err : "(null)");
	}
}

/* ---- ErrorResponse ---- */

/* PostgreSQL 15's body for: INSERT INTO t VALUES (1) -- twice, with a primary key. */
#define UNIQUE_VIOLATION                                                                           \
	"SERROR\0"                                                                                 \
	"VERROR\0"                                                                                 \
	"C23505\0"                                                                                 \
	"Mduplicate key value violates unique constraint \"t_pkey\"\0"                             \
	"DKey (id)=(1) already exists.\0"                                                          \
	"spublic\0"                                                                                \
	"tt\0"                                                                                     \
	"nt_pkey\0"                                                                                \
	"Fnbtinsert.c\0"                                                                           \
	"L664\0"                                                                                   \
	"R_bt_check_unique\0"                                                                      \
	"\0"

static void test_parse_error(void)
{
	const struct {
		const char *name;
		const char *body;
		size_t len;
		bool ok;
		struct proto_error want;
	} cases[] = {
	        {"unique violation",
	         B(UNIQUE_VIOLATION),
	         true,
	         {.severity = "ERROR",
	          .severity_nl = "ERROR",
	          .sqlstate = "23505",
	          .message = "duplicate key value violates unique constraint \"t_pkey\"",
	          .detail = "Key (id)=(1) already exists.",
	          .schema = "public",
	          .table = "t",
	          .constraint = "t_pkey"}},
	        {"not-null violation with column",
	         B("SERROR\0"
	           "VERROR\0"
	           "C23502\0"
	           "Mnull value in column \"name\" of relation \"t\" violates not-null "
	           "constraint\0"
	           "DFailing row contains (1, null).\0"
	           "spublic\0"
	           "tt\0"
	           "cname\0"
	           "FexecMain.c\0"
	           "L1972\0"
	           "RExecConstraints\0"
	           "\0"),
	         true,
	         {.severity = "ERROR",
	          .severity_nl = "ERROR",
	          .sqlstate = "23502",
	          .message = "null value in column \"name\" of relation \"t\" violates not-null "
	                     "constraint",
	          .detail = "Failing row contains (1, null).",
	          .schema = "public",
	          .table = "t",
	          .column = "name"}},
	        {"undefined function with hint and position",
	         B("SERROR\0"
	           "VERROR\0"
	           "C42883\0"
	           "Mfunction foo() does not exist\0"
	           "HNo function matches the given name and argument types.\0"
	           "P8\0"
	           "Fparse_func.c\0"
	           "L636\0"
	           "RParseFuncOrColumn\0"
	           "\0"),
	         true,
	         {.severity = "ERROR",
	          .severity_nl = "ERROR",
	          .sqlstate = "42883",
	          .message = "function foo() does not exist",
	          .hint = "No function matches the given name and argument types."}},
	        {"localized FATAL",
	         B("SFATAL\xC3\x89\0"
	           "VFATAL\0"
	           "C28P01\0"
	           "Mpassword authentication failed for user \"bob\"\0"
	           "Fauth.c\0"
	           "L326\0"
	           "Rauth_failed\0"
	           "\0"),
	         true,
	         {.severity = "FATAL\xC3\x89",
	          .severity_nl = "FATAL",
	          .sqlstate = "28P01",
	          .message = "password authentication failed for user \"bob\""}},
	        {"unknown field codes ignored",
	         B("Xwhatever\0"
	           "C57014\0"
	           "zmore\0"
	           "Mcanceling statement due to user request\0"
	           "\0"),
	         true,
	         {.sqlstate = "57014", .message = "canceling statement due to user request"}},
	        {"no fields", B("\0"), true, {0}},
	        {"empty body", B(""), false, {0}},
	        {"code byte only", B("S"), false, {0}},
	        {"truncated inside a value",
	         B("SERROR\0"
	           "C235"),
	         false,
	         {0}},
	        {"missing final terminator",
	         B("SERROR\0"
	           "C23505\0"),
	         false,
	         {0}},
	        {"unique violation cut short",
	         UNIQUE_VIOLATION,
	         sizeof(UNIQUE_VIOLATION) - 1 - 20,
	         false,
	         {0}},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct proto_error e;
		bool ok = proto_parse_error((const uint8_t *)cases[i].body, cases[i].len, &e);
		const struct proto_error *w = &cases[i].want;

		CHECK(ok == cases[i].ok, "error %s: ok=%d", cases[i].name, ok);
		if (!ok || !cases[i].ok)
			continue;
		CHECK_STR(e.severity, w->severity, "error %s: S", cases[i].name);
		CHECK_STR(e.severity_nl, w->severity_nl, "error %s: V", cases[i].name);
		CHECK_STR(e.sqlstate, w->sqlstate, "error %s: C", cases[i].name);
		CHECK_STR(e.message, w->message, "error %s: M", cases[i].name);
		CHECK_STR(e.detail, w->detail, "error %s: D", cases[i].name);
		CHECK_STR(e.hint, w->hint, "error %s: H", cases[i].name);
		CHECK_STR(e.schema, w->schema, "error %s: s", cases[i].name);
		CHECK_STR(e.table, w->table, "error %s: t", cases[i].name);
		CHECK_STR(e.column, w->column, "error %s: c", cases[i].name);
		CHECK_STR(e.constraint, w->constraint, "error %s: n", cases[i].name);
	}
}

/* ---- builders ---- */

static void test_build_error_roundtrip(void)
{
	const struct {
		const char *name;
		bool notice;
		const char *severity, *sqlstate, *message, *detail, *hint;
	} cases[] = {
	        {"error with detail and hint", false, "FATAL", "08P01", "bad startup packet",
	         "the length was 3", "upgrade your driver"},
	        {"error without detail or hint", false, "ERROR", "53300",
	         "no more connections allowed (max_client_conn)", NULL, NULL},
	        {"error with an empty message", false, "ERROR", "XX000", "", NULL, NULL},
	        {"notice", true, "NOTICE", "00000", "pgtide is shutting down", NULL, NULL},
	        {"warning", true, "WARNING", "01000", "pool is full", NULL, NULL},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct pbuf b = {0};
		struct proto_error e;
		char type = 0;
		uint32_t len = 0;

		pbuf_put_u8(&b, 0xEE); /* builders append: the message starts at offset 1 */
		if (cases[i].notice)
			proto_build_notice(&b, cases[i].severity, cases[i].sqlstate,
			                   cases[i].message);
		else
			proto_build_error(&b, cases[i].severity, cases[i].sqlstate,
			                  cases[i].message, cases[i].detail, cases[i].hint);
		enum proto_frame fr =
		        proto_frame_typed(b.data + 1, b.len - 1, 1u << 20, &type, &len);
		CHECK(fr == PROTO_FRAME_OK, "build error %s: frames", cases[i].name);
		CHECK(type == (cases[i].notice ? 'N' : 'E'), "build error %s: type %c",
		      cases[i].name, type);
		CHECK(len == b.len - 1, "build error %s: length %u covers the buffer (%zu)",
		      cases[i].name, len, b.len - 1);
		bool ok = fr == PROTO_FRAME_OK && proto_parse_error(b.data + 6, len - 5, &e);
		CHECK(ok, "build error %s: parses back", cases[i].name);
		if (ok) {
			CHECK_STR(e.severity, cases[i].severity, "build error %s: S",
			          cases[i].name);
			CHECK_STR(e.severity_nl, cases[i].severity, "build error %s: V",
			          cases[i].name);
			CHECK_STR(e.sqlstate, cases[i].sqlstate, "build error %s: C",
			          cases[i].name);
			CHECK_STR(e.message, cases[i].message, "build error %s: M", cases[i].name);
			CHECK_STR(e.detail, cases[i].detail, "build error %s: D", cases[i].name);
			CHECK_STR(e.hint, cases[i].hint, "build error %s: H", cases[i].name);
		}
		pbuf_free(&b);
	}
}

static void test_parameter_status(void)
{
	const struct {
		const char *name, *value;
	} rt[] = {
	        {"TimeZone", "UTC"},
	        {"application_name", ""},
	        {"search_path", "\"$user\", public"},
	        {"server_version", "15.4 (Debian 15.4-1.pgdg120+1)"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rt); i++) {
		struct pbuf b = {0};
		const char *name = NULL, *value = NULL;
		char type = 0;
		uint32_t len = 0;

		proto_build_parameter_status(&b, rt[i].name, rt[i].value);
		CHECK(proto_frame_typed(b.data, b.len, 1000, &type, &len) == PROTO_FRAME_OK &&
		              type == 'S' && len == b.len,
		      "parameter_status %s: frame", rt[i].name);
		CHECK(proto_parse_parameter_status(b.data + 5, b.len - 5, &name, &value),
		      "parameter_status %s: parses back", rt[i].name);
		CHECK_STR(name, rt[i].name, "parameter_status %s: name", rt[i].name);
		CHECK_STR(value, rt[i].value, "parameter_status %s: value", rt[i].name);
		pbuf_free(&b);
	}

	const struct {
		const char *name;
		const char *body;
		size_t len;
	} bad[] = {
	        {"empty body", B("")},
	        {"name only", B("TimeZone\0")},
	        {"value without NUL", B("TimeZone\0"
	                                "UTC")},
	        {"trailing byte", B("TimeZone\0"
	                            "UTC\0"
	                            "x")},
	        {"a third string", B("TimeZone\0"
	                             "UTC\0"
	                             "x\0")},
	};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		const char *name, *value;
		CHECK(!proto_parse_parameter_status((const uint8_t *)bad[i].body, bad[i].len, &name,
		                                    &value),
		      "parameter_status %s: refused", bad[i].name);
	}
}

static void build_ready_idle(struct pbuf *b)
{
	proto_build_ready(b, 'I');
}
static void build_ready_in_tx(struct pbuf *b)
{
	proto_build_ready(b, 'T');
}
static void build_terminate(struct pbuf *b)
{
	proto_build_terminate(b);
}
static void build_backend_key(struct pbuf *b)
{
	proto_build_backend_key(b, 0x01020304, 0xA0B0C0D0);
}
static void build_query(struct pbuf *b)
{
	proto_build_query(b, "SELECT 1");
}
static void build_command_complete(struct pbuf *b)
{
	proto_build_command_complete(b, "SHOW");
}
static void build_parameter_status(struct pbuf *b)
{
	proto_build_parameter_status(b, "a", "b");
}
static void build_auth_ok(struct pbuf *b)
{
	proto_build_auth(b, 0, NULL, 0);
}
static void build_auth_sasl(struct pbuf *b)
{
	proto_build_auth(b, 10, "SCRAM-SHA-256\0", 15);
}
static void build_negotiate_none(struct pbuf *b)
{
	proto_build_negotiate_version(b, 0, NULL, 0);
}
static void build_negotiate_two(struct pbuf *b)
{
	static const char *const opts[] = {"_pq_.a", "_pq_.bc"};
	proto_build_negotiate_version(b, 0, opts, 2);
}
static void build_row_description(struct pbuf *b)
{
	static const char *const names[] = {"n", "s"};
	static const uint32_t oids[] = {23, 25};
	proto_build_row_description(b, names, oids, 2);
}
static void build_row_description_int8(struct pbuf *b)
{
	static const char *const names[] = {"x"};
	static const uint32_t oids[] = {20};
	proto_build_row_description(b, names, oids, 1);
}
static void build_data_row(struct pbuf *b)
{
	static const char *const values[] = {"42", NULL, ""};
	proto_build_data_row(b, values, 3);
}
static void build_data_row_empty(struct pbuf *b)
{
	proto_build_data_row(b, NULL, 0);
}

static void test_build_bytes(void)
{
	const struct {
		const char *name;
		void (*build)(struct pbuf *b);
		const uint8_t *want;
		size_t want_len;
	} cases[] = {
	        {"ReadyForQuery idle", build_ready_idle, BYTES(0x5A, 0, 0, 0, 5, 'I')},
	        {"ReadyForQuery in transaction", build_ready_in_tx, BYTES('Z', 0, 0, 0, 5, 'T')},
	        {"Terminate", build_terminate, BYTES(0x58, 0, 0, 0, 4)},
	        {"BackendKeyData", build_backend_key,
	         BYTES('K', 0, 0, 0, 12, 0x01, 0x02, 0x03, 0x04, 0xA0, 0xB0, 0xC0, 0xD0)},
	        {"Query", build_query,
	         BYTES('Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0)},
	        {"CommandComplete", build_command_complete,
	         BYTES('C', 0, 0, 0, 9, 'S', 'H', 'O', 'W', 0)},
	        {"ParameterStatus", build_parameter_status, BYTES('S', 0, 0, 0, 8, 'a', 0, 'b', 0)},
	        {"AuthenticationOk", build_auth_ok, BYTES('R', 0, 0, 0, 8, 0, 0, 0, 0)},
	        {"AuthenticationSASL", build_auth_sasl,
	         BYTES('R', 0, 0, 0, 23, 0, 0, 0, 10, 'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A',
	               '-', '2', '5', '6', 0, 0)},
	        {"NegotiateProtocolVersion, no options", build_negotiate_none,
	         BYTES('v', 0, 0, 0, 12, 0, 3, 0, 0, 0, 0, 0, 0)},
	        {"NegotiateProtocolVersion, two options", build_negotiate_two,
	         BYTES('v', 0, 0, 0, 27, 0, 3, 0, 0, 0, 0, 0, 2, '_', 'p', 'q', '_', '.', 'a', 0,
	               '_', 'p', 'q', '_', '.', 'b', 'c', 0)},
	        {"RowDescription int4 + text", build_row_description,
	         BYTES('T', 0, 0, 0, 46, 0, 2,
	               /* n */ 'n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xFF, 0xFF, 0xFF, 0xFF,
	               0, 0,
	               /* s */ 's', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	               0xFF, 0, 0)},
	        {"RowDescription int8", build_row_description_int8,
	         BYTES('T', 0, 0, 0, 26, 0, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 8, 0xFF,
	               0xFF, 0xFF, 0xFF, 0, 0)},
	        {"DataRow with NULL", build_data_row,
	         BYTES('D', 0, 0, 0, 20, 0, 3, 0, 0, 0, 2, '4', '2', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0,
	               0, 0)},
	        {"DataRow with no columns", build_data_row_empty, BYTES('D', 0, 0, 0, 6, 0, 0)},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct pbuf b = {0};
		char h[256], w[256];

		cases[i].build(&b);
		CHECK(bytes_eq(b.data, b.len, cases[i].want, cases[i].want_len),
		      "build %s:\n  got  %s\n  want %s", cases[i].name,
		      hex(b.data, b.len, h, sizeof(h)),
		      hex(cases[i].want, cases[i].want_len, w, sizeof(w)));

		/* Every builder's output frames as exactly one message. */
		char type = 0;
		uint32_t len = 0;
		CHECK(proto_frame_typed(b.data, b.len, 1000, &type, &len) == PROTO_FRAME_OK &&
		              len == b.len,
		      "build %s: frames as one whole message", cases[i].name);
		pbuf_free(&b);
	}
}

int main(void)
{
	test_pbuf_growth();
	test_pbuf_ints();
	test_pbuf_reset();
	test_msg_begin_end();
	test_preader();
	test_frame_typed();
	test_frame_startup();
	test_parse_startup();
	test_parse_startup_many_params();
	test_parse_options();
	test_parse_error();
	test_build_error_roundtrip();
	test_parameter_status();
	test_build_bytes();
	UNIT_DONE();
}
