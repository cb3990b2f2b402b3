/*
 * Client authentication: the user file (PgBouncer's userlist.txt) and the password exchange
 * (trust, cleartext, md5, SCRAM-SHA-256) as a pure state machine: it takes the body of each
 * client PasswordMessage and says what to send back. The caller does the I/O.
 */
#ifndef PGTIDE_AUTH_H
#define PGTIDE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "pgtide/config.h"
#include "pgtide/proto.h"

struct scram_secret;

/* What kind of secret the user file holds for a user. */
enum auth_secret_kind {
	AUTH_SECRET_PLAIN = 0, /* the password itself */
	AUTH_SECRET_MD5,       /* "md5" + md5hex(password || username) */
	AUTH_SECRET_SCRAM,     /* "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>" */
};

struct auth_user {
	char *name;
	char *secret; /* as written in the file (never logged) */
	enum auth_secret_kind kind;
	/* A plain secret's SCRAM verifier (iterations 0 until the first SCRAM login makes it, with
	 * a fresh salt): PBKDF2 once per user file load (and scram_iterations value), not once per
	 * login. Loop thread only. */
	struct scram_secret *scram_of_plain;
	/* A plain secret's md5 verifier, "md5" + md5(secret + name), made at load so that an md5
	 * login hashes once, as with an md5 secret; "" for other kinds or if hashing failed. */
	char md5_of_plain[36];
};

struct auth_userlist {
	struct auth_user *users;
	size_t n;
};

/*
 * Parses userlist.txt text: lines of `"user" "secret"`, with "" as an escaped quote inside a
 * quoted string, and ';' or '#' comment lines. Extra fields after the secret are ignored, as in
 * PgBouncer. Returns false on a malformed line with *err_line and *errmsg (static text) set.
 */
bool auth_userlist_parse(const char *text, size_t len, struct auth_userlist *out, int *err_line,
                         const char **errmsg);
const struct auth_user *auth_userlist_find(const struct auth_userlist *ul, const char *name);
void auth_userlist_free(struct auth_userlist *ul);

/* What the caller does after auth_start / auth_step. */
enum auth_status {
	AUTH_CONTINUE = 0, /* send the bytes appended to out, then feed the next 'p' message */
	AUTH_OK,           /* authenticated: send AuthenticationOk and the rest of the login */
	AUTH_FAIL,         /* send a FATAL ErrorResponse with the exchange's sqlstate and message */
};

/* One client's exchange in progress. */
struct auth_exchange;

/*
 * Starts authenticating `user` under auth type `type`. u is the user's entry in the user file,
 * or NULL if there is none (the exchange then runs to the end and fails as PostgreSQL does,
 * without revealing that the user does not exist; with trust it fails at once with 28000).
 * scram_iterations is the PBKDF2 count of the SCRAM verifiers pgtide makes itself (for a plain
 * secret, and the mock exchange of a user without a SCRAM secret); a stored SCRAM secret keeps
 * its own. Appends the first Authentication request to out when one is needed. *ex is
 * allocated.
 */
enum auth_status auth_start(struct auth_exchange **ex, enum auth_type type, const char *user,
                            const struct auth_user *u, int scram_iterations, struct pbuf *out);

/* Feeds the body of a client 'p' message. Appends the reply (if any) to out. */
enum auth_status auth_step(struct auth_exchange *ex, const void *body, size_t len,
                           struct pbuf *out);

/* After AUTH_FAIL: PostgreSQL's SQLSTATE and message text for the failure. */
const char *auth_fail_sqlstate(const struct auth_exchange *ex);
const char *auth_fail_message(const struct auth_exchange *ex);

/*
 * After AUTH_OK: the client's password in clear text if pgtide knows it (stored plain, or
 * received in clear text), else NULL. Used to log in to PostgreSQL as the client's own user.
 */
const char *auth_plain_password(const struct auth_exchange *ex);

void auth_free(struct auth_exchange *ex);

/* md5 helpers, as PostgreSQL computes them. out must hold 36 bytes ("md5" + 32 hex + NUL). */
void auth_md5_hash(const char *password, const char *user, char out[36]);
void auth_md5_salted(const char *md5_hash_hex /* 32 hex after "md5" */, const unsigned char salt[4],
                     char out[36]);

#endif
