/*
 * Message framing: the input is a byte stream of typed messages, walked with proto_frame_typed
 * as the io pump does. Each framed message is copied alone (so a read past it is caught) and
 * the body handed to the parser of its type: ErrorResponse/NoticeResponse, ParameterStatus, a
 * pin probe DataRow, and the generic reader.
 */
#include "fuzz.h"

#include "pgtide/errmap.h"
#include "pgtide/pin.h"
#include "pgtide/prepared.h"
#include "pgtide/proto.h"

/* Big enough for any seed, small enough that a length word cannot ask for much. */
#define FUZZ_MAX_MSG (1u << 20)

static void check_str_in(const char *s, const uint8_t *body, size_t len, const char *what)
{
	if (!s)
		return;
	FUZZ_ASSERT((const uint8_t *)s >= body && (const uint8_t *)s < body + len, what);
	FUZZ_ASSERT(memchr(s, 0, (size_t)(body + len - (const uint8_t *)s)) != NULL, what);
}

static void one_message(char type, const uint8_t *msg, uint32_t len)
{
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t blen = len - PROTO_HEADER_LEN;

	switch (type) {
	case 'E':
	case 'N': {
		struct proto_error e;
		if (proto_parse_error(body, blen, &e)) {
			check_str_in(e.severity, body, blen, "severity in the body");
			check_str_in(e.sqlstate, body, blen, "sqlstate in the body");
			check_str_in(e.message, body, blen, "message in the body");
			check_str_in(e.constraint, body, blen, "constraint in the body");
			struct pbuf json = {0};
			(void)errmap_classify(&e, &json);
			pbuf_free(&json);
		}
		(void)prep_is_cached_plan_error(body, blen);
		struct pbuf out = {0};
		if (errmap_add_field(msg, len, 'K', "{}", &out)) {
			uint32_t t2 = 0;
			char ty2 = 0;
			FUZZ_ASSERT(proto_frame_typed(out.data, out.len, UINT32_MAX, &ty2, &t2) ==
			                            PROTO_FRAME_OK &&
			                    t2 == out.len && ty2 == 'E',
			            "errmap_add_field writes one framed ErrorResponse");
		}
		pbuf_free(&out);
		break;
	}
	case 'S': {
		const char *name, *value;
		if (proto_parse_parameter_status(body, blen, &name, &value)) {
			check_str_in(name, body, blen, "ParameterStatus name in the body");
			check_str_in(value, body, blen, "ParameterStatus value in the body");
		}
		break;
	}
	case 'D': {
		struct pin_row r;
		if (pin_read_row(body, (uint32_t)blen, &r)) {
			FUZZ_ASSERT(r.name_len <= blen && r.value_len <= blen,
			            "probe row fields within the body");
			FUZZ_ASSERT(r.name >= (const char *)body &&
			                    r.name + r.name_len <= (const char *)body + blen,
			            "probe row name within the body");
			FUZZ_ASSERT(r.value >= (const char *)body &&
			                    r.value + r.value_len <= (const char *)body + blen,
			            "probe row value within the body");
		}
		break;
	}
	case 'C':
		if (blen > 0 && memchr(body, 0, blen))
			(void)pin_tag_effect((const char *)body, strlen((const char *)body));
		break;
	default: {
		/* The generic reader as the pumps use it: a mix of fields until it runs dry. */
		struct preader r;
		preader_init(&r, body, blen);
		for (size_t i = 0; !r.err && i < blen; i++) {
			switch (body[i] & 3) {
			case 0:
				(void)preader_u8(&r);
				break;
			case 1:
				(void)preader_u16(&r);
				break;
			case 2:
				(void)preader_u32(&r);
				break;
			default:
				(void)preader_str(&r);
				break;
			}
		}
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (off < size) {
		char type = 0;
		uint32_t len = 0;
		enum proto_frame f =
		        proto_frame_typed(data + off, size - off, FUZZ_MAX_MSG, &type, &len);
		if (f != PROTO_FRAME_OK)
			break;
		FUZZ_ASSERT(len >= PROTO_HEADER_LEN && len <= FUZZ_MAX_MSG + 1,
		            "framed length within bounds");
		if (len > size - off)
			break; /* the pump waits for the rest */
		uint8_t *msg = fuzz_dup(data + off, len);
		if (!msg)
			break;
		one_message(type, msg, len);
		free(msg);
		off += len;
	}
	return 0;
}
