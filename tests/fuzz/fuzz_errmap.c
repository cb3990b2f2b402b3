/*
 * The error classifier on arbitrary ErrorResponse bodies: proto_parse_error, then
 * errmap_classify, whose JSON must always be valid (checked here: well-formed UTF-8, no raw
 * control characters, balanced outside strings), and errmap_add_field on the framed message.
 */
#include "fuzz.h"

#include "pgtide/errmap.h"
#include "pgtide/proto.h"

/* Length of the UTF-8 sequence at p (n bytes left), or 0 if it is not well-formed. */
static size_t utf8_len(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t k;
	uint32_t cp, min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		k = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

static void check_json(const struct pbuf *b)
{
	const uint8_t *p = b->data;
	size_t n = b->len;
	/* The builder may or may not count a trailing NUL. */
	while (n > 0 && p[n - 1] == 0)
		n--;
	FUZZ_ASSERT(n >= 2 && p[0] == '{' && p[n - 1] == '}', "the JSON is an object");
	int depth = 0;
	bool in_str = false;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_len(p + i, n - i);
		FUZZ_ASSERT(k > 0, "the JSON is valid UTF-8");
		uint8_t c = p[i];
		FUZZ_ASSERT(c >= 0x20, "no raw control character in the JSON");
		if (in_str) {
			if (c == '\\') {
				FUZZ_ASSERT(i + 1 < n && strchr("\"\\/bfnrtu", p[i + 1]),
				            "a valid escape in a JSON string");
				i += 2;
				continue;
			}
			if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			depth--;
			FUZZ_ASSERT(depth >= 0, "balanced JSON");
		}
		i += k;
	}
	FUZZ_ASSERT(!in_str && depth == 0, "the JSON ends every string and object");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	uint8_t *body = fuzz_dup(data, size);
	if (!body)
		return 0;
	struct proto_error e;
	if (proto_parse_error(body, size, &e)) {
		struct pbuf json = {0};
		enum errmap_kind k = errmap_classify(&e, &json);
		FUZZ_ASSERT((unsigned)k < ERRMAP_N_KINDS, "a known kind");
		FUZZ_ASSERT(errmap_kind_name(k) != NULL, "every kind has a name");
		FUZZ_ASSERT(k == errmap_kind_of(e.sqlstate), "classify agrees with kind_of");
		if (!json.oom)
			check_json(&json);
		pbuf_free(&json);
	}
	free(body);

	/* The same bytes as the body of a framed ErrorResponse. */
	uint8_t *msg = malloc(size + PROTO_HEADER_LEN);
	if (!msg)
		return 0;
	msg[0] = 'E';
	uint32_t l = (uint32_t)size + 4;
	msg[1] = (uint8_t)(l >> 24);
	msg[2] = (uint8_t)(l >> 16);
	msg[3] = (uint8_t)(l >> 8);
	msg[4] = (uint8_t)l;
	memcpy(msg + PROTO_HEADER_LEN, data, size);
	struct pbuf out = {0};
	if (errmap_add_field(msg, (uint32_t)size + PROTO_HEADER_LEN, 'K', "{\"kind\":\"postgres\"}",
	                     &out)) {
		struct proto_error e2;
		FUZZ_ASSERT(out.len ==
		                    size + PROTO_HEADER_LEN + 2 + strlen("{\"kind\":\"postgres\"}"),
		            "one field added");
		FUZZ_ASSERT(proto_parse_error(out.data + PROTO_HEADER_LEN,
		                              out.len - PROTO_HEADER_LEN, &e2),
		            "the result parses");
	}
	pbuf_free(&out);
	free(msg);
	return 0;
}
