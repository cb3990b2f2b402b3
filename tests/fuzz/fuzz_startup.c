/*
 * The first packet of a connection: proto_frame_startup on the raw bytes, then, as the
 * listener does, proto_parse_startup on a copy of the framed packet, and proto_parse_options
 * on a StartupMessage's "options".
 */
#include "fuzz.h"

#include "pgtide/proto.h"

static bool count_option(const char *name, const char *value, void *arg)
{
	FUZZ_ASSERT(name && value, "options: a setting has a name and a value");
	(void)strlen(name);
	(void)strlen(value);
	(*(size_t *)arg)++;
	return true;
}

static void check_in(const char *s, const uint8_t *p, uint32_t len, const char *what)
{
	if (!s)
		return;
	FUZZ_ASSERT((const uint8_t *)s >= p && (const uint8_t *)s < p + len, what);
	FUZZ_ASSERT(memchr(s, 0, (size_t)(p + len - (const uint8_t *)s)) != NULL, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t len = 0;
	enum proto_frame f = proto_frame_startup(data, size, &len);
	if (f == PROTO_FRAME_BAD_LEN)
		return 0;
	if (f == PROTO_FRAME_PARTIAL) {
		/* A short packet is parsed too: the parser must not trust the length word. */
		if (size < 4 || size > PROTO_STARTUP_MAX)
			return 0;
		len = (uint32_t)size;
	}
	FUZZ_ASSERT(len <= size && len <= PROTO_STARTUP_MAX, "framed length within the input");

	uint8_t *p = fuzz_dup(data, len);
	if (!p)
		return 0;
	struct proto_startup st;
	proto_parse_startup(p, len, &st);
	switch (st.kind) {
	case PROTO_STARTUP_MESSAGE:
		FUZZ_ASSERT(st.user && st.user[0] && st.database && st.database[0],
		            "a StartupMessage has a user and a database");
		FUZZ_ASSERT(st.n_params <= PROTO_STARTUP_MAX_PARAMS &&
		                    st.n_pq_options <= PROTO_STARTUP_MAX_PARAMS,
		            "parameter counts within the arrays");
		check_in(st.user, p, len, "user points into the packet");
		check_in(st.database, p, len, "database points into the packet");
		check_in(st.options, p, len, "options points into the packet");
		check_in(st.replication, p, len, "replication points into the packet");
		for (size_t i = 0; i < st.n_params; i++) {
			check_in(st.names[i], p, len, "parameter name in the packet");
			check_in(st.values[i], p, len, "parameter value in the packet");
		}
		for (size_t i = 0; i < st.n_pq_options; i++)
			check_in(st.pq_options[i], p, len, "_pq_ option in the packet");
		if (st.options) {
			char err[256];
			size_t n = 0;
			if (!proto_parse_options(st.options, count_option, &n, err, sizeof(err)))
				FUZZ_ASSERT(memchr(err, 0, sizeof(err)),
				            "options error is a string");
		}
		break;
	case PROTO_STARTUP_INVALID:
		FUZZ_ASSERT(st.error != NULL, "an invalid packet says why");
		break;
	case PROTO_STARTUP_CANCEL:
		FUZZ_ASSERT(len == 16, "a CancelRequest is 16 bytes");
		break;
	case PROTO_STARTUP_SSL:
	case PROTO_STARTUP_GSSENC:
		FUZZ_ASSERT(len == 8, "an SSLRequest/GSSENCRequest is 8 bytes");
		break;
	default:
		break;
	}
	free(p);

	/* The options splitter on its own, on the whole input as one string. */
	char *s = fuzz_strdup(data, size);
	if (s) {
		char err[256];
		size_t n = 0;
		(void)proto_parse_options(s, count_option, &n, err, sizeof(err));
		free(s);
	}
	return 0;
}
