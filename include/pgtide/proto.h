/* PostgreSQL protocol 3.0: message framing, field readers and message builders. Pure: no I/O. */
#ifndef PGTIDE_PROTO_H
#define PGTIDE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Request codes carried in the first (untyped) packet instead of a protocol version. */
#define PROTO_VERSION_3_0         196608u /* 3 << 16 */
#define PROTO_CANCEL_REQUEST_CODE 80877102u
#define PROTO_SSL_REQUEST_CODE    80877103u
#define PROTO_GSSENC_REQUEST_CODE 80877104u

#define PROTO_STARTUP_MAX 10000u /* PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PROTO_HEADER_LEN  5u     /* type byte + int32 length */

/* A growable byte buffer for building messages. Owns data; zero-initialise before use. */
struct pbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
	bool oom; /* set if an allocation failed; later appends become no-ops */
};

void pbuf_reserve(struct pbuf *b, size_t extra);
void pbuf_put(struct pbuf *b, const void *p, size_t n);
void pbuf_put_u8(struct pbuf *b, uint8_t v);
void pbuf_put_u16(struct pbuf *b, uint16_t v);
void pbuf_put_u32(struct pbuf *b, uint32_t v);
void pbuf_put_str(struct pbuf *b, const char *s); /* with its terminating NUL */
void pbuf_reset(struct pbuf *b);                  /* len = 0, keeps the memory */
void pbuf_free(struct pbuf *b);

/* Starts a typed message (type byte + length placeholder); returns its offset for msg_end. */
size_t proto_msg_begin(struct pbuf *b, char type);
/* Fills in the length of the message started at off. */
void proto_msg_end(struct pbuf *b, size_t off);

/* A reader over one message body. Reads past the end set err and return zero/empty. */
struct preader {
	const uint8_t *p;
	size_t left;
	bool err;
};

void preader_init(struct preader *r, const void *body, size_t len);
uint8_t preader_u8(struct preader *r);
uint16_t preader_u16(struct preader *r);
uint32_t preader_u32(struct preader *r);
/* A NUL-terminated string inside the body; NULL (and err) if there is no NUL. */
const char *preader_str(struct preader *r);
/* n raw bytes; NULL (and err) if fewer remain. */
const uint8_t *preader_bytes(struct preader *r, size_t n);

/* Reads a big-endian uint32 from p. */
static inline uint32_t proto_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Result of examining the head of a byte stream for one typed message. */
enum proto_frame {
	PROTO_FRAME_OK = 0,  /* *type and *len (total, header included) are set */
	PROTO_FRAME_PARTIAL, /* fewer than 5 bytes available */
	PROTO_FRAME_BAD_LEN, /* length field < 4 or > max */
};

/* Examines a typed message header at p (avail bytes). len includes the type byte. */
enum proto_frame proto_frame_typed(const uint8_t *p, size_t avail, uint32_t max_len, char *type,
                                   uint32_t *len);

/* ---- the first packet (StartupMessage, SSLRequest, CancelRequest, ...) ---- */

enum proto_startup_kind {
	PROTO_STARTUP_MESSAGE,     /* protocol 3.x StartupMessage */
	PROTO_STARTUP_SSL,         /* SSLRequest */
	PROTO_STARTUP_GSSENC,      /* GSSENCRequest */
	PROTO_STARTUP_CANCEL,      /* CancelRequest */
	PROTO_STARTUP_BAD_VERSION, /* an unsupported protocol major version */
	PROTO_STARTUP_INVALID,     /* malformed: bad length, no terminator, missing user, ... */
};

/* A parsed StartupMessage parameter list (pointers into the packet body). */
#define PROTO_STARTUP_MAX_PARAMS 64
struct proto_startup {
	enum proto_startup_kind kind;
	uint32_t version;        /* the version or request code */
	const char *user;        /* "user" (required) */
	const char *database;    /* "database", defaults to user */
	const char *options;     /* "options", or NULL */
	const char *replication; /* "replication", or NULL */
	size_t n_params;         /* every other name/value pair, in order */
	const char *names[PROTO_STARTUP_MAX_PARAMS];
	const char *values[PROTO_STARTUP_MAX_PARAMS];
	size_t n_pq_options; /* "_pq_." protocol options (unsupported: listed back) */
	const char *pq_options[PROTO_STARTUP_MAX_PARAMS];
	uint32_t cancel_pid; /* CancelRequest fields */
	uint32_t cancel_key;
	const char *error; /* what was wrong, for PROTO_STARTUP_INVALID */
};

/*
 * Frames the first packet: returns PROTO_FRAME_PARTIAL until 4 bytes (the length) and then the
 * whole packet are available, PROTO_FRAME_BAD_LEN for a length outside 8..PROTO_STARTUP_MAX.
 */
enum proto_frame proto_frame_startup(const uint8_t *p, size_t avail, uint32_t *len);

/*
 * Parses a complete first packet (len bytes at p, length word included). The result's pointers
 * point into p, which is modified in place (the caller's copy).
 */
void proto_parse_startup(uint8_t *p, uint32_t len, struct proto_startup *out);

/*
 * Splits a startup "options" value into "-c name=value" / "--name=value" settings, honouring
 * backslash escapes as PostgreSQL does. Calls fn for each; returns false, with PostgreSQL's
 * message in err (its SQLSTATE is 42601), on something PostgreSQL would refuse (an option
 * other than -c/--, a setting without a value).
 */
bool proto_parse_options(const char *options,
                         bool (*fn)(const char *name, const char *value, void *arg), void *arg,
                         char *err, size_t errlen);

/* ---- ErrorResponse / NoticeResponse ---- */

/* The fields pgtide reads from an ErrorResponse; pointers into the message body. */
struct proto_error {
	const char *severity;    /* 'S' (localized) */
	const char *severity_nl; /* 'V' (never localized) */
	const char *sqlstate;    /* 'C' */
	const char *message;     /* 'M' */
	const char *detail;      /* 'D' */
	const char *hint;        /* 'H' */
	const char *schema;      /* 's' */
	const char *table;       /* 't' */
	const char *column;      /* 'c' */
	const char *constraint;  /* 'n' */
};

/* Parses an ErrorResponse/NoticeResponse body. Returns false if malformed. */
bool proto_parse_error(const uint8_t *body, size_t len, struct proto_error *out);

/* Appends an ErrorResponse (type 'E') or NoticeResponse ('N') that pgtide raises itself. */
void proto_build_error(struct pbuf *b, const char *severity, const char *sqlstate,
                       const char *message, const char *detail, const char *hint);
void proto_build_notice(struct pbuf *b, const char *severity, const char *sqlstate,
                        const char *message);

/* ---- other builders ---- */

void proto_build_auth(struct pbuf *b, uint32_t code, const void *extra, size_t extra_len);
void proto_build_parameter_status(struct pbuf *b, const char *name, const char *value);
void proto_build_backend_key(struct pbuf *b, uint32_t pid, uint32_t key);
void proto_build_ready(struct pbuf *b, char status);
void proto_build_query(struct pbuf *b, const char *sql);
void proto_build_terminate(struct pbuf *b);
/* NegotiateProtocolVersion: the newest minor version supported and the unrecognised options. */
void proto_build_negotiate_version(struct pbuf *b, uint32_t newest_minor, const char *const *opts,
                                   size_t n_opts);
/* RowDescription / DataRow / CommandComplete for result sets pgtide produces itself. */
void proto_build_row_description(struct pbuf *b, const char *const *names,
                                 const uint32_t *type_oids, size_t n);
void proto_build_data_row(struct pbuf *b, const char *const *values,
                          size_t n); /* NULL = SQL NULL */
void proto_build_command_complete(struct pbuf *b, const char *tag);

/* Parses a ParameterStatus body into name and value. */
bool proto_parse_parameter_status(const uint8_t *body, size_t len, const char **name,
                                  const char **value);

#endif
